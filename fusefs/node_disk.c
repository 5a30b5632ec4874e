/*
 * node_disk.c - /vbd/<dev>/disk, the raw view of the virtual disk, read
 * (and with --writable written) through the same open image the engine
 * serves, so it is coherent with everything the guest wrote.
 *
 * Page cache on (no direct_io: loop devices and mmap work), keep_cache off;
 * fs.c keeps the cache live (see there).  SEEK_DATA/SEEK_HOLE follow
 * img_block_status(): data is what some layer of the chain allocated;
 * zero clusters and unallocated space are holes.
 *
 * Read-ahead: a sequential reader (several reads in a row, each starting
 * near where the previous ended) of compressed clusters gets the next
 * `readahead_mib` MiB fetched ahead in RA_CHUNK pieces by a small pool of
 * worker threads, so their decompression runs in parallel with the reader.
 * (Plain data is left to the kernel's read-ahead; fs.c sets its window.)
 * Each open file has at most RA_SLOTS chunks; a chunk is only used if no
 * write (guest or FUSE) completed since it was fetched.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blkback/vbd.h"
#include "formats/image.h"
#include "node.h"
#include "util/log.h"
#include "util/stats.h"

#define RA_CHUNK (1u << 20)
#define RA_SLOTS 64           /* upper bound; readahead_mib decides how many are used */
#define RA_WORKERS 2
#define RA_MEM_MAX (512ull << 20) /* all open files' read-ahead buffers together */
#define SEQ_TRIGGER 2         /* sequential reads before prefetching */
#define SEQ_MIN_READ (64u << 10) /* smaller reads count only if contiguous */

/* EMPTY -> QUEUED (prefetch) -> LOADING (a worker, or a reader that
 * needs it before any worker took it) -> READY or EMPTY (error). */
enum slot_state { SLOT_EMPTY, SLOT_QUEUED, SLOT_LOADING, SLOT_READY };

struct ra_slot {
	enum slot_state state;
	uint64_t chunk;          /* index: offset / RA_CHUNK */
	uint32_t len;            /* valid bytes (short at the end of the disk) */
	uint64_t gen;            /* write generation when the fetch started */
	int err;
	char *buf;
	struct diskh *owner;
	struct ra_slot *job_next; /* on the job queue */
	bool in_queue;            /* job_lock */
};

struct diskh {
	struct fh h;
	struct vbd *v;           /* referenced */
	uint64_t devno;          /* of the directory it was opened in */
	struct diskh *open_next; /* open_list */
	struct img *img;
	pthread_mutex_t lock;
	pthread_cond_t cond;     /* a slot finished loading */
	uint64_t hi_end;         /* highest end of a read so far */
	unsigned seq;            /* reads in a row that looked sequential */
	bool may_compress;       /* a qcow/qcow2 chain: compressed clusters possible */
	unsigned nslots;
	struct ra_slot slot[RA_SLOTS];
	unsigned users;          /* its slots queued or being filled (job_lock) */
};

static atomic_uint_fast64_t ra_mem;   /* bytes of slot buffers allocated */

/* Every open disk file, so a detached device's still answers fstat(). */
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static struct diskh *open_list;

/* Bumped by every write through this tree (guest writes show in stats). */
static atomic_uint_fast64_t fuse_writes;

static pthread_mutex_t job_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t job_cond = PTHREAD_COND_INITIALIZER;
static pthread_cond_t job_idle = PTHREAD_COND_INITIALIZER; /* some users went to 0 */
static struct ra_slot *job_head, *job_tail;
static bool job_stop;
static pthread_t ra_threads[RA_WORKERS];
static unsigned nr_ra_threads;

static uint64_t write_gen(struct vbd *v)
{
	struct dev_stats *s = vbd_stats(v);

	return atomic_load(&fuse_writes) + atomic_load(&s->op[STAT_WRITE].ios) +
	       atomic_load(&s->op[STAT_WRITE].errors) + atomic_load(&s->op[STAT_DISCARD].ios);
}

