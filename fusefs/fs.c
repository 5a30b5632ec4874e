/*
 * fs.c - the /vbd FUSE session: mount, worker threads, the device table,
 * inodes, directories and dispatch to the node files (node_*.c).
 *
 * Threads: `threads` workers serve /dev/fuse (each blocks in read(), so
 * one request wakes one worker; see worker_main); a housekeeping thread sends the kernel
 * invalidations (never from a registry callback, which runs under the
 * registry lock, nor from a worker); node_requests.c has its own waker and
 * node_disk.c its read-ahead workers.  Every one of them is joined by
 * vbdfs_fuse_stop().
 *
 * Caching: directory entries and attributes are cached for 1 s, except
 * that a device that goes away is invalidated at once.  `disk` uses the
 * page cache (so loop devices and mmap work) without keep_cache, and its
 * mtime moves when the guest writes: with the kernel's auto_inval_data the
 * cached pages are dropped on the next read after the 1 s attribute
 * timeout, and the housekeeping thread also invalidates them explicitly
 * about once a second, so the view stays live even for long-open files.
 */
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <mntent.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "blkback/vbd.h"
#include "formats/image.h"
#include "node.h"
#include "util/log.h"
#include "util/stats.h"

#define DEFAULT_THREADS 8
#define MAX_THREADS 64
#define ATTR_TIMEOUT 1.0
#define ENTRY_TIMEOUT 1.0
#define MAX_DEVS 4096       /* listing snapshot bound */
#define KERNEL_READAHEAD_KB 1024 /* = the largest read request we take */

struct fs_conf fs_conf;
struct fuse_session *fs_session;

/* ---- The device table ---- */

struct fsdev {
	struct fsdev *next;
	uint64_t devno;
	struct vbd *v;           /* referenced */
	uint64_t t0_ns;          /* now_ns() when it appeared */
	struct timespec born;    /* CLOCK_REALTIME, for ctime/atime */
	struct timespec mtime;   /* of disk: moves when the guest writes */
	uint64_t writes_seen;
};

/* An invalidation the housekeeping thread owes the kernel. */
struct inval {
	struct inval *next;
	fuse_ino_t parent;       /* 0: inode invalidation of `ino` */
	fuse_ino_t ino;
	char name[160];
};

static pthread_mutex_t devs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fsdev *devs;
static uint64_t next_devno = 1;
static bool running;           /* guarded by devs_lock */
static bool listening;         /* registry listener installed (once per process) */
static struct inval *invals;   /* guarded by devs_lock */
static struct timespec mount_time;

static pthread_mutex_t fh_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fh fh_list = { &fh_list, &fh_list, NULL };

/* Worker and housekeeping state. */
static pthread_t workers[MAX_THREADS];
static struct fuse_buf worker_bufs[MAX_THREADS];
static unsigned nr_workers;
static pthread_t hk_thread;
static bool hk_started;
static pthread_mutex_t hk_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hk_cond;
static bool hk_stop;
static atomic_bool stopping, unmount_reported;
static void (*on_unmount)(void *);
static void *on_unmount_arg;
static char *mnt_path;

void fs_fh_track(struct fh *h)
{
	pthread_mutex_lock(&fh_lock);
	h->next = fh_list.next;
	h->prev = &fh_list;
	fh_list.next->prev = h;
	fh_list.next = h;
	pthread_mutex_unlock(&fh_lock);
}

void fs_fh_untrack(struct fh *h)
{
	pthread_mutex_lock(&fh_lock);
	if (h->next) {
		h->prev->next = h->next;
		h->next->prev = h->prev;
		h->next = h->prev = NULL;
	}
	pthread_mutex_unlock(&fh_lock);
}

/* A name we can show for <domain-name>-<vdev>: no '/', not a name the
 * tree already uses, printable. */
static bool link_name(const struct vbd *v, char *buf, size_t len)
{
	const char *dn = vbd_domain_name(v), *vd = vbd_vdev(v);
	int n;

	if (!dn || !vd)
		return false;
	n = snprintf(buf, len, "%s-%s", dn, vd);
	if (n <= 0 || (size_t)n >= len)
		return false;
	for (const char *p = buf; *p; p++)
		if (*p == '/' || (unsigned char)*p < 0x20 || *p == 0x7f)
			return false;
	if (!strcmp(buf, "block") || !strcmp(buf, "diskstats") || buf[0] == '.')
		return false;
	/* "<digits>-<digits>" would shadow a device directory name. */
	if (strspn(buf, "0123456789-") == strlen(buf))
		return false;
	return true;
}

static void queue_inval(fuse_ino_t parent, fuse_ino_t ino, const char *name)
{
	struct inval *iv = calloc(1, sizeof(*iv));

	if (!iv)
		return;
	iv->parent = parent;
	iv->ino = ino;
	snprintf(iv->name, sizeof(iv->name), "%s", name ? name : "");
	iv->next = invals;
	invals = iv;
}

static void hk_wake(void)
{
	pthread_mutex_lock(&hk_lock);
	pthread_cond_signal(&hk_cond);
	pthread_mutex_unlock(&hk_lock);
}

