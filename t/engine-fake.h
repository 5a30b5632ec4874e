/*
 * engine-fake.h - test fixtures for the request engine (t/25x-*.c):
 *
 *  - a fake hypervisor transport (struct hv) over real shared memory: guest
 *    memory is a memfd, "mapping" a grant mmaps the guest's frame, grant
 *    copy checks the grant table like Xen (valid entry, read-only entries
 *    are not written, frame inside guest memory); event channels are
 *    eventfds.  Counters let tests check what the engine did.
 *  - a fake image on a real temporary file (pread/pwrite/fdatasync/hole
 *    punching), defining the img_* calls the engine uses, with a switch to
 *    make them slow or fail.
 *  - the frontend side of a ring: put requests, publish with
 *    RING_PUSH_REQUESTS_AND_CHECK_NOTIFY semantics, collect responses.
 *
 * Header-only so each test stays one file.
 */
#ifndef VBDFS_T_ENGINE_FAKE_H
#define VBDFS_T_ENGINE_FAKE_H

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "blkback/abi.h"
#include "blkback/engine.h"
#include "blkback/hv.h"
#include "formats/image.h"
#include "util/log.h"
#include "util/stats.h"
#include "util/trace.h"

#define FK_PAGE 4096u
#define FK_MAX_GRANTS 8192
#define FK_MAX_PORTS 64

struct fk_grant {
	bool valid, readonly;
	uint32_t frame;
};

struct fk_port {
	bool used;
	int to_back, to_guest; /* eventfds */
	atomic_uint notifies;  /* backend -> guest */
};

struct fk_evtchn {
	struct fake_hv *f;
	int port;
};

struct fake_hv {
	struct hv hv;
	int memfd;
	size_t pages;
	char *mem;                 /* the guest's view */
	uint32_t next_frame;
	struct fk_grant grant[FK_MAX_GRANTS];
	uint32_t next_gref;
	struct fk_port port[FK_MAX_PORTS];
	atomic_int maps_live;      /* pages currently mapped by the backend */
	atomic_int binds_live;
	atomic_uint copies, copy_failures, acks;
	atomic_bool dead;          /* the guest died: every call fails */
	pthread_mutex_t lock;
};

static inline struct fake_hv *fk_of(struct hv *hv)
{
	return (struct fake_hv *)hv;
}

static inline struct hv_evtchn *fk_bind(struct hv *hv, uint16_t domid, uint32_t remote, int *err)
{
	struct fake_hv *f = fk_of(hv);
	struct fk_evtchn *ch;

	if (remote >= FK_MAX_PORTS || !f->port[remote].used || atomic_load(&f->dead)) {
		*err = -EINVAL;
		return NULL;
	}
	ch = calloc(1, sizeof(*ch));
	ch->f = f;
	ch->port = (int)remote;
	atomic_fetch_add(&f->binds_live, 1);
	return (struct hv_evtchn *)ch;
}

static inline void fk_unbind(struct hv_evtchn *c)
{
	struct fk_evtchn *ch = (struct fk_evtchn *)c;

	atomic_fetch_sub(&ch->f->binds_live, 1);
	free(ch);
}

static inline int fk_fd(struct hv_evtchn *c)
{
	struct fk_evtchn *ch = (struct fk_evtchn *)c;
	return ch->f->port[ch->port].to_back;
}

static inline int fk_ack(struct hv_evtchn *c)
{
	struct fk_evtchn *ch = (struct fk_evtchn *)c;
	uint64_t v;

	atomic_fetch_add(&ch->f->acks, 1);
	if (read(ch->f->port[ch->port].to_back, &v, sizeof(v)) == sizeof(v))
		return 1;
	return errno == EAGAIN ? 0 : -errno;
}

static inline int fk_notify(struct hv_evtchn *c)
{
	struct fk_evtchn *ch = (struct fk_evtchn *)c;
	uint64_t one = 1;

	if (atomic_load(&ch->f->dead))
		return -ESRCH;
	atomic_fetch_add(&ch->f->port[ch->port].notifies, 1);
	return write(ch->f->port[ch->port].to_guest, &one, sizeof(one)) == sizeof(one) ? 0
											 : -errno;
}

