/*
 * driver.h - the internal contract between formats/image.c and the format
 * drivers (raw.c, qcow2*.c, qcow.c).  Nothing outside formats/ includes it.
 *
 * image.c owns everything generic: opening the file, refusing loops and
 * hostile backing names, opening the backing chain, range checks on every
 * request, read-only enforcement.  A driver only maps guest bytes to its
 * file.  Adding a format is one `const struct img_driver` plus one entry in
 * the table in image.c.
 *
 * What image.c guarantees to a driver's I/O callbacks:
 *   - off + len <= img->size, len > 0, no overflow; iov holds exactly len
 *     bytes (len is passed so drivers need not sum it again);
 *   - write callbacks are called only if the image is writable;
 *   - discard / write_zeroes are called only if the driver provides them.
 */
#ifndef VBDFS_FORMATS_DRIVER_H
#define VBDFS_FORMATS_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "formats/image.h"
#include "util/log.h"

struct img_driver {
	const char *name;       /* "raw", "qcow2", "qcow" */
	/* True if the first bytes of a file (len >= 8 unless the file is
	 * shorter) look like this format.  Used by img_probe; raw has none. */
	bool (*probe)(const uint8_t *buf, size_t len);

	/* Parse and validate the file behind img->fd (opened by image.c, read
	 * only if img->readonly).  Set img->size, img->caps, img->priv and, if
	 * the image names a backing file, img->backing_name/backing_fmt
	 * (malloc'd).  image.c opens the backing chain afterwards.  On failure
	 * return a negative errno, write "what is wrong" (without the path:
	 * image.c prefixes it) into err, and free what was allocated. */
	int (*open)(struct img *img, char *err, size_t errlen);
	void (*close)(struct img *img);

	int (*preadv)(struct img *img, const struct iovec *iov, int iovcnt,
		      uint64_t off, uint64_t len);
	int (*pwritev)(struct img *img, const struct iovec *iov, int iovcnt,
		       uint64_t off, uint64_t len);
	/* Read only if no disk I/O is needed, else -EAGAIN (img_preadv_nowait).
	 * Optional: without it img_preadv_nowait is always -EAGAIN. */
	int (*preadv_nowait)(struct img *img, const struct iovec *iov, int iovcnt,
			     uint64_t off, uint64_t len);
	int (*flush)(struct img *img);
	int (*discard)(struct img *img, uint64_t off, uint64_t len);        /* optional */
	int (*write_zeroes)(struct img *img, uint64_t off, uint64_t len);   /* optional */
	int (*block_status)(struct img *img, uint64_t off, uint64_t len,
			    struct img_extent *ext);
	int (*check)(struct img *img, unsigned fix, struct img_check_result *res); /* optional */
	/* Fill the format-specific fields of info (image.c did the rest). */
	void (*info)(struct img *img, struct img_info *info);               /* optional */
	/* Grow to size (> img->size) durably; image.c then publishes the new
	 * img->size.  Optional: without it img_resize returns -ENOTSUP. */
	int (*resize)(struct img *img, uint64_t size);                      /* optional */
};

struct img {
	const struct img_driver *drv;
	void *priv;              /* the driver's state */
	char *path;              /* as opened (backing files: resolved path) */
	int fd;                  /* the image file */
	unsigned flags;          /* IMG_* open flags */
	bool readonly;           /* set by image.c; a driver may set it at open
				  * (e.g. qcow2 corrupt bit) to refuse writes */
	uint64_t size;           /* virtual size */
	unsigned caps;           /* IMG_CAN_* */
	char *backing_name;      /* as stored in the image, or NULL */
	char *backing_fmt;       /* backing-format extension, or NULL */
	struct img *backing;     /* open backing image, or NULL */
	unsigned depth;          /* 0 for the image the caller opened */
	dev_t dev;               /* identity of the file, for loop checks */
	ino_t ino;
	unsigned refs;           /* owners (img_ref); img_close drops one */
};

extern const struct img_driver raw_driver;
extern const struct img_driver qcow2_driver;
extern const struct img_driver qcow_driver;  /* formats/qcow.c (v1) */

/* Deepest backing chain img_open accepts (the top image is depth 0). */
#define IMG_MAX_CHAIN_DEPTH 64

/* ---- helpers for drivers (image.c) ---- */

/* snprintf into err; always NUL-terminated; returns -errno_val (negative). */
int img_seterr(char *err, size_t errlen, int neg_errno, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* A rate-limited error about this image's data (one limiter for all images:
 * a hostile image cannot flood the log).  Prefixes the path. */
void img_log_bad(const struct img *img, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Read len bytes at guest offset off from the backing chain into iov at
 * byte iov_off; zeros where there is no backing file or past its end. */
int img_read_backing(struct img *img, const struct iovec *iov, int iovcnt,
		     size_t iov_off, uint64_t off, uint64_t len);

/* Positional I/O on a file, retried on EINTR and short transfers.
 * full_preadv zero-fills past end of file (sparse tails, truncated hosts). */
int full_preadv(int fd, const struct iovec *iov, int iovcnt, uint64_t off);
int full_pwritev(int fd, const struct iovec *iov, int iovcnt, uint64_t off);
int full_pread(int fd, void *buf, size_t len, uint64_t off);
int full_pwrite(int fd, const void *buf, size_t len, uint64_t off);

/* ---- iovec helpers ---- */
size_t iov_total(const struct iovec *iov, int iovcnt);
/* Copy between a flat buffer and iov at byte offset iov_off. */
void iov_from_buf(const struct iovec *iov, int iovcnt, size_t iov_off,
		  const void *buf, size_t len);
void iov_to_buf(const struct iovec *iov, int iovcnt, size_t iov_off,
		void *buf, size_t len);
void iov_memset(const struct iovec *iov, int iovcnt, size_t iov_off, int c, size_t len);

/*
 * A view of bytes [iov_off, iov_off+len) of an iovec, for passing part of a
 * request to preadv/pwritev without copying.  Uses the inline array when it
 * fits (the common case: no allocation), else mallocs.  Always pair with
 * iov_slice_free.
 */
#define IOV_SLICE_INLINE 16
struct iov_slice {
	struct iovec *iov;
	int cnt;
	struct iovec inline_iov[IOV_SLICE_INLINE];
};
int iov_slice(struct iov_slice *s, const struct iovec *iov, int iovcnt,
	      size_t iov_off, size_t len);
void iov_slice_free(struct iov_slice *s);

#endif