static void diskh_destroy(struct fh *h)
{
	struct diskh *d = (struct diskh *)h;

	fs_fh_untrack(h);
	pthread_mutex_lock(&open_lock);
	for (struct diskh **p = &open_list; *p; p = &(*p)->open_next) {
		if (*p == d) {
			*p = d->open_next;
			break;
		}
	}
	pthread_mutex_unlock(&open_lock);
	/* Off the job queue, and no worker still filling our slots. */
	pthread_mutex_lock(&job_lock);
	for (struct ra_slot **p = &job_head; *p;) {
		if ((*p)->owner == d) {
			(*p)->in_queue = false;
			*p = (*p)->job_next;
			d->users--;
		} else {
			p = &(*p)->job_next;
		}
	}
	job_tail = NULL;
	for (struct ra_slot *q = job_head; q; q = q->job_next)
		job_tail = q;
	while (d->users && !job_stop)
		pthread_cond_wait(&job_idle, &job_lock);
	pthread_mutex_unlock(&job_lock);
	for (unsigned i = 0; i < RA_SLOTS; i++) {
		if (d->slot[i].buf)
			atomic_fetch_sub(&ra_mem, RA_CHUNK);
		free(d->slot[i].buf);
	}
	pthread_cond_destroy(&d->cond);
	pthread_mutex_destroy(&d->lock);
	vbd_put(d->v);
	free(d);
}

void disk_open(fuse_req_t req, struct vbd *v, uint64_t devno, struct fuse_file_info *fi)
{
	struct diskh *d = calloc(1, sizeof(*d));

	if (!d)
		return (void)fuse_reply_err(req, ENOMEM);
	d->h.destroy = diskh_destroy;
	vbd_get(v);
	d->v = v;
	d->devno = devno;
	d->img = vbd_image(v);
	d->may_compress = strcmp(img_format(d->img), "raw") != 0;
	pthread_mutex_init(&d->lock, NULL);
	pthread_cond_init(&d->cond, NULL);
	d->nslots = fs_conf.readahead_mib ? fs_conf.readahead_mib : 0;
	if (d->nslots > RA_SLOTS)
		d->nslots = RA_SLOTS;
	fs_fh_track(&d->h);
	pthread_mutex_lock(&open_lock);
	d->open_next = open_list;
	open_list = d;
	pthread_mutex_unlock(&open_lock);
	fi->fh = (uintptr_t)d;
	fi->direct_io = 0;
	fi->keep_cache = 0;
	if (fuse_reply_open(req, fi) != 0)
		diskh_destroy(&d->h);
}

struct vbd *disk_held(uint64_t devno)
{
	struct vbd *v = NULL;

	pthread_mutex_lock(&open_lock);
	for (struct diskh *d = open_list; d && !v; d = d->open_next) {
		if (d->devno == devno) {
			v = d->v;
			vbd_get(v);
		}
	}
	pthread_mutex_unlock(&open_lock);
	return v;
}