/* Caller holds devs_lock. */
static void dev_add_locked(struct vbd *v)
{
	struct fsdev *d;

	for (d = devs; d; d = d->next)
		if (d->v == v)
			return;
	d = calloc(1, sizeof(*d));
	if (!d) {
		log_err("fusefs: out of memory adding %s", vbd_name(v));
		return;
	}
	vbd_get(v);
	d->v = v;
	d->devno = next_devno++;
	d->t0_ns = now_ns();
	clock_gettime(CLOCK_REALTIME, &d->born);
	d->mtime = d->born;
	d->writes_seen = 0;
	d->next = devs;
	devs = d;
	requests_attach(v, d->devno, d->t0_ns);
}

/* Caller holds devs_lock; returns the entry unlinked (caller frees). */
static struct fsdev *dev_remove_locked(struct vbd *v)
{
	char ln[160], bn[64];

	for (struct fsdev **p = &devs; *p; p = &(*p)->next) {
		struct fsdev *d = *p;
		if (d->v != v)
			continue;
		*p = d->next;
		queue_inval(1, 0, vbd_name(v));
		node_blkname(v, bn, sizeof(bn));
		queue_inval(INO(0, K_BLOCK), 0, bn);
		if (link_name(v, ln, sizeof(ln)))
			queue_inval(1, 0, ln);
		return d;
	}
	return NULL;
}

/* Registry callback: runs under the registry lock, so it only updates the
 * table and leaves kernel notifications to the housekeeping thread. */
static void on_registry(void *arg, struct vbd *v, bool added)
{
	struct fsdev *gone = NULL;

	pthread_mutex_lock(&devs_lock);
	if (running) {
		if (added)
			dev_add_locked(v);
		else
			gone = dev_remove_locked(v);
	}
	pthread_mutex_unlock(&devs_lock);
	if (gone) {
		requests_detach(gone->v);
		vbd_put(gone->v); /* never the last: the registry still holds one */
		free(gone);
		requests_kick();  /* streams of the device end */
		hk_wake();
	}
}

uint64_t fs_dev_t0(const struct vbd *v)
{
	uint64_t t0 = 0;

	pthread_mutex_lock(&devs_lock);
	for (struct fsdev *d = devs; d; d = d->next)
		if (d->v == v)
			t0 = d->t0_ns;
	pthread_mutex_unlock(&devs_lock);
	return t0;
}

/* Referenced vbd of a devno (and a copy of its entry), or NULL. */
static struct vbd *dev_get(uint64_t devno, struct fsdev *copy)
{
	struct vbd *v = NULL;

	pthread_mutex_lock(&devs_lock);
	for (struct fsdev *d = devs; d; d = d->next) {
		if (d->devno == devno) {
			v = d->v;
			vbd_get(v);
			if (copy)
				*copy = *d;
			break;
		}
	}
	pthread_mutex_unlock(&devs_lock);
	return v;
}

enum name_space { NS_DEV, NS_LINK, NS_BLK };

/* Find a device by its directory name, link name or iostat name. */
static uint64_t dev_lookup(const char *name, enum name_space ns)
{
	char buf[160];
	uint64_t devno = 0;

	pthread_mutex_lock(&devs_lock);
	for (struct fsdev *d = devs; d && !devno; d = d->next) {
		switch (ns) {
		case NS_DEV:
			if (!strcmp(vbd_name(d->v), name))
				devno = d->devno;
			break;
		case NS_LINK:
			if (link_name(d->v, buf, sizeof(buf)) && !strcmp(buf, name))
				devno = d->devno;
			break;
		case NS_BLK:
			node_blkname(d->v, buf, sizeof(buf));
			if (!strcmp(buf, name))
				devno = d->devno;
			break;
		}
	}
	pthread_mutex_unlock(&devs_lock);
	return devno;
}

/* ---- Attributes ---- */

static const struct { const char *name; enum node_kind kind; } dev_files[] = {
	{ "disk", K_DISK }, { "stat", K_STAT }, { "stats", K_STATS },
	{ "requests", K_REQUESTS }, { "info", K_INFO }, { "info.json", K_INFO_JSON },
	{ "map", K_MAP },
};
#define NR_DEV_FILES (sizeof(dev_files) / sizeof(dev_files[0]))

static bool disk_writable(struct vbd *v)
{
	return fs_conf.writable && !vbd_readonly(v) && (img_caps(vbd_image(v)) & IMG_CAN_WRITE);
}

static mode_t file_mode(bool writable)
{
	mode_t m = writable ? 0600 : 0400;

	if (fs_conf.has_group)
		m |= writable ? 0060 : 0040;
	return S_IFREG | m;
}

static mode_t dir_mode(void)
{
	return S_IFDIR | (fs_conf.has_group ? 0550 : 0500);
}

/* Sum of the host allocation over the backing chain, for st_blocks (so
 * `cp --sparse=auto` looks for holes). */
static uint64_t chain_allocated(struct img *img)
{
	uint64_t total = 0;

	for (int depth = 0; img && depth < 64; depth++) {
		struct img_info info;
		img_get_info(img, &info);
		total += info.allocated;
		img = info.backing;
	}
	return total;
}

