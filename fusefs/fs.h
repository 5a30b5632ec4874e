/*
 * fs.h - the /vbd FUSE tree: one directory per served device (vbd.h), with
 * a live raw view of the disk, its statistics and its request stream.
 *
 *   MOUNT/<domid>-<devid>/           one per registered device
 *       disk  stat  stats  requests  info  info.json  map
 *   MOUNT/<domain-name>-<vdev>       symlink to the device directory
 *   MOUNT/block/vbd-<domid>-<devid>/stat    for `iostat -f MOUNT`
 *   MOUNT/diskstats                  /proc/diskstats format
 *
 * The tree follows the registry (vbd_registry_listen): devices appear and
 * disappear without remounting.  It runs on its own threads: the caller
 * (the vbdfs daemon, or a test helper) starts it, keeps doing its own work,
 * and stops it.  File formats are documented in man/vbdfs.8 (FILES).
 */
#ifndef VBDFS_FUSEFS_FS_H
#define VBDFS_FUSEFS_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct vbdfs_fuse_opts {
	bool writable;      /* disk files accept writes (not for read-only vbds) */
	bool allow_other;   /* mount -o allow_other: other users pass the kernel's check */
	bool has_group;     /* with allow_other: this group may read (files 0440, dirs 0550) */
	gid_t group;
	unsigned threads;   /* FUSE worker threads; 0 = default (8) */
	unsigned readahead_mib; /* per-open prefetch window of disk, MiB (max 64); 0 = default (16) */
	bool debug;         /* libfuse request tracing on stderr */
	/* Called once, from a FUSE thread, when the filesystem goes away by
	 * itself (fusermount3 -u, umount): the daemon should call
	 * vbdfs_fuse_stop() from its own thread and exit. */
	void (*on_unmount)(void *arg);
	void *on_unmount_arg;
};

/* Check that mountpoint is a directory we can mount on.  A dead mount a
 * vbdfs that died left there (every access ENOTCONN) is detached first,
 * with a warning; anyone else's is left alone.  0, or -errno with a
 * one-line message in err. */
int vbdfs_fuse_check_mountpoint(const char *mountpoint, char *err, size_t errlen);

/* Mount the tree at mountpoint (an existing directory) and serve it on
 * background threads.  Only one tree per process.  0, or -errno with a
 * one-line message in err. */
int vbdfs_fuse_start(const char *mountpoint, const struct vbdfs_fuse_opts *o,
		     char *err, size_t errlen);

/* Unmount (lazily if busy), stop and join every thread the tree started,
 * fail pending request-stream reads, free everything.  Safe to call after
 * an external unmount, and when not started. */
void vbdfs_fuse_stop(void);

#endif
