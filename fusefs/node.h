/*
 * node.h - the contract between fs.c (session, inodes, directories) and the
 * files of each node kind (node_*.c).
 *
 * Inode numbers are computed, never stored: ino = devno << 4 | kind, where
 * devno is a per-mount counter given to each device when it registers (never
 * reused, so a stale inode of a removed device can never name a new one) and
 * devno 0 holds the global nodes.  An open file holds its own reference to
 * the struct vbd, so it keeps working (reads of disk, stats...) after the
 * device disappears from the tree.
 */
#ifndef VBDFS_FUSEFS_NODE_H
#define VBDFS_FUSEFS_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include <fuse_lowlevel.h>

struct vbd;

enum node_kind {
	/* devno 0 */
	K_ROOT = 1,
	K_BLOCK = 2,       /* block/ */
	K_DISKSTATS = 3,
	/* per device */
	K_DEVDIR = 1,
	K_DISK,
	K_STAT,
	K_STATS,
	K_REQUESTS,
	K_INFO,
	K_INFO_JSON,
	K_MAP,
	K_LINK,            /* <domain>-<vdev> symlink in the root */
	K_BLKDIR,          /* block/vbd-<domid>-<devid>/ */
	K_BLKSTAT,         /* block/vbd-<domid>-<devid>/stat */
};

#define INO(devno, kind) (((fuse_ino_t)(devno) << 4) | (fuse_ino_t)(kind))
#define INO_DEVNO(ino) ((uint64_t)(ino) >> 4)
#define INO_KIND(ino) ((unsigned)(ino) & 15u)

/* Options of the running tree (fs.c), read-only after start. */
struct fs_conf {
	bool writable;
	bool allow_other;
	bool has_group;
	unsigned gid;
	unsigned readahead_mib;
};
extern struct fs_conf fs_conf;
extern struct fuse_session *fs_session;

/* The time the device appeared in this tree (now_ns clock), for the
 * request stream's timestamps; 0 if unknown. */
uint64_t fs_dev_t0(const struct vbd *v);

/* ---- Open file handles ----
 * Every handle put in fi->fh starts with a struct fh and is tracked, so
 * vbdfs_fuse_stop() can free the handles the kernel will never release. */
struct fh {
	struct fh *prev, *next;
	void (*destroy)(struct fh *h);   /* frees the handle (untracked first) */
};
void fs_fh_track(struct fh *h);
void fs_fh_untrack(struct fh *h);

/* ---- Generated text files (stat, stats, info, map, diskstats) ----
 * Built once at open into a buffer that reads then serve (direct_io, so
 * every open shows fresh numbers). */
struct text {
	char *buf;
	size_t len, cap;
	bool oom;          /* an append failed; the text ends early */
};
void text_printf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void text_json_str(struct text *t, const char *s); /* a quoted, escaped JSON string */
void text_free(struct text *t);

/* node_stats.c */
void node_stat_text(struct vbd *v, struct text *t);     /* the 17-field line */
void node_stats_text(struct vbd *v, struct text *t);    /* key: value lines */
/* /proc/diskstats line for one device. */
void node_diskstats_line(struct vbd *v, struct text *t);
/* The iostat name "vbd-<domid>-<devid>" and the Linux-style major/minor. */
void node_blkname(const struct vbd *v, char *buf, size_t len);
void node_devnum(const struct vbd *v, unsigned *major, unsigned *minor);

/* node_info.c */
void node_info_text(struct vbd *v, struct text *t, bool json);
void node_map_text(struct vbd *v, struct text *t);

/* node_disk.c: the raw view.  fi->fh is owned by node_disk. */
void disk_open(fuse_req_t req, struct vbd *v, uint64_t devno, struct fuse_file_info *fi);
/* The device of an open disk file of directory devno, referenced, or
 * NULL: after a detach, fstat() of a file still open (a loop mount's, a
 * held descriptor) goes on answering. */
struct vbd *disk_held(uint64_t devno);
void disk_read(fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi);
void disk_write(fuse_req_t req, const char *buf, size_t size, off_t off,
		struct fuse_file_info *fi);
void disk_fsync(fuse_req_t req, struct fuse_file_info *fi);
void disk_fallocate(fuse_req_t req, int mode, off_t off, off_t len,
		    struct fuse_file_info *fi);
void disk_lseek(fuse_req_t req, off_t off, int whence, struct fuse_file_info *fi);
void disk_release(fuse_req_t req, struct fuse_file_info *fi);
void disk_init(void);
void disk_shutdown(void);  /* joins the read-ahead workers */

/* node_requests.c: the request log.  fi->fh is owned by node_requests. */
void requests_open(fuse_req_t req, struct vbd *v, struct fuse_file_info *fi);
void requests_read(fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi);
void requests_poll(fuse_req_t req, struct fuse_file_info *fi, struct fuse_pollhandle *ph);
void requests_release(fuse_req_t req, struct fuse_file_info *fi);
/* A device's log, from its registration (t0_ns: now_ns() then, for the
 * timestamps) to its removal; it lives on while files are open.  attach
 * may be called with the device table locked: it takes only its own lock. */
void requests_attach(struct vbd *v, uint64_t devno, uint64_t t0_ns);
void requests_detach(struct vbd *v);
/* The log's size and the time of its last line, in st. */
void requests_attr(struct vbd *v, struct stat *st);
/* The same for a device that went away while its log is open; false if
 * it is not. */
bool requests_attr_gone(uint64_t devno, struct stat *st);
/* Wake streams (a device went away, or periodic). */
void requests_kick(void);
int requests_init(void);
/* Stops the waker thread; fails pending reads with EOF. */
void requests_shutdown(void);
/* Frees the logs (after every handle was freed). */
void requests_free(void);

#endif