void disk_release(fuse_req_t req, struct fuse_file_info *fi)
{
	diskh_destroy((struct fh *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

/* ---- Read-ahead ---- */

static struct ra_slot *find_slot(struct diskh *d, uint64_t chunk)
{
	for (unsigned i = 0; i < d->nslots; i++)
		if (d->slot[i].state != SLOT_EMPTY && d->slot[i].chunk == chunk)
			return &d->slot[i];
	return NULL;
}

/* Queue fetches of the chunks after `end`; caller holds d->lock. */
static void prefetch(struct diskh *d, uint64_t end)
{
	uint64_t size = img_size(d->img);
	uint64_t first = end / RA_CHUNK, last = first + d->nslots - 1;
	uint64_t cur = end / RA_CHUNK;

	for (uint64_t c = first; c <= last && c * RA_CHUNK < size; c++) {
		struct ra_slot *s;
		if (find_slot(d, c))
			continue;
		/* A free slot, or one behind the reader. */
		s = NULL;
		for (unsigned i = 0; i < d->nslots && !s; i++)
			if (d->slot[i].state == SLOT_EMPTY)
				s = &d->slot[i];
		for (unsigned i = 0; i < d->nslots && !s; i++)
			if (d->slot[i].state == SLOT_READY &&
			    (d->slot[i].chunk + 1 < cur || d->slot[i].chunk > last))
				s = &d->slot[i];
		if (!s)
			break;
		s->state = SLOT_QUEUED;
		s->chunk = c;
		s->len = 0;
		s->err = 0;
		s->owner = d;
		pthread_mutex_lock(&job_lock);
		s->job_next = NULL;
		s->in_queue = true;
		if (job_tail)
			job_tail->job_next = s;
		else
			job_head = s;
		job_tail = s;
		d->users++;
		pthread_cond_signal(&job_cond);
		pthread_mutex_unlock(&job_lock);
	}
}

/* Fetch one chunk taken off the queue (its taker owns it while LOADING). */
static void fill_slot(struct ra_slot *s)
{
	struct diskh *d = s->owner;
	uint64_t size, off;
	uint32_t len;
	char *buf;
	int rc;

	pthread_mutex_lock(&d->lock);
	s->state = SLOT_LOADING;
	/* Past the global budget the chunk is dropped: readers read directly. */
	if (!s->buf && atomic_fetch_add(&ra_mem, RA_CHUNK) + RA_CHUNK <= RA_MEM_MAX) {
		s->buf = malloc(RA_CHUNK);
		if (!s->buf)
			atomic_fetch_sub(&ra_mem, RA_CHUNK);
	} else if (!s->buf) {
		atomic_fetch_sub(&ra_mem, RA_CHUNK);
	}
	size = img_size(d->img);
	off = s->chunk * RA_CHUNK;
	len = off < size ? (uint32_t)(size - off < RA_CHUNK ? size - off : RA_CHUNK) : 0;
	s->gen = write_gen(d->v);
	buf = s->buf;
	pthread_mutex_unlock(&d->lock);

	rc = !buf ? -ENOMEM : len ? img_pread(d->img, buf, len, off) : 0;

	pthread_mutex_lock(&d->lock);
	s->len = len;
	s->err = rc < 0 ? rc : 0;
	s->state = rc < 0 ? SLOT_EMPTY : SLOT_READY;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
}

static void *ra_main(void *arg)
{
	pthread_mutex_lock(&job_lock);
	for (;;) {
		struct ra_slot *s;
		struct diskh *d;

		while (!job_head && !job_stop)
			pthread_cond_wait(&job_cond, &job_lock);
		if (job_stop)
			break;
		s = job_head;
		job_head = s->job_next;
		if (!job_head)
			job_tail = NULL;
		s->in_queue = false;
		d = s->owner;
		pthread_mutex_unlock(&job_lock);
		fill_slot(s);
		pthread_mutex_lock(&job_lock);
		if (--d->users == 0)
			pthread_cond_broadcast(&job_idle);
	}
	pthread_mutex_unlock(&job_lock);
	return NULL;
}

/* Take a queued slot off the job queue; false if a worker already has it.
 * Caller holds d->lock. */
static bool steal(struct diskh *d, struct ra_slot *s)
{
	bool mine = false;

	pthread_mutex_lock(&job_lock);
	if (s->in_queue) {
		struct ra_slot **p = &job_head;
		while (*p && *p != s)
			p = &(*p)->job_next;
		if (*p) {
			*p = s->job_next;
			job_tail = NULL;
			for (struct ra_slot *q = job_head; q; q = q->job_next)
				job_tail = q;
			s->in_queue = false;
			mine = true;
			if (--d->users == 0)
				pthread_cond_broadcast(&job_idle);
		}
	}
	pthread_mutex_unlock(&job_lock);
	return mine;
}

/*
 * Copy what the read-ahead slots hold for [off, off+len) into buf, waiting
 * for chunks being loaded.  Returns the number of leading bytes served.
 * Caller holds d->lock.
 */
static size_t from_slots(struct diskh *d, char *buf, uint64_t off, size_t len)
{
	size_t done = 0;
	uint64_t gen = write_gen(d->v);

	while (done < len) {
		uint64_t pos = off + done, chunk = pos / RA_CHUNK;
		struct ra_slot *s = find_slot(d, chunk);
		size_t in, n;

		if (s && s->state == SLOT_QUEUED && steal(d, s)) {
			/* No worker started it: decompress it here rather
			 * than wait for one to come free. */
			pthread_mutex_unlock(&d->lock);
			fill_slot(s);
			pthread_mutex_lock(&d->lock);
			continue;
		}
		while (s && (s->state == SLOT_LOADING || s->state == SLOT_QUEUED)) {
			pthread_cond_wait(&d->cond, &d->lock);
			s = find_slot(d, chunk);
		}
		if (!s || s->state != SLOT_READY || s->gen != gen)
			break;
		in = (size_t)(pos - chunk * RA_CHUNK);
		if (in >= s->len)
			break;
		n = s->len - in;
		if (n > len - done)
			n = len - done;
		memcpy(buf + done, s->buf + in, n);
		done += n;
	}
	return done;
}

/*
 * Whether [off, off+len) holds compressed clusters.  Only those gain from
 * being read ahead here: plain data is one page-cache copy away, and the
 * kernel's own read-ahead already asks for it on several workers, so
 * staging it in slots would only add a copy.  Unknown counts as yes.
 */
static bool has_compressed(struct img *img, uint64_t off, uint64_t len)
{
	uint64_t size = img_size(img), end = off < size && len < size - off ? off + len : size;

	for (unsigned i = 0; off < end; i++) {
		struct img_extent e;

		if (i == 64 || img_block_status(img, off, end - off, &e) < 0 || e.length == 0)
			return true;
		if (e.type == IMG_EXT_DATA && e.compressed)
			return true;
		off += e.length;
	}
	return false;
}

/*
 * Count a read of [off, off+size) towards the sequential streak; true once
 * the streak is long enough to read ahead.  Sequential enough: starts right
 * where the furthest read ended, or is a big read (as the kernel's
 * read-ahead sends) within the window behind it or just after it (those
 * arrive out of order on several threads).  Small reads elsewhere are
 * random: 4 KiB O_DIRECT reads all over a small disk would otherwise often
 * land in the window and set off prefetches.  Caller holds d->lock.
 */
static bool note_read(struct diskh *d, uint64_t off, size_t size)
{
	uint64_t window = (uint64_t)d->nslots * RA_CHUNK, end = off + size;

	if (off == d->hi_end ||
	    (size >= SEQ_MIN_READ && off + window >= d->hi_end && off <= d->hi_end + RA_CHUNK))
		d->seq++;
	else
		d->seq = 0;
	if (end > d->hi_end || d->seq == 0)
		d->hi_end = end;
	return d->seq >= SEQ_TRIGGER;
}

void disk_read(fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct diskh *d = (struct diskh *)(uintptr_t)fi->fh;
	uint64_t disk_size = img_size(d->img), end;
	size_t got = 0;
	char *buf;
	int rc = 0;

	if (off < 0)
		return (void)fuse_reply_err(req, EINVAL);
	if ((uint64_t)off >= disk_size || size == 0)
		return (void)fuse_reply_buf(req, NULL, 0);
	if (size > disk_size - (uint64_t)off)
		size = (size_t)(disk_size - (uint64_t)off);
	buf = malloc(size);
	if (!buf)
		return (void)fuse_reply_err(req, ENOMEM);
	end = (uint64_t)off + size;

	if (d->nslots) {
		pthread_mutex_lock(&d->lock);
		if (note_read(d, (uint64_t)off, size) && d->may_compress) {
			/* Outside the lock: block status may read image metadata. */
			pthread_mutex_unlock(&d->lock);
			bool ahead = has_compressed(d->img, end, RA_CHUNK);
			pthread_mutex_lock(&d->lock);
			if (ahead)
				prefetch(d, end);
		}
		got = from_slots(d, buf, (uint64_t)off, size);
		pthread_mutex_unlock(&d->lock);
	}
	if (got < size)
		rc = img_pread(d->img, buf + got, size - got, (uint64_t)off + got);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_buf(req, buf, size);
	free(buf);
}

void disk_init(void)
{
	job_stop = false;
	job_head = job_tail = NULL;
	for (nr_ra_threads = 0; nr_ra_threads < RA_WORKERS; nr_ra_threads++)
		if (pthread_create(&ra_threads[nr_ra_threads], NULL, ra_main, NULL) != 0)
			break;
}

void disk_shutdown(void)
{
	pthread_mutex_lock(&job_lock);
	job_stop = true;
	for (struct ra_slot *q = job_head; q; q = q->job_next)
		q->owner->users--;   /* never filled; nobody reads any more */
	job_head = job_tail = NULL;
	pthread_cond_broadcast(&job_cond);
	pthread_mutex_unlock(&job_lock);
	for (unsigned i = 0; i < nr_ra_threads; i++)
		pthread_join(ra_threads[i], NULL);
	nr_ra_threads = 0;
}

/* ---- Writes (--writable) ---- */

static void drop_slots(struct diskh *d)
{
	pthread_mutex_lock(&d->lock);
	for (unsigned i = 0; i < d->nslots; i++)
		if (d->slot[i].state == SLOT_READY)
			d->slot[i].state = SLOT_EMPTY;
	pthread_mutex_unlock(&d->lock);
}

void disk_write(fuse_req_t req, const char *buf, size_t size, off_t off,
		struct fuse_file_info *fi)
{
	struct diskh *d = (struct diskh *)(uintptr_t)fi->fh;
	uint64_t disk_size = img_size(d->img);
	int rc;

	if (off < 0)
		return (void)fuse_reply_err(req, EINVAL);
	if ((uint64_t)off > disk_size || size > disk_size - (uint64_t)off)
		return (void)fuse_reply_err(req, ENOSPC);
	rc = img_pwrite(d->img, buf, size, (uint64_t)off);
	atomic_fetch_add(&fuse_writes, 1);
	drop_slots(d);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_write(req, size);
}

void disk_fsync(fuse_req_t req, struct fuse_file_info *fi)
{
	struct diskh *d = (struct diskh *)(uintptr_t)fi->fh;
	int rc = (img_caps(d->img) & IMG_CAN_FLUSH) ? img_flush(d->img) : 0;

	fuse_reply_err(req, rc < 0 ? -rc : 0);
}

void disk_fallocate(fuse_req_t req, int mode, off_t off, off_t len, struct fuse_file_info *fi)
{
	struct diskh *d = (struct diskh *)(uintptr_t)fi->fh;
	uint64_t disk_size = img_size(d->img);
	int rc;

	if (off < 0 || len <= 0)
		return (void)fuse_reply_err(req, EINVAL);
	if ((uint64_t)off > disk_size || (uint64_t)len > disk_size - (uint64_t)off)
		return (void)fuse_reply_err(req, ENOSPC);
	if (mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE))
		rc = img_discard(d->img, (uint64_t)off, (uint64_t)len);
	else if (mode == FALLOC_FL_ZERO_RANGE || mode == (FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE))
		rc = img_write_zeroes(d->img, (uint64_t)off, (uint64_t)len);
	else
		rc = -EOPNOTSUPP;
	atomic_fetch_add(&fuse_writes, 1);
	drop_slots(d);
	fuse_reply_err(req, rc < 0 ? -rc : 0);
}

/* ---- SEEK_DATA / SEEK_HOLE ---- */

void disk_lseek(fuse_req_t req, off_t off, int whence, struct fuse_file_info *fi)
{
	struct diskh *d = (struct diskh *)(uintptr_t)fi->fh;
	uint64_t size = img_size(d->img), pos;
	struct img_extent e;

	if (whence != SEEK_DATA && whence != SEEK_HOLE)
		return (void)fuse_reply_err(req, EINVAL);
	if (off < 0)
		return (void)fuse_reply_err(req, EINVAL);
	if ((uint64_t)off >= size)
		return (void)fuse_reply_err(req, ENXIO);
	for (pos = (uint64_t)off; pos < size; pos += e.length) {
		int rc = img_block_status(d->img, pos, size - pos, &e);
		if (rc < 0)
			return (void)fuse_reply_err(req, -rc);
		if (e.length == 0 || e.length > size - pos)
			return (void)fuse_reply_err(req, EIO);
		if ((e.type == IMG_EXT_DATA) == (whence == SEEK_DATA))
			return (void)fuse_reply_lseek(req, (off_t)pos);
	}
	/* No data after off; the end of the disk is a hole. */
	if (whence == SEEK_DATA)
		return (void)fuse_reply_err(req, ENXIO);
	fuse_reply_lseek(req, (off_t)size);
}
