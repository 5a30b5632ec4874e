/*
 * shim.h - what the LD_PRELOAD shims of t/shim/ share: REAL() to find the
 * function a wrapper stands in front of, and wrappers of open()/openat()
 * (and their 64 aliases) that pass each new descriptor and its path to
 * the including shim's note_open(), so it can watch the files it cares
 * about.  Include once, from a shim's .c, after defining
 *   static void note_open(int fd, const char *path);
 */
#ifndef VBDFS_T_SHIM_H
#define VBDFS_T_SHIM_H

#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>

/* Declare real_NAME and look it up in the next object on first use. */
#define REAL(name, ret, ...) \
	static ret (*real_##name)(__VA_ARGS__); \
	if (!real_##name) real_##name = dlsym(RTLD_NEXT, #name)

static void note_open(int fd, const char *path);

/* The mode argument exists only when a file may be created. */
static mode_t open_mode(int flags, va_list ap)
{
	return (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, mode_t) : 0;
}

int open(const char *path, int flags, ...)
{
	va_list ap;
	REAL(open, int, const char *, int, ...);
	va_start(ap, flags);
	mode_t mode = open_mode(flags, ap);
	va_end(ap);
	int fd = real_open(path, flags, mode);
	note_open(fd, path);
	return fd;
}
int open64(const char *path, int flags, ...) __attribute__((alias("open")));

int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	REAL(openat, int, int, const char *, int, ...);
	va_start(ap, flags);
	mode_t mode = open_mode(flags, ap);
	va_end(ap);
	int fd = real_openat(dirfd, path, flags, mode);
	note_open(fd, path);
	return fd;
}
int openat64(int dirfd, const char *path, int flags, ...) __attribute__((alias("openat")));

#endif