static int fill_attr(fuse_ino_t ino, struct stat *st)
{
	uint64_t devno = INO_DEVNO(ino);
	unsigned kind = INO_KIND(ino);
	struct fsdev d;
	struct vbd *v;

	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = geteuid();
	st->st_gid = fs_conf.has_group ? fs_conf.gid : getegid();
	st->st_atim = st->st_mtim = st->st_ctim = mount_time;
	st->st_nlink = 1;
	st->st_blksize = 65536;
	if (devno == 0) {
		switch (kind) {
		case K_ROOT:
		case K_BLOCK:
			st->st_mode = dir_mode();
			st->st_nlink = 2;
			return 0;
		case K_DISKSTATS:
			st->st_mode = file_mode(false);
			return 0;
		default:
			return -ENOENT;
		}
	}
	v = dev_get(devno, &d);
	if (!v && kind == K_REQUESTS && requests_attr_gone(devno, st)) {
		st->st_mode = file_mode(false);
		st->st_blksize = 512;
		return 0;
	}
	if (!v && kind == K_DISK && (v = disk_held(devno)) != NULL) {
		/* Detached, still open.  Its image may be shared by a new
		 * device (vbd_adopt_image) whose writes nobody tracks for this
		 * inode: a fresh mtime has the kernel drop cached pages. */
		d.born = mount_time;
		clock_gettime(CLOCK_REALTIME, &d.mtime);
	}
	if (!v)
		return -ENOENT;
	st->st_atim = st->st_mtim = st->st_ctim = d.born;
	switch (kind) {
	case K_DEVDIR:
	case K_BLKDIR:
		st->st_mode = dir_mode();
		st->st_nlink = 2;
		break;
	case K_LINK:
		st->st_mode = S_IFLNK | 0777;
		st->st_size = (off_t)strlen(vbd_name(v));
		break;
	case K_DISK:
		st->st_mode = file_mode(disk_writable(v));
		st->st_size = (off_t)img_size(vbd_image(v));
		st->st_blocks = (blkcnt_t)((chain_allocated(vbd_image(v)) + 511) / 512);
		st->st_mtim = st->st_ctim = d.mtime;
		break;
	case K_REQUESTS:
		/* A log: its size grows as lines are added (tail -f polls it).
		 * A small block size, since tail -c reads a file no bigger than
		 * one block like a pipe, to its EOF, which waits here. */
		st->st_mode = file_mode(false);
		st->st_blksize = 512;
		requests_attr(v, st);
		break;
	case K_STAT: case K_STATS: case K_INFO: case K_INFO_JSON:
	case K_MAP: case K_BLKSTAT:
		/* Generated: size 0 like /proc, read until EOF. */
		st->st_mode = file_mode(false);
		break;
	default:
		vbd_put(v);
		return -ENOENT;
	}
	vbd_put(v);
	return 0;
}

/* requests grows between two stats: tail -f must see each new size. */
static double attr_timeout(fuse_ino_t ino)
{
	return INO_DEVNO(ino) && INO_KIND(ino) == K_REQUESTS ? 0.0 : ATTR_TIMEOUT;
}

static void reply_entry(fuse_req_t req, fuse_ino_t ino)
{
	struct fuse_entry_param e;
	int rc;

	memset(&e, 0, sizeof(e));
	rc = fill_attr(ino, &e.attr);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	e.ino = ino;
	e.attr_timeout = attr_timeout(ino);
	e.entry_timeout = ENTRY_TIMEOUT;
	fuse_reply_entry(req, &e);
}

/* ---- Lookup, getattr, readlink ---- */

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	uint64_t pdev = INO_DEVNO(parent), devno;
	unsigned pkind = INO_KIND(parent);

	if (pdev == 0 && pkind == K_ROOT) {
		if (!strcmp(name, "block"))
			return reply_entry(req, INO(0, K_BLOCK));
		if (!strcmp(name, "diskstats"))
			return reply_entry(req, INO(0, K_DISKSTATS));
		if ((devno = dev_lookup(name, NS_DEV)))
			return reply_entry(req, INO(devno, K_DEVDIR));
		if ((devno = dev_lookup(name, NS_LINK)))
			return reply_entry(req, INO(devno, K_LINK));
	} else if (pdev == 0 && pkind == K_BLOCK) {
		if ((devno = dev_lookup(name, NS_BLK)))
			return reply_entry(req, INO(devno, K_BLKDIR));
	} else if (pdev && pkind == K_DEVDIR) {
		for (size_t i = 0; i < NR_DEV_FILES; i++)
			if (!strcmp(name, dev_files[i].name))
				return reply_entry(req, INO(pdev, dev_files[i].kind));
	} else if (pdev && pkind == K_BLKDIR) {
		if (!strcmp(name, "stat"))
			return reply_entry(req, INO(pdev, K_BLKSTAT));
	}
	fuse_reply_err(req, ENOENT);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	int rc = fill_attr(ino, &st);

	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, attr_timeout(ino));
}

/* Nothing in the tree changes through setattr: a request that changes
 * nothing (e.g. the size a writable disk already has) succeeds. */