/* The guest page behind a grant, or NULL if the backend may not use it. */
static inline char *fk_granted(struct fake_hv *f, uint32_t gref, bool write)
{
	struct fk_grant *g;

	if (gref >= FK_MAX_GRANTS || atomic_load(&f->dead))
		return NULL;
	g = &f->grant[gref];
	if (!g->valid || (write && g->readonly) || g->frame >= f->pages)
		return NULL;
	return f->mem + (size_t)g->frame * FK_PAGE;
}

static inline int fk_copy(struct hv *hv, uint16_t domid, struct hv_copy_seg *s, unsigned n)
{
	struct fake_hv *f = fk_of(hv);
	int rc = 0;

	for (unsigned i = 0; i < n; i++) {
		char *page = fk_granted(f, s[i].gref, s[i].to_guest);

		atomic_fetch_add(&f->copies, 1);
		if (!page || s[i].offset + s[i].len > FK_PAGE) {
			s[i].status = -1;
			atomic_fetch_add(&f->copy_failures, 1);
			rc = -EIO;
			continue;
		}
		if (s[i].to_guest)
			memcpy(page + s[i].offset, s[i].local, s[i].len);
		else
			memcpy(s[i].local, page + s[i].offset, s[i].len);
		s[i].status = 0;
	}
	return rc;
}

