/*
 * nolocks.c - an LD_PRELOAD shim that plays a file system without
 * open-file-description locks (as NFS without lockd is): every
 * F_OFD_SETLK, F_OFD_SETLKW and F_OFD_GETLK fails with EINVAL (or the
 * errno named by NOLOCKS_ERRNO: ENOLCK, ENOTSUP).  Every other fcntl()
 * passes through.  For t/189: images then open unlocked, with one warning.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "shim.h" /* REAL(); its open() wrappers call note_open() */

static void note_open(int fd, const char *path)
{
	(void)fd;
	(void)path;
}

static int fail_errno(void)
{
	const char *e = getenv("NOLOCKS_ERRNO");

	if (e && !strcmp(e, "ENOLCK"))
		return ENOLCK;
	if (e && !strcmp(e, "ENOTSUP"))
		return ENOTSUP;
	return EINVAL;
}

/* fcntl's third argument is an int or a pointer: passed on as a pointer,
 * which carries either in the x86-64 and aarch64 calling conventions. */
int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;
	REAL(fcntl, int, int, int, ...);

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (cmd == F_OFD_SETLK || cmd == F_OFD_SETLKW || cmd == F_OFD_GETLK) {
		errno = fail_errno();
		return -1;
	}
	return real_fcntl(fd, cmd, arg);
}
int fcntl64(int fd, int cmd, ...) __attribute__((alias("fcntl")));