static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct stat st;
	int rc = fill_attr(ino, &st);

	if (rc)
		return (void)fuse_reply_err(req, -rc);
	if (to_set & ~FUSE_SET_ATTR_SIZE)
		return (void)fuse_reply_err(req, EACCES);
	if ((to_set & FUSE_SET_ATTR_SIZE) &&
	    (INO_KIND(ino) != K_DISK || INO_DEVNO(ino) == 0 || attr->st_size != st.st_size))
		return (void)fuse_reply_err(req, EACCES);
	fuse_reply_attr(req, &st, attr_timeout(ino));
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct vbd *v;
	char target[64];

	if (INO_KIND(ino) != K_LINK || !(v = dev_get(INO_DEVNO(ino), NULL)))
		return (void)fuse_reply_err(req, INO_KIND(ino) != K_LINK ? EINVAL : ENOENT);
	snprintf(target, sizeof(target), "%s", vbd_name(v));
	vbd_put(v);
	fuse_reply_readlink(req, target);
}

/* ---- Directories: a snapshot listing taken at opendir ---- */

struct dent {
	char name[160];
	fuse_ino_t ino;
	mode_t type;
};

struct dirh {
	struct fh h;
	size_t n;
	struct dent e[];
};

static void dirh_destroy(struct fh *h)
{
	fs_fh_untrack(h);
	free(h);
}

static size_t count_devs(void)
{
	size_t n = 0;

	pthread_mutex_lock(&devs_lock);
	for (struct fsdev *d = devs; d; d = d->next)
		n++;
	pthread_mutex_unlock(&devs_lock);
	return n;
}

static void dent_add(struct dirh *dh, size_t max, const char *name, fuse_ino_t ino,
		     mode_t type)
{
	if (dh->n >= max)
		return;
	snprintf(dh->e[dh->n].name, sizeof(dh->e[0].name), "%s", name);
	dh->e[dh->n].ino = ino;
	dh->e[dh->n].type = type;
	dh->n++;
}

/* Two devices may claim one <domain>-<vdev> name: the first (newest)
 * wins, in listings as in lookups. */
