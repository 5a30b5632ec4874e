/*
 * image_lock.c - QEMU-compatible OFD byte-range locks on image files; the
 * scheme is described in image_lock.h.
 */
#include "formats/image_lock.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/driver.h"
#include "util/log.h"

/* Bits 0..3; QEMU before 7.1 also had "graph modification" (bit 4), which
 * it always shared and so never locked in practice. */
#define IMG_PERM_BITS 4

static const char *const perm_names[IMG_PERM_BITS] = {
	"consistent read", "write", "write unchanged", "resize",
};

/* One byte at off: F_RDLCK to take, F_UNLCK to drop.  0 or -errno. */
static int set_byte(int fd, int off, short type)
{
	struct flock fl = {
		.l_type = type, .l_whence = SEEK_SET, .l_start = off, .l_len = 1,
	};
	while (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

/* 1 if another open file description locks byte off, 0 if not, -errno. */
static int byte_taken(int fd, int off)
{
	struct flock fl = {
		.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = off, .l_len = 1,
		.l_pid = 0, /* required by F_OFD_GETLK */
	};
	while (fcntl(fd, F_OFD_GETLK, &fl) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return fl.l_type != F_UNLCK;
}

static void unlock_all(int fd)
{
	struct flock fl = {
		.l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = IMG_LOCK_PERM_BASE,
		.l_len = IMG_LOCK_SHARED_BASE + IMG_PERM_BITS - IMG_LOCK_PERM_BASE,
	};
	(void)fcntl(fd, F_OFD_SETLK, &fl);
}

/* Errors meaning "this file system cannot do OFD locks" (NFS without lockd,
 * some FUSE file systems, old kernels): QEMU then runs without locks. */
static bool locks_unsupported(int neg_errno)
{
	return neg_errno == -EINVAL || neg_errno == -ENOTSUP || neg_errno == -EOPNOTSUPP ||
	       neg_errno == -ENOLCK;
}

static void warn_unsupported(const char *path, int neg_errno)
{
	static int warned;

	if (__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED) == 0)
		log_warn("%s: the file system does not support OFD locks (%s); images are "
			 "opened without QEMU-compatible locking, so nothing stops two "
			 "writers sharing one", path, strerror(-neg_errno));
}

/* Whether another descriptor of this process has fd's file open: then the
 * lock we met is (most likely) our own, and "another process" would send
 * the reader looking in the wrong place.  Only asked on a conflict. */
static bool open_here(int fd)
{
	struct stat me, st;
	struct dirent *e;
	bool found = false;
	DIR *d;

	if (fstat(fd, &me) != 0 || !(d = opendir("/proc/self/fd")))
		return false;
	while (!found && (e = readdir(d))) {
		char *end;
		long n = strtol(e->d_name, &end, 10);

		if (*end || end == e->d_name || n == fd || n == dirfd(d))
			continue;
		found = fstatat(dirfd(d), e->d_name, &st, 0) == 0 && st.st_dev == me.st_dev &&
			st.st_ino == me.st_ino;
	}
	closedir(d);
	return found;
}

static int conflict(int fd, const char *path, unsigned perm, bool shared, unsigned bit,
		    char *err, size_t errlen)
{
	bool here = open_here(fd);

	return img_seterr(err, errlen, -EBUSY,
			  "%s: %sfailed to get %s\"%s\" lock); refusing to open it %s", path,
			  here ? "is already open in this process (another disk uses it, or one "
				 "that was detached is still held open), and that open conflicts ("
			       : "is in use by another process (it holds a QEMU-compatible lock: ",
			  shared ? "shared " : "", perm_names[bit],
			  perm & IMG_PERM_WRITE ? "for writing"
			  : here		? "while it may be written"
						: "while another process may write it");
}

/* Take the bytes for perm and shared: 0 or -errno. */
static int take(int fd, unsigned perm, unsigned shared)
{
	for (unsigned i = 0; i < IMG_PERM_BITS; i++) {
		int r = 0;

		if (perm & (1u << i))
			r = set_byte(fd, IMG_LOCK_PERM_BASE + (int)i, F_RDLCK);
		if (r == 0 && !(shared & (1u << i)))
			r = set_byte(fd, IMG_LOCK_SHARED_BASE + (int)i, F_RDLCK);
		if (r < 0)
			return r;
	}
	return 0;
}

int img_lock_fd(int fd, const char *path, unsigned perm, unsigned shared, char *err,
		size_t errlen)
{
	int r = take(fd, perm, shared);

	if (r < 0 && locks_unsupported(r)) {
		unlock_all(fd);
		warn_unsupported(path, r);
		return 0;
	}
	/* someone holds a write lock on a lock byte (QEMU never does) */
	if (r == -EAGAIN || r == -EACCES) {
		unlock_all(fd);
		return img_seterr(err, errlen, -EBUSY,
				  "%s: is in use by another process (it holds an exclusive lock "
				  "on QEMU's lock bytes); refusing to open it", path);
	}
	if (r < 0) {
		unlock_all(fd);
		return img_seterr(err, errlen, r, "%s: cannot lock: %s", path, strerror(-r));
	}
	/* Now that ours are visible, look for theirs: a permission we want
	 * that someone refuses to share, or one someone holds that we do not
	 * share.  Our own locks never conflict with our own test. */
	for (unsigned i = 0; i < IMG_PERM_BITS; i++) {
		unsigned bit = 1u << i;

		r = 0;
		if (perm & bit) {
			r = byte_taken(fd, IMG_LOCK_SHARED_BASE + (int)i);
			if (r > 0) {
				unlock_all(fd);
				return conflict(fd, path, perm, false, i, err, errlen);
			}
		}
		if (r == 0 && !(shared & bit)) {
			r = byte_taken(fd, IMG_LOCK_PERM_BASE + (int)i);
			if (r > 0) {
				unlock_all(fd);
				return conflict(fd, path, perm, true, i, err, errlen);
			}
		}
		if (r < 0) {
			unlock_all(fd);
			if (locks_unsupported(r)) {
				warn_unsupported(path, r);
				return 0;
			}
			return img_seterr(err, errlen, r, "%s: cannot test locks: %s", path,
					  strerror(-r));
		}
	}
	return 0;
}

int img_create_open(const char *path, char *err, size_t errlen)
{
	struct stat st;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	int r;

	if (fd < 0)
		return img_seterr(err, errlen, -errno, "%s: cannot create: %s", path,
				  strerror(errno));
	r = img_lock_fd(fd, path, IMG_WRITER_PERM, IMG_WRITER_SHARED, err, errlen);
	if (r < 0) {
		close(fd);
		return r;
	}
	/* Truncate only now that nobody else uses it.  An empty file is left
	 * alone: truncating it is a no-op that ext4 may still turn into a
	 * flush of everything written later (auto_da_alloc). */
	if (fstat(fd, &st) < 0 || (st.st_size != 0 && ftruncate(fd, 0) < 0)) {
		r = -errno;
		close(fd);
		return img_seterr(err, errlen, r, "%s: cannot truncate: %s", path, strerror(-r));
	}
	return fd;
}

int img_lock_check_writable(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int r;

	if (fd < 0)
		return 0; /* missing or unreadable: the create that follows says why */
	r = img_lock_fd(fd, path, IMG_WRITER_PERM, IMG_WRITER_SHARED, err, errlen);
	close(fd);
	return r;
}
