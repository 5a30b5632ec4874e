/*
 * fmtwlog.c - an LD_PRELOAD shim that logs every write, hole punch and
 * sync on chosen files, in order, for power-failure simulation
 * (t/108-qcow2-powerfail.c replays prefixes and random subsets of the log).
 *
 *   WLOG_PATH=substring   files whose path contains it are logged (file id 0)
 *   WLOG_MARK=substring   ... except these, logged as file id 1 (markers)
 *   WLOG_FILE=/path       the log: records { u32 type, u32 file, u64 off,
 *                         u64 len } (host order), type 1 write (+ len data
 *                         bytes), 2 sync (fsync/fdatasync), 3 punch hole,
 *                         4 zero range
 * Calls still go to the real functions; the log is written first for
 * writes (the order is what matters, the child never crashes itself).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "shim.h" /* REAL(); open() and openat() call note_open() */

#define MAX_FD 4096
static signed char watched[MAX_FD];   /* 0 no, 1 image, 2 marker */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int logfd = -1;

struct rec {
	uint32_t type, file;
	uint64_t off, len;
};

static void note_open(int fd, const char *path)
{
	const char *p = getenv("WLOG_PATH"), *m = getenv("WLOG_MARK");
	if (fd < 0 || fd >= MAX_FD)
		return;
	watched[fd] = 0;
	if (path && m && *m && strstr(path, m))
		watched[fd] = 2;
	else if (path && p && *p && strstr(path, p))
		watched[fd] = 1;
}

static void put(const void *b, size_t n)
{
	const char *c = b;
	while (n > 0) {
		ssize_t k = write(logfd, c, n);
		if (k <= 0)
			_exit(99);
		c += k;
		n -= (size_t)k;
	}
}

static void log_rec(int fd, uint32_t type, uint64_t off, const struct iovec *iov, int cnt,
		    uint64_t len)
{
	if (fd < 0 || fd >= MAX_FD || !watched[fd])
		return;
	pthread_mutex_lock(&lock);
	if (logfd < 0) {
		REAL(open, int, const char *, int, ...);
		const char *f = getenv("WLOG_FILE");
		logfd = f ? real_open(f, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644) : -1;
		if (logfd < 0)
			_exit(98);
	}
	struct rec r = { type, (uint32_t)(watched[fd] - 1), off, len };
	put(&r, sizeof(r));
	for (int i = 0; iov && i < cnt; i++)
		put(iov[i].iov_base, iov[i].iov_len);
	pthread_mutex_unlock(&lock);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
	REAL(pwrite64, ssize_t, int, const void *, size_t, off_t);
	struct iovec v = { (void *)buf, n };
	log_rec(fd, 1, (uint64_t)off, &v, 1, n);
	return real_pwrite64(fd, buf, n, off);
}
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) __attribute__((alias("pwrite64")));

ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off)
{
	REAL(pwritev64, ssize_t, int, const struct iovec *, int, off_t);
	uint64_t len = 0;
	for (int i = 0; i < cnt; i++)
		len += iov[i].iov_len;
	log_rec(fd, 1, (uint64_t)off, iov, cnt, len);
	return real_pwritev64(fd, iov, cnt, off);
}
ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off) __attribute__((alias("pwritev64")));

int fsync(int fd)
{
	REAL(fsync, int, int);
	int r = real_fsync(fd);
	log_rec(fd, 2, 0, NULL, 0, 0);
	return r;
}

int fdatasync(int fd)
{
	REAL(fdatasync, int, int);
	int r = real_fdatasync(fd);
	log_rec(fd, 2, 0, NULL, 0, 0);
	return r;
}

int fallocate64(int fd, int mode, off_t off, off_t len)
{
	REAL(fallocate64, int, int, int, off_t, off_t);
	if (mode & FALLOC_FL_PUNCH_HOLE)
		log_rec(fd, 3, (uint64_t)off, NULL, 0, (uint64_t)len);
	else if (mode & FALLOC_FL_ZERO_RANGE)
		log_rec(fd, 4, (uint64_t)off, NULL, 0, (uint64_t)len);
	return real_fallocate64(fd, mode, off, len);
}
int fallocate(int fd, int mode, off_t off, off_t len) __attribute__((alias("fallocate64")));