static bool dent_has(const struct dirh *dh, const char *name)
{
	for (size_t i = 0; i < dh->n; i++)
		if (!strcmp(dh->e[i].name, name))
			return true;
	return false;
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	uint64_t devno = INO_DEVNO(ino);
	unsigned kind = INO_KIND(ino);
	size_t ndev = count_devs(), max;
	struct dirh *dh;
	struct stat st;
	char buf[160];

	if (fill_attr(ino, &st) || !S_ISDIR(st.st_mode))
		return (void)fuse_reply_err(req, fill_attr(ino, &st) ? ENOENT : ENOTDIR);
	if ((fi->flags & O_ACCMODE) != O_RDONLY)
		return (void)fuse_reply_err(req, EACCES);
	if (ndev > MAX_DEVS)
		ndev = MAX_DEVS;
	max = 2 + 2 + 2 * ndev + NR_DEV_FILES + 8; /* devices may be added meanwhile */
	dh = calloc(1, sizeof(*dh) + max * sizeof(dh->e[0]));
	if (!dh)
		return (void)fuse_reply_err(req, ENOMEM);
	dh->h.destroy = dirh_destroy;
	dent_add(dh, max, ".", ino, S_IFDIR);
	dent_add(dh, max, "..", devno && kind == K_BLKDIR ? INO(0, K_BLOCK) : 1, S_IFDIR);
	if (devno == 0 && (kind == K_ROOT || kind == K_BLOCK)) {
		if (kind == K_ROOT) {
			dent_add(dh, max, "block", INO(0, K_BLOCK), S_IFDIR);
			dent_add(dh, max, "diskstats", INO(0, K_DISKSTATS), S_IFREG);
		}
		pthread_mutex_lock(&devs_lock);
		for (struct fsdev *d = devs; d; d = d->next) {
			if (kind == K_BLOCK) {
				node_blkname(d->v, buf, sizeof(buf));
				dent_add(dh, max, buf, INO(d->devno, K_BLKDIR), S_IFDIR);
				continue;
			}
			dent_add(dh, max, vbd_name(d->v), INO(d->devno, K_DEVDIR), S_IFDIR);
			if (link_name(d->v, buf, sizeof(buf)) && !dent_has(dh, buf))
				dent_add(dh, max, buf, INO(d->devno, K_LINK), S_IFLNK);
		}
		pthread_mutex_unlock(&devs_lock);
	} else if (kind == K_DEVDIR) {
		for (size_t i = 0; i < NR_DEV_FILES; i++)
			dent_add(dh, max, dev_files[i].name, INO(devno, dev_files[i].kind), S_IFREG);
	} else if (kind == K_BLKDIR) {
		dent_add(dh, max, "stat", INO(devno, K_BLKSTAT), S_IFREG);
	}
	fs_fh_track(&dh->h);
	fi->fh = (uintptr_t)dh;
	if (fuse_reply_open(req, fi) != 0)
		dirh_destroy(&dh->h);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct dirh *dh = (struct dirh *)(uintptr_t)fi->fh;
	char *buf;
	size_t used = 0;

	if (size > 65536)
		size = 65536;
	buf = malloc(size);
	if (!buf)
		return (void)fuse_reply_err(req, ENOMEM);
	for (size_t i = off < 0 ? 0 : (size_t)off; i < dh->n; i++) {
		struct stat st = { .st_ino = dh->e[i].ino, .st_mode = dh->e[i].type };
		size_t n = fuse_add_direntry(req, buf + used, size - used, dh->e[i].name, &st,
					     (off_t)(i + 1));
		if (n > size - used)
			break;
		used += n;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	dirh_destroy((struct fh *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

/* ---- Files ---- */

struct texth {
	struct fh h;
	struct text t;
};

static void texth_destroy(struct fh *h)
{
	struct texth *th = (struct texth *)h;

	fs_fh_untrack(h);
	text_free(&th->t);
	free(th);
}

static void diskstats_text(struct text *t)
{
	struct vbd *list[MAX_DEVS];
	size_t n = 0;

	/* The tree's devices, oldest first like /proc/diskstats' order. */
	pthread_mutex_lock(&devs_lock);
	for (struct fsdev *d = devs; d && n < MAX_DEVS; d = d->next) {
		vbd_get(d->v);
		list[n++] = d->v;
	}
	pthread_mutex_unlock(&devs_lock);
	while (n > 0) {
		node_diskstats_line(list[n - 1], t);
		vbd_put(list[--n]);
	}
}

static void open_text(fuse_req_t req, struct vbd *v, unsigned kind, struct fuse_file_info *fi)
{
	struct texth *th = calloc(1, sizeof(*th));

	if (!th)
		return (void)fuse_reply_err(req, ENOMEM);
	th->h.destroy = texth_destroy;
	switch (v ? kind : K_DISKSTATS + 100) {
	case K_STAT:
	case K_BLKSTAT:
		node_stat_text(v, &th->t);
		break;
	case K_STATS:
		node_stats_text(v, &th->t);
		break;
	case K_INFO:
	case K_INFO_JSON:
		node_info_text(v, &th->t, kind == K_INFO_JSON);
		break;
	case K_MAP:
		node_map_text(v, &th->t);
		break;
	case K_DISKSTATS + 100: /* the only global file (devno 0) */
		diskstats_text(&th->t);
		break;
	}
	fs_fh_track(&th->h);
	fi->fh = (uintptr_t)th;
	fi->direct_io = 1;   /* every open (and read) shows what was generated */
	fi->nonseekable = 0;
	if (fuse_reply_open(req, fi) != 0)
		texth_destroy(&th->h);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	uint64_t devno = INO_DEVNO(ino);
	unsigned kind = INO_KIND(ino);
	bool wr = (fi->flags & O_ACCMODE) != O_RDONLY;
	struct vbd *v = NULL;
	struct stat st;

	if (fill_attr(ino, &st))
		return (void)fuse_reply_err(req, ENOENT);
	if (S_ISDIR(st.st_mode))
		return (void)fuse_reply_err(req, EISDIR);
	if (devno == 0) {
		if (wr)
			return (void)fuse_reply_err(req, EACCES);
		return open_text(req, NULL, kind, fi);
	}
	v = dev_get(devno, NULL);
	if (!v)
		return (void)fuse_reply_err(req, ENOENT);
	if (wr && (kind != K_DISK || !disk_writable(v))) {
		fuse_reply_err(req, EACCES);
	} else if (kind == K_DISK && (fi->flags & O_TRUNC) && wr) {
		fuse_reply_err(req, EACCES);
	} else if (kind == K_DISK) {
		disk_open(req, v, devno, fi);
	} else if (kind == K_REQUESTS) {
		requests_open(req, v, fi);
	} else {
		open_text(req, v, kind, fi);
	}
	vbd_put(v);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	unsigned kind = INO_KIND(ino);
	struct texth *th;

	if (INO_DEVNO(ino) && kind == K_DISK)
		return disk_read(req, size, off, fi);
	if (INO_DEVNO(ino) && kind == K_REQUESTS)
		return requests_read(req, size, off, fi);
	th = (struct texth *)(uintptr_t)fi->fh;
	if (off < 0 || (uint64_t)off >= th->t.len)
		return (void)fuse_reply_buf(req, NULL, 0);
	if (size > th->t.len - (size_t)off)
		size = th->t.len - (size_t)off;
	/* Reply from a copy: the reader may close (and our RELEASE free the
	 * text) as soon as the kernel has the data, while this thread is
	 * still returning from writev(); ASan checks the iovec after the
	 * call and would see freed memory. */
	char *copy = malloc(size);
	if (!copy)
		return (void)fuse_reply_err(req, ENOMEM);
	memcpy(copy, th->t.buf + off, size);
	fuse_reply_buf(req, copy, size);
	free(copy);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
		     off_t off, struct fuse_file_info *fi)
{
	if (INO_DEVNO(ino) && INO_KIND(ino) == K_DISK)
		return disk_write(req, buf, size, off, fi);
	fuse_reply_err(req, EACCES);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	unsigned kind = INO_KIND(ino);

	if (INO_DEVNO(ino) && kind == K_DISK)
		return disk_release(req, fi);
	if (INO_DEVNO(ino) && kind == K_REQUESTS)
		return requests_release(req, fi);
	texth_destroy((struct fh *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	if (INO_DEVNO(ino) && INO_KIND(ino) == K_DISK)
		return disk_fsync(req, fi);
	fuse_reply_err(req, 0);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			 struct fuse_file_info *fi)
{
	if (INO_DEVNO(ino) && INO_KIND(ino) == K_DISK)
		return disk_fallocate(req, mode, off, len, fi);
	fuse_reply_err(req, EACCES);
}

static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	if (INO_DEVNO(ino) && INO_KIND(ino) == K_DISK)
		return disk_lseek(req, off, whence, fi);
	fuse_reply_err(req, EINVAL);
}

static void op_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
		    struct fuse_pollhandle *ph)
{
	if (INO_DEVNO(ino) && INO_KIND(ino) == K_REQUESTS)
		return requests_poll(req, fi, ph);
	if (ph)
		fuse_pollhandle_destroy(ph);
	fuse_reply_poll(req, POLLIN | POLLOUT);
}

/* The tree's names are not the user's to change. */
static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		     dev_t rdev)
{
	fuse_reply_err(req, EACCES);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	fuse_reply_err(req, EACCES);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, EACCES);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, EACCES);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	fuse_reply_err(req, EACCES);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	fuse_reply_err(req, EACCES);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	fuse_reply_err(req, EACCES);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;

	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = 4096;
	sv.f_frsize = 4096;
	sv.f_namemax = 255;
	sv.f_files = count_devs() * 12 + 3;
	fuse_reply_statfs(req, &sv);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	/* Big requests: 1 MiB, the most libfuse 3.14 allows (256 pages). */
	conn->max_write = 1u << 20;
	conn->max_background = 64;        /* concurrent kernel read-ahead requests */
	conn->congestion_threshold = 48;
	conn->want |= FUSE_CAP_AUTO_INVAL_DATA;
	conn->want &= ~(unsigned)(FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_SPLICE_READ);
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ;
}

static const struct fuse_lowlevel_ops ops = {
	.init = op_init,
	.lookup = op_lookup,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_unlink,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.release = op_release,
	.fsync = op_fsync,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.releasedir = op_releasedir,
	.statfs = op_statfs,
	.create = op_create,
	.poll = op_poll,
	.fallocate = op_fallocate,
	.lseek = op_lseek,
};

/* ---- Threads ---- */

static void report_unmount(void)
{
	if (!atomic_load(&stopping) && !atomic_exchange(&unmount_reported, true) && on_unmount)
		on_unmount(on_unmount_arg);
}

/*
 * A worker blocks in read() on /dev/fuse, where the kernel wakes exactly one
 * waiting reader per request (an epoll set, even with EPOLLEXCLUSIVE, woke
 * two workers for most requests and cost a syscall more each time: at
 * queue depth 1 that halved the IOPS).  Cancellation is enabled only
 * inside that read, as libfuse's own loop does, so stop_threads() can end a
 * worker that waits there and never one halfway through a request.  An
 * unmount from outside wakes every reader with ENODEV.
 */
static void *worker_main(void *arg)
{
	struct fuse_buf *fbuf = arg;   /* freed by stop_threads() */

	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	while (!fuse_session_exited(fs_session)) {
		int res;

		pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
		res = fuse_session_receive_buf(fs_session, fbuf);
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
		if (res == -EAGAIN || res == -EINTR)
			continue;
		if (res <= 0)
			break;  /* 0 with the session exited: unmounted from outside */
		fuse_session_process_buf(fs_session, fbuf);
	}
	if (fuse_session_exited(fs_session))
		report_unmount();
	return NULL;
}

/* Send the invalidations owed, and notice guest writes to each disk. */
static void housekeeping_pass(void)
{
	struct inval *list;
	fuse_ino_t changed[64];
	size_t nchanged = 0;
	struct timespec now;

	pthread_mutex_lock(&devs_lock);
	list = invals;
	invals = NULL;
	clock_gettime(CLOCK_REALTIME, &now);
	for (struct fsdev *d = devs; d; d = d->next) {
		struct dev_stats *s = vbd_stats(d->v);
		uint64_t w = atomic_load(&s->op[STAT_WRITE].ios) +
			     atomic_load(&s->op[STAT_WRITE].errors) +
			     atomic_load(&s->op[STAT_DISCARD].ios);
		if (w != d->writes_seen) {
			d->writes_seen = w;
			d->mtime = now;
			if (nchanged < 64)
				changed[nchanged++] = INO(d->devno, K_DISK);
		}
	}
	pthread_mutex_unlock(&devs_lock);
	while (list) {
		struct inval *iv = list;
		list = iv->next;
		if (iv->parent)
			fuse_lowlevel_notify_inval_entry(fs_session, iv->parent, iv->name,
							 strlen(iv->name));
		else
			fuse_lowlevel_notify_inval_inode(fs_session, iv->ino, 0, 0);
		free(iv);
	}
	for (size_t i = 0; i < nchanged; i++)
		fuse_lowlevel_notify_inval_inode(fs_session, changed[i], 0, 0);
}

static void *housekeeping_main(void *arg)
{
	pthread_mutex_lock(&hk_lock);
	while (!hk_stop) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&hk_cond, &hk_lock, &ts);
		if (hk_stop)
			break;
		pthread_mutex_unlock(&hk_lock);
		housekeeping_pass();
		pthread_mutex_lock(&hk_lock);
	}
	pthread_mutex_unlock(&hk_lock);
	return NULL;
}

