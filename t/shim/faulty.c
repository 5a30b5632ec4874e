/*
 * faulty.c - an LD_PRELOAD shim that makes I/O on chosen files fail, for
 * fault-injection tests (EIO or ENOSPC from the "disk" under an image).
 *
 *   FAULT_PATH=substring   files whose path contains it are watched
 *   FAULT_CTL=/path/file   read before each watched call; its first word
 *                          says what fails now:
 *                            off | read | write | sync | all   [errno]
 *                          e.g. "write ENOSPC" or "all EIO" (default EIO)
 * Every failure is counted in the file $FAULT_CTL.count (one line per fault).
 * Watched calls: pread/pwrite/preadv/pwritev (and 64 variants), fsync,
 * fdatasync, fallocate.  Only fds opened after load through open/openat.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "shim.h" /* REAL(); open() and openat() call note_open() */

#define MAX_FD 4096
static unsigned char watched[MAX_FD];

enum kind { K_READ, K_WRITE, K_SYNC };

static void note_open(int fd, const char *path)
{
	const char *want = getenv("FAULT_PATH");
	if (fd >= 0 && fd < MAX_FD)
		watched[fd] = want && *want && path && strstr(path, want);
}

/* Should a call of this kind on fd fail now?  Returns the errno or 0. */
static int fault(int fd, enum kind k)
{
	const char *ctl = getenv("FAULT_CTL");
	char mode[32] = "", err[32] = "";
	FILE *f;
	int e;

	if (fd < 0 || fd >= MAX_FD || !watched[fd] || !ctl)
		return 0;
	f = fopen(ctl, "r");
	if (!f)
		return 0;
	if (fscanf(f, "%31s %31s", mode, err) < 1)
		mode[0] = 0;
	fclose(f);
	if (strcmp(mode, "all") != 0 &&
	    !(k == K_READ && strcmp(mode, "read") == 0) &&
	    !(k == K_WRITE && strcmp(mode, "write") == 0) &&
	    !(k == K_SYNC && strcmp(mode, "sync") == 0))
		return 0;
	e = strcmp(err, "ENOSPC") == 0 ? ENOSPC : EIO;
	char cpath[4096];
	snprintf(cpath, sizeof(cpath), "%s.count", ctl);
	f = fopen(cpath, "a");
	if (f) {
		fprintf(f, "%s\n", mode);
		fclose(f);
	}
	return e;
}

#define FAIL_IF(fd, kind) do { int e_ = fault(fd, kind); if (e_) { errno = e_; return -1; } } while (0)

ssize_t pread64(int fd, void *buf, size_t n, off_t off)
{
	REAL(pread64, ssize_t, int, void *, size_t, off_t);
	FAIL_IF(fd, K_READ);
	return real_pread64(fd, buf, n, off);
}
ssize_t pread(int fd, void *buf, size_t n, off_t off) __attribute__((alias("pread64")));

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
	REAL(pwrite64, ssize_t, int, const void *, size_t, off_t);
	FAIL_IF(fd, K_WRITE);
	return real_pwrite64(fd, buf, n, off);
}
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) __attribute__((alias("pwrite64")));

ssize_t preadv64(int fd, const struct iovec *iov, int cnt, off_t off)
{
	REAL(preadv64, ssize_t, int, const struct iovec *, int, off_t);
	FAIL_IF(fd, K_READ);
	return real_preadv64(fd, iov, cnt, off);
}
ssize_t preadv(int fd, const struct iovec *iov, int cnt, off_t off) __attribute__((alias("preadv64")));

ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off)
{
	REAL(pwritev64, ssize_t, int, const struct iovec *, int, off_t);
	FAIL_IF(fd, K_WRITE);
	return real_pwritev64(fd, iov, cnt, off);
}
ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off) __attribute__((alias("pwritev64")));

int fsync(int fd)
{
	REAL(fsync, int, int);
	FAIL_IF(fd, K_SYNC);
	return real_fsync(fd);
}

int fdatasync(int fd)
{
	REAL(fdatasync, int, int);
	FAIL_IF(fd, K_SYNC);
	return real_fdatasync(fd);
}

int fallocate64(int fd, int mode, off_t off, off_t len)
{
	REAL(fallocate64, int, int, int, off_t, off_t);
	FAIL_IF(fd, K_WRITE);
	return real_fallocate64(fd, mode, off, len);
}
int fallocate(int fd, int mode, off_t off, off_t len) __attribute__((alias("fallocate64")));