static inline void *fk_map(struct hv *hv, uint16_t domid, const hv_gref_t *refs, unsigned n,
		    bool writable, int *err)
{
	struct fake_hv *f = fk_of(hv);
	char *base = mmap(NULL, (size_t)n * FK_PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (base == MAP_FAILED) {
		*err = -ENOMEM;
		return NULL;
	}
	for (unsigned i = 0; i < n; i++) {
		if (!fk_granted(f, refs[i], writable) ||
		    mmap(base + (size_t)i * FK_PAGE, FK_PAGE,
			 PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED | MAP_FIXED, f->memfd,
			 (off_t)f->grant[refs[i]].frame * FK_PAGE) == MAP_FAILED) {
			munmap(base, (size_t)n * FK_PAGE);
			*err = -EPERM;
			return NULL;
		}
	}
	atomic_fetch_add(&f->maps_live, (int)n);
	return base;
}

static inline int fk_unmap(struct hv *hv, void *addr, unsigned n)
{
	atomic_fetch_sub(&fk_of(hv)->maps_live, (int)n);
	return munmap(addr, (size_t)n * FK_PAGE);
}

static inline void fk_close(struct hv *hv)
{
	(void)hv;
}

static const struct hv_ops fk_ops = {
	.name = "fake",
	.evtchn_bind = fk_bind,
	.evtchn_unbind = fk_unbind,
	.evtchn_fd = fk_fd,
	.evtchn_ack = fk_ack,
	.evtchn_notify = fk_notify,
	.grant_copy = fk_copy,
	.map = fk_map,
	.unmap = fk_unmap,
	.close = fk_close,
};

static inline struct fake_hv *fk_new(size_t pages)
{
	struct fake_hv *f = calloc(1, sizeof(*f));

	f->hv.ops = &fk_ops;
	f->pages = pages;
	f->memfd = memfd_create("fake-guest", MFD_CLOEXEC);
	if (f->memfd < 0 || ftruncate(f->memfd, (off_t)(pages * FK_PAGE)) < 0)
		abort();
	f->mem = mmap(NULL, pages * FK_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, f->memfd, 0);
	if (f->mem == MAP_FAILED)
		abort();
	f->next_gref = 1;
	pthread_mutex_init(&f->lock, NULL);
	return f;
}

static inline void fk_free(struct fake_hv *f)
{
	for (int i = 0; i < FK_MAX_PORTS; i++)
		if (f->port[i].used) {
			close(f->port[i].to_back);
			close(f->port[i].to_guest);
		}
	munmap(f->mem, f->pages * FK_PAGE);
	close(f->memfd);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

static uint32_t fk_alloc_frame(struct fake_hv *f)
{
	if (f->next_frame >= f->pages)
		abort();
	return f->next_frame++;
}

static inline char *fk_page(struct fake_hv *f, uint32_t frame)
{
	return f->mem + (size_t)frame * FK_PAGE;
}

static uint32_t fk_grant(struct fake_hv *f, uint32_t frame, bool readonly)
{
	uint32_t g = f->next_gref++;

	if (g >= FK_MAX_GRANTS)
		abort();
	f->grant[g] = (struct fk_grant){ .valid = true, .readonly = readonly, .frame = frame };
	return g;
}

static inline int fk_port_alloc(struct fake_hv *f)
{
	for (int i = 1; i < FK_MAX_PORTS; i++)
		if (!f->port[i].used) {
			f->port[i].used = true;
			f->port[i].to_back = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
			f->port[i].to_guest = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
			return i;
		}
	abort();
}

static inline void fk_kick(struct fake_hv *f, int port)
{
	uint64_t one = 1;
	if (write(f->port[port].to_back, &one, sizeof(one)) != sizeof(one))
		abort();
}

/* ---- the fake image ---- */

struct img {
	int fd;
	uint64_t size;
	unsigned caps;
	atomic_uint delay_us;  /* each read/write sleeps this long */
	atomic_int fail;       /* negative errno: every I/O fails */
	atomic_uint reads, writes, flushes, discards;
	atomic_uint nowait_reads;   /* of reads: served by img_preadv_nowait */
	atomic_uint active, max_active; /* concurrency seen */
};

static inline struct img *fimg_new(uint64_t size)
{
	struct img *im = calloc(1, sizeof(*im));
	char path[] = "/tmp/vbdfs-engine-img.XXXXXX";

	im->fd = mkstemp(path);
	if (im->fd < 0 || ftruncate(im->fd, (off_t)size) < 0)
		abort();
	unlink(path);
	im->size = size;
	im->caps = IMG_CAN_WRITE | IMG_CAN_FLUSH | IMG_CAN_DISCARD;
	return im;
}

static inline void fimg_free(struct img *im)
{
	close(im->fd);
	free(im);
}

static inline void fimg_enter(struct img *im)
{
	unsigned a = atomic_fetch_add(&im->active, 1) + 1, m = atomic_load(&im->max_active);
	while (a > m && !atomic_compare_exchange_weak(&im->max_active, &m, a))
		;
	if (atomic_load(&im->delay_us))
		usleep(atomic_load(&im->delay_us));
}

uint64_t img_size(const struct img *im)
{
	return im->size;
}

unsigned img_caps(const struct img *im)
{
	return im->caps;
}

int img_preadv(struct img *im, const struct iovec *iov, int iovcnt, uint64_t off)
{
	ssize_t r;
	size_t len = 0;

	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	if (off > im->size || len > im->size - off)
		return -EINVAL;
	fimg_enter(im);
	atomic_fetch_add(&im->reads, 1);
	r = atomic_load(&im->fail) ? atomic_load(&im->fail) : preadv(im->fd, iov, iovcnt, (off_t)off);
	atomic_fetch_sub(&im->active, 1);
	return r < 0 ? (int)(atomic_load(&im->fail) ? r : -errno) : 0;
}

/* The engine's inline path (io_read_cached): a read from the page cache.
 * With a delay or a failure injected, never: those tests are about the
 * workers, so everything goes to img_preadv as before. */
int img_preadv_nowait(struct img *im, const struct iovec *iov, int iovcnt, uint64_t off)
{
	ssize_t r;
	size_t len = 0;

	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	if (off > im->size || len > im->size - off || atomic_load(&im->delay_us) ||
	    atomic_load(&im->fail))
		return -EAGAIN;
	r = preadv2(im->fd, iov, iovcnt, (off_t)off, RWF_NOWAIT);
	if (r < 0 || (size_t)r != len)
		return -EAGAIN;
	atomic_fetch_add(&im->reads, 1);
	atomic_fetch_add(&im->nowait_reads, 1);
	return 0;
}

int img_pwritev(struct img *im, const struct iovec *iov, int iovcnt, uint64_t off)
{
	ssize_t r;
	size_t len = 0;

	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	if (off > im->size || len > im->size - off)
		return -EINVAL;
	fimg_enter(im);
	atomic_fetch_add(&im->writes, 1);
	r = atomic_load(&im->fail) ? atomic_load(&im->fail) : pwritev(im->fd, iov, iovcnt, (off_t)off);
	atomic_fetch_sub(&im->active, 1);
	return r < 0 ? (int)(atomic_load(&im->fail) ? r : -errno) : 0;
}

int img_flush(struct img *im)
{
	atomic_fetch_add(&im->flushes, 1);
	return fdatasync(im->fd) < 0 ? -errno : 0;
}

int img_discard(struct img *im, uint64_t off, uint64_t len)
{
	atomic_fetch_add(&im->discards, 1);
	if (off > im->size || len > im->size - off)
		return -EINVAL;
	if (fallocate(im->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) < 0)
		return -errno;
	return 0;
}

/* ---- the frontend side of one ring ---- */

struct fk_ring {
	struct fake_hv *f;
	enum blkif_abi abi;
	unsigned pages, size;
	uint32_t frame0;          /* ring pages are frames frame0.. */
	char *sring;              /* guest view */
	int port;
	uint32_t req_prod_pvt, rsp_cons;
};

#define FK_REQ_PROD 0
#define FK_REQ_EVENT 1
#define FK_RSP_PROD 2
#define FK_RSP_EVENT 3

static inline volatile uint32_t *fk_hdr(struct fk_ring *r)
{
	return (volatile uint32_t *)r->sring;
}

/* SHARED_RING_INIT + FRONT_RING_INIT, grant the pages into q. */
static inline void fk_ring_init(struct fake_hv *f, struct fk_ring *r, enum blkif_abi abi, unsigned order,
			 struct engine_queue *q)
{
	memset(r, 0, sizeof(*r));
	r->f = f;
	r->abi = abi;
	r->pages = 1u << order;
	for (unsigned i = 0; i < r->pages; i++) {
		uint32_t fr = fk_alloc_frame(f);
		if (i == 0)
			r->frame0 = fr;
		q->ring_ref[i] = fk_grant(f, fr, false);
	}
	r->sring = fk_page(f, r->frame0);
	memset(r->sring, 0, (size_t)r->pages * FK_PAGE);
	fk_hdr(r)[FK_REQ_EVENT] = 1;
	fk_hdr(r)[FK_RSP_EVENT] = 1;
	r->size = blkif_ring_slots(abi, (size_t)r->pages * FK_PAGE);
	r->port = fk_port_alloc(f);
	q->evtchn = (uint32_t)r->port;
}

static inline void fk_put(struct fk_ring *r, const struct blkif_req *req)
{
	blkif_put_request(r->abi, blkif_slot(r->abi, r->sring, r->req_prod_pvt & (r->size - 1)), req);
	r->req_prod_pvt++;
}

/* RING_PUSH_REQUESTS_AND_CHECK_NOTIFY, kicking if asked. */
static inline bool fk_publish(struct fk_ring *r)
{
	uint32_t old = fk_hdr(r)[FK_REQ_PROD], new = r->req_prod_pvt;
	bool notify;

	__atomic_thread_fence(__ATOMIC_RELEASE);
	fk_hdr(r)[FK_REQ_PROD] = new;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	notify = (uint32_t)(new - fk_hdr(r)[FK_REQ_EVENT]) < (uint32_t)(new - old);
	if (notify)
		fk_kick(r->f, r->port);
	return notify;
}

struct fk_rsp {
	uint64_t id;
	uint8_t op;
	int16_t status;
};

/* Collect up to max responses, waiting up to timeout_ms for at least want.
 * Re-arms rsp_event like RING_FINAL_CHECK_FOR_RESPONSES unless no_rearm. */
static inline unsigned fk_responses(struct fk_ring *r, struct fk_rsp *out, unsigned max, unsigned want,
			     int timeout_ms, bool no_rearm)
{
	unsigned n = 0;
	uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull;

	for (;;) {
		uint32_t rp = fk_hdr(r)[FK_RSP_PROD];
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		while (r->rsp_cons != rp && n < max) {
			blkif_get_response(r->abi,
					   blkif_slot(r->abi, r->sring, r->rsp_cons & (r->size - 1)),
					   &out[n].id, &out[n].op, &out[n].status);
			r->rsp_cons++;
			n++;
		}
		if (n >= want || n >= max)
			return n;
		if (!no_rearm) {
			fk_hdr(r)[FK_RSP_EVENT] = r->rsp_cons + 1;
			__atomic_thread_fence(__ATOMIC_SEQ_CST);
			if (fk_hdr(r)[FK_RSP_PROD] != r->rsp_cons)
				continue;
		}
		if (now_ns() > deadline)
			return n;
		struct pollfd p = { .fd = r->f->port[r->port].to_guest, .events = POLLIN };
		if (poll(&p, 1, 10) > 0) {
			uint64_t v;
			if (read(p.fd, &v, sizeof(v)) < 0)
				continue;
		}
	}
}

/* A simple READ/WRITE of consecutive whole pages, each with its own
 * granted frame. */
static inline void fk_rw(struct blkif_req *rq, uint8_t op, uint64_t id, uint64_t sector,
		  const uint32_t *grefs, unsigned nseg)
{
	memset(rq, 0, sizeof(*rq));
	rq->operation = op;
	rq->id = id;
	rq->sector_number = sector;
	rq->nr_segments = (uint16_t)nseg;
	for (unsigned i = 0; i < nseg; i++) {
		rq->seg[i].gref = grefs[i];
		rq->seg[i].first_sect = 0;
		rq->seg[i].last_sect = 7;
	}
}

static inline void fk_params(struct engine_params *p, struct fake_hv *f, struct img *im,
		      struct dev_stats *st, struct trace *tr)
{
	memset(p, 0, sizeof(*p));
	p->hv = &f->hv;
	p->domid = 7;
	p->devid = 51712;
	p->abi = BLKIF_ABI_X86_64;
	p->ring_order = 0;
	p->nr_queues = 1;
	p->max_indirect_segs = ENGINE_DEFAULT_INDIRECT;
	p->feature_flush = p->feature_barrier = p->feature_discard = true;
	p->discard_granularity = 4096;
	p->sector_size = 512;
	p->img = im;
	p->stats = st;
	p->trace = tr;
}

static inline uint64_t ld64(_Atomic uint64_t *v)
{
	return atomic_load(v);
}

#endif

/* ---- a test guest: rings per queue plus data frames ---- */

struct fk_guest {
	struct fake_hv *f;
	struct img *img;
	struct dev_stats stats;
	struct trace *trace;
	struct engine_params p;
	struct fk_ring ring[ENGINE_MAX_QUEUES];
	struct engine *e;
	uint64_t next_id;
};

static inline void fk_guest_init(struct fk_guest *g, size_t pages, uint64_t img_bytes,
				 enum blkif_abi abi, unsigned order, unsigned nq, bool persistent)
{
	memset(g, 0, sizeof(*g));
	g->f = fk_new(pages);
	g->img = fimg_new(img_bytes);
	stats_init(&g->stats);
	g->trace = trace_new(1024);
	fk_params(&g->p, g->f, g->img, &g->stats, g->trace);
	g->p.abi = abi;
	g->p.ring_order = order;
	g->p.nr_queues = nq;
	g->p.persistent = persistent;
	for (unsigned i = 0; i < nq; i++)
		fk_ring_init(g->f, &g->ring[i], abi, order, &g->p.queue[i]);
	g->next_id = 1000;
}

static inline struct engine *fk_guest_start(struct fk_guest *g)
{
	char err[256];

	g->e = engine_start(&g->p, err, sizeof(err));
	if (!g->e)
		fprintf(stderr, "# engine_start: %s\n", err);
	return g->e;
}

static inline void fk_guest_fini(struct fk_guest *g)
{
	engine_stop(g->e);
	g->e = NULL;
	trace_free(g->trace);
	stats_destroy(&g->stats);
	fimg_free(g->img);
	fk_free(g->f);
}

/* Test pattern: the byte stored at disk byte offset o. */
static inline uint8_t fk_pattern(uint64_t o, unsigned salt)
{
	return (uint8_t)(o * 7 + (o >> 9) * 13 + salt);
}

/* A segment as the guest sees it. */
struct fk_seg {
	uint32_t frame, gref;
	uint8_t first, last;
};

/* Fill the guest pages of segs with the pattern of the disk bytes from
 * sector on. */
static inline void fk_fill(struct fake_hv *f, const struct fk_seg *s, unsigned n, uint64_t sector,
			   unsigned salt)
{
	uint64_t o = sector * 512;

	for (unsigned i = 0; i < n; i++) {
		char *p = fk_page(f, s[i].frame) + s[i].first * 512;
		size_t len = (size_t)(s[i].last - s[i].first + 1) * 512;
		for (size_t b = 0; b < len; b++)
			p[b] = (char)fk_pattern(o + b, salt);
		o += len;
	}
}

/* True if the guest pages of segs hold the pattern. */
static inline bool fk_check(struct fake_hv *f, const struct fk_seg *s, unsigned n,
			    uint64_t sector, unsigned salt)
{
	uint64_t o = sector * 512;

	for (unsigned i = 0; i < n; i++) {
		const char *p = fk_page(f, s[i].frame) + s[i].first * 512;
		size_t len = (size_t)(s[i].last - s[i].first + 1) * 512;
		for (size_t b = 0; b < len; b++)
			if (p[b] != (char)fk_pattern(o + b, salt))
				return false;
		o += len;
	}
	return true;
}

/* True if the image file holds the pattern over [sector, sector+count). */
static inline bool fk_file_check(struct img *im, uint64_t sector, uint64_t count, unsigned salt)
{
	size_t len = count * 512;
	char *buf = malloc(len);
	bool good = pread(im->fd, buf, len, (off_t)(sector * 512)) == (ssize_t)len;

	for (size_t b = 0; good && b < len; b++)
		if (buf[b] != (char)fk_pattern(sector * 512 + b, salt))
			good = false;
	free(buf);
	return good;
}

/* Direct request over segs. */
static inline void fk_req(struct blkif_req *rq, uint8_t op, uint64_t id, uint64_t sector,
			  const struct fk_seg *s, unsigned n)
{
	memset(rq, 0, sizeof(*rq));
	rq->operation = op;
	rq->id = id;
	rq->sector_number = sector;
	rq->nr_segments = (uint16_t)n;
	for (unsigned i = 0; i < n && i < BLKIF_MAX_SEGMENTS_PER_REQUEST; i++) {
		rq->seg[i].gref = s[i].gref;
		rq->seg[i].first_sect = s[i].first;
		rq->seg[i].last_sect = s[i].last;
	}
}

/* INDIRECT request over segs, with its entries written into the guest's
 * indirect frames ind[0..]. */
static inline void fk_ind_req(struct fake_hv *f, struct blkif_req *rq, uint8_t op, uint64_t id,
			      uint64_t sector, const struct fk_seg *s, unsigned n,
			      const struct fk_seg *ind)
{
	memset(rq, 0, sizeof(*rq));
	rq->operation = BLKIF_OP_INDIRECT;
	rq->indirect_op = op;
	rq->id = id;
	rq->sector_number = sector;
	rq->nr_segments = (uint16_t)n;
	for (unsigned i = 0; i < n; i++) {
		unsigned char *e = (unsigned char *)fk_page(f, ind[i / 512].frame) + (i % 512) * 8;
		memset(e, 0, 8);
		e[0] = (unsigned char)s[i].gref;
		e[1] = (unsigned char)(s[i].gref >> 8);
		e[2] = (unsigned char)(s[i].gref >> 16);
		e[3] = (unsigned char)(s[i].gref >> 24);
		e[4] = s[i].first;
		e[5] = s[i].last;
	}
	for (unsigned p = 0; p < (n + 511) / 512; p++)
		rq->indirect_grefs[p] = ind[p].gref;
}

/* Allocate n whole-page segments, granted read-write (or read-only). */
static inline void fk_segs(struct fake_hv *f, struct fk_seg *s, unsigned n, bool readonly)
{
	for (unsigned i = 0; i < n; i++) {
		s[i].frame = fk_alloc_frame(f);
		s[i].gref = fk_grant(f, s[i].frame, readonly);
		s[i].first = 0;
		s[i].last = 7;
	}
}

/* Put the requests, publish, and wait for their responses (in any order);
 * true if all n arrived with the given status and matching ids/ops. */
static inline bool fk_run(struct fk_ring *r, const struct blkif_req *rq, unsigned n,
			  int16_t want_status)
{
	struct fk_rsp rsp[512];
	unsigned got;
	bool good = true;

	for (unsigned i = 0; i < n; i++)
		fk_put(r, &rq[i]);
	fk_publish(r);
	got = fk_responses(r, rsp, n, n, 10000, false);
	if (got != n) {
		fprintf(stderr, "# got %u of %u responses\n", got, n);
		return false;
	}
	for (unsigned i = 0; i < n; i++) {
		bool found = false;
		for (unsigned j = 0; j < n; j++) {
			uint8_t op = rq[j].operation == BLKIF_OP_INDIRECT ? rq[j].indirect_op
									  : rq[j].operation;
			if (rsp[i].id == rq[j].id) {
				found = true;
				if (rsp[i].op != op || rsp[i].status != want_status) {
					fprintf(stderr, "# id %llu: op %u status %d (want %u %d)\n",
						(unsigned long long)rsp[i].id, rsp[i].op,
						rsp[i].status, op, want_status);
					good = false;
				}
			}
		}
		if (!found) {
			fprintf(stderr, "# unexpected response id %llu\n",
				(unsigned long long)rsp[i].id);
			good = false;
		}
	}
	return good;
}