/* ---- Start and stop ---- */

static void free_tables(void)
{
	struct fsdev *d;
	struct inval *iv;

	pthread_mutex_lock(&devs_lock);
	running = false;
	d = devs;
	devs = NULL;
	iv = invals;
	invals = NULL;
	pthread_mutex_unlock(&devs_lock);
	while (d) {
		struct fsdev *next = d->next;
		vbd_put(d->v);
		free(d);
		d = next;
	}
	while (iv) {
		struct inval *next = iv->next;
		free(iv);
		iv = next;
	}
}

static void free_handles(void)
{
	for (;;) {
		struct fh *h;
		pthread_mutex_lock(&fh_lock);
		h = fh_list.next == &fh_list ? NULL : fh_list.next;
		pthread_mutex_unlock(&fh_lock);
		if (!h)
			break;
		h->destroy(h);
	}
}

static int start_threads(unsigned n, char *err, size_t errlen)
{
	pthread_condattr_t ca;
	int rc;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&hk_cond, &ca);
	pthread_condattr_destroy(&ca);
	hk_stop = false;
	rc = pthread_create(&hk_thread, NULL, housekeeping_main, NULL);
	if (rc) {
		snprintf(err, errlen, "cannot start a thread: %s", strerror(rc));
		return -rc;
	}
	hk_started = true;
	for (nr_workers = 0; nr_workers < n; nr_workers++) {
		worker_bufs[nr_workers] = (struct fuse_buf){ .mem = NULL };
		rc = pthread_create(&workers[nr_workers], NULL, worker_main,
				    &worker_bufs[nr_workers]);
		if (rc) {
			snprintf(err, errlen, "cannot start a thread: %s", strerror(rc));
			return -rc;
		}
	}
	return 0;
}

static void stop_threads(void)
{
	for (unsigned i = 0; i < nr_workers; i++)
		pthread_cancel(workers[i]);
	for (unsigned i = 0; i < nr_workers; i++) {
		pthread_join(workers[i], NULL);
		free(worker_bufs[i].mem);
		worker_bufs[i].mem = NULL;
	}
	nr_workers = 0;
	if (hk_started) {
		pthread_mutex_lock(&hk_lock);
		hk_stop = true;
		pthread_cond_signal(&hk_cond);
		pthread_mutex_unlock(&hk_lock);
		pthread_join(hk_thread, NULL);
		pthread_cond_destroy(&hk_cond);
		hk_started = false;
	}
}

static int session_new(const char *mountpoint, const struct vbdfs_fuse_opts *o,
		       char *err, size_t errlen)
{
	char mopts[256];
	const char *argv[6];
	int argc = 0;
	struct fuse_args args;

	snprintf(mopts, sizeof(mopts), "fsname=vbdfs,subtype=vbdfs,default_permissions%s",
		 o->allow_other ? ",allow_other" : "");
	argv[argc++] = "vbdfs";
	argv[argc++] = "-o";
	argv[argc++] = mopts;
	if (o->debug)
		argv[argc++] = "-d";
	argv[argc] = NULL;
	args.argc = argc;
	args.argv = (char **)argv;
	args.allocated = 0;
	fs_session = fuse_session_new(&args, &ops, sizeof(ops), NULL);
	fuse_opt_free_args(&args);
	if (!fs_session) {
		snprintf(err, errlen, "cannot create the FUSE session (see messages above)");
		return -EINVAL;
	}
	if (fuse_session_mount(fs_session, mountpoint) != 0) {
		snprintf(err, errlen, "cannot mount FUSE at %s (is /dev/fuse usable, and %s an "
			 "existing directory?)", mountpoint, mountpoint);
		fuse_session_destroy(fs_session);
		fs_session = NULL;
		return -EIO;
	}
	return 0;
}

/*
 * The kernel reads a FUSE file ahead in requests no bigger than the mount's
 * bdi read-ahead window, 128 KiB by default, although we accept 1 MiB
 * requests (max_write, hence max_pages).  A sequential reader of `disk`
 * moves about 40 % more data a second with 1 MiB windows, so raise ours to
 * that, as `blockdev --setra` would for a disk.  Best effort: without root
 * (or sysfs) the default stays.  Runs after the workers are up, since the
 * stat() is answered by them.
 */
static void raise_kernel_readahead(const char *mountpoint)
{
	char path[96];
	struct stat st;
	FILE *f;

	if (stat(mountpoint, &st) != 0)
		return;
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb",
		 major(st.st_dev), minor(st.st_dev));
	f = fopen(path, "w");
	if (f) {
		fprintf(f, "%u\n", KERNEL_READAHEAD_KB);
		if (fclose(f) == 0)
			return;
	}
	log_debug("fusefs: cannot set %s: %s", path, strerror(errno));
}

/*
 * A vbdfs that died (kill -9, a crash) leaves its mount behind, dead: every
 * access fails with ENOTCONN until it is unmounted, so a restart (systemd's
 * Restart=on-failure) could never mount again.  If the mount point is such
 * a mount and it is ours (type fuse.vbdfs), detach it.  True if it did.
 */
static bool detach_dead_mount(const char *mountpoint)
{
	char path[PATH_MAX], parent[PATH_MAX], abs[PATH_MAX];
	const char *base;
	char *slash;
	struct mntent *m;
	bool ours = false;
	FILE *f;

	/* The mount table has canonical paths; the dead directory itself
	 * cannot be resolved, so resolve its parent. */
	if (snprintf(path, sizeof(path), "%s", mountpoint) >= (int)sizeof(path))
		return false;
	while (strlen(path) > 1 && path[strlen(path) - 1] == '/')
		path[strlen(path) - 1] = '\0';
	slash = strrchr(path, '/');
	base = slash ? slash + 1 : path;
	if (slash)
		*slash = '\0';
	if (!realpath(slash ? (path[0] ? path : "/") : ".", parent) ||
	    snprintf(abs, sizeof(abs), "%s/%s", strcmp(parent, "/") ? parent : "", base) >=
		    (int)sizeof(abs))
		return false;

	f = setmntent("/proc/self/mounts", "r");
	while (f && (m = getmntent(f)))
		if (!strcmp(m->mnt_dir, abs) && !strcmp(m->mnt_type, "fuse.vbdfs"))
			ours = true;
	if (f)
		endmntent(f);
	if (!ours)
		return false;
	if (umount2(abs, MNT_DETACH) != 0) {
		log_warn("%s: cannot detach the dead mount a previous vbdfs left: %s", abs,
			 strerror(errno));
		return false;
	}
	log_warn("%s: a previous vbdfs died and left its mount; detached it", abs);
	return true;
}

/* stat() through an open directory: on a dead FUSE mount stat() alone can
 * succeed from the kernel's attribute cache, while open() always asks the
 * (gone) daemon and fails with ENOTCONN. */
static int stat_dir(const char *path, struct stat *st)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return errno == ENOTDIR || errno == EACCES ? stat(path, st) : -1;
	rc = fstat(fd, st);
	close(fd);
	return rc;
}

int vbdfs_fuse_check_mountpoint(const char *mountpoint, char *err, size_t errlen)
{
	struct stat st;
	int rc = stat_dir(mountpoint, &st);

	if (rc != 0 && errno == ENOTCONN && detach_dead_mount(mountpoint))
		rc = stat_dir(mountpoint, &st);
	if (rc != 0) {
		snprintf(err, errlen, "mount point %s: %s%s", mountpoint, strerror(errno),
			 errno == ENOTCONN ? " (a dead FUSE mount: try fusermount3 -uz)" : "");
		return -ENOTDIR;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "mount point %s: not a directory", mountpoint);
		return -ENOTDIR;
	}
	return 0;
}

int vbdfs_fuse_start(const char *mountpoint, const struct vbdfs_fuse_opts *o,
		     char *err, size_t errlen)
{
	struct vbd *list[MAX_DEVS];
	size_t n;
	int rc;

	if (fs_session) {
		snprintf(err, errlen, "the /vbd tree is already mounted");
		return -EBUSY;
	}
	rc = vbdfs_fuse_check_mountpoint(mountpoint, err, errlen);
	if (rc)
		return rc;
	memset(&fs_conf, 0, sizeof(fs_conf));
	fs_conf.writable = o->writable;
	fs_conf.allow_other = o->allow_other;
	fs_conf.has_group = o->allow_other && o->has_group;
	fs_conf.gid = o->group;
	fs_conf.readahead_mib = o->readahead_mib ? o->readahead_mib : 16;
	if (fs_conf.readahead_mib > 64)
		fs_conf.readahead_mib = 64;
	on_unmount = o->on_unmount;
	on_unmount_arg = o->on_unmount_arg;
	atomic_store(&stopping, false);
	atomic_store(&unmount_reported, false);
	clock_gettime(CLOCK_REALTIME, &mount_time);

	rc = requests_init();
	if (rc) {
		snprintf(err, errlen, "cannot start the request stream thread: %s", strerror(-rc));
		return rc;
	}
	disk_init();

	/* The table: listen first, then take what is already registered
	 * (dev_add_locked ignores duplicates). */
	pthread_mutex_lock(&devs_lock);
	running = true;
	pthread_mutex_unlock(&devs_lock);
	if (!listening) {
		vbd_registry_listen(on_registry, NULL);
		listening = true;
	}
	n = vbd_list(list, MAX_DEVS);
	pthread_mutex_lock(&devs_lock);
	for (size_t i = 0; i < n; i++)
		dev_add_locked(list[i]);
	pthread_mutex_unlock(&devs_lock);
	for (size_t i = 0; i < n; i++)
		vbd_put(list[i]);

	rc = session_new(mountpoint, o, err, errlen);
	if (rc)
		goto fail;
	mnt_path = strdup(mountpoint);
	rc = start_threads(o->threads ? (o->threads > MAX_THREADS ? MAX_THREADS : o->threads)
				      : DEFAULT_THREADS, err, errlen);
	if (rc)
		goto fail;
	raise_kernel_readahead(mountpoint);
	return 0;
fail:
	vbdfs_fuse_stop();
	return rc;
}

void vbdfs_fuse_stop(void)
{
	atomic_store(&stopping, true);
	stop_threads();
	/* No worker runs now: fail what waits, then let go of the kernel. */
	requests_shutdown();
	disk_shutdown();
	if (fs_session) {
		fuse_session_unmount(fs_session);
		fuse_session_destroy(fs_session);
		fs_session = NULL;
	}
	free_handles();
	requests_free();
	free_tables();
	free(mnt_path);
	mnt_path = NULL;
}
