/*
 * image.h - the storage layer's contract: one open disk image of any
 * supported format, as a flat array of bytes.
 *
 * Everything above this line (the request engine, the FUSE view, vbd-img)
 * sees only these calls.  Each format is one small driver behind a vtable
 * (formats/driver.h): raw.c, qcow2*.c, qcow.c.
 *
 * Rules every driver keeps:
 *  - The image file is untrusted.  Every offset, size and count read from it
 *    is checked before use; a bad image fails img_open() or the one I/O with
 *    -EIO/-EINVAL and a logged message naming the file and the problem.
 *    Never a crash, an endless loop or an unbounded allocation.
 *  - Thread-safe: any number of threads may call I/O functions on one
 *    struct img at once.  Metadata is under a lock; data I/O runs outside it.
 *  - Return values: 0 (or a count) on success, a negative errno on failure.
 *  - The format of a guest-writable image is never probed: callers pass it.
 *    Probing (fmt == NULL) is allowed only with IMG_RDONLY.
 */
#ifndef VBDFS_IMAGE_H
#define VBDFS_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/uio.h>

struct img;

/* img_open flags */
#define IMG_RDONLY   0x1  /* open read-only */
#define IMG_DIRECT   0x2  /* O_DIRECT on the data file(s) where possible */
#define IMG_NOBACKING 0x4 /* do not open backing files (info/check on one layer) */
#define IMG_REPAIR   0x8  /* qcow2: open a dirty or corrupt-marked image writable,
			   * for img_check(IMG_FIX_ERRORS) only */
#define IMG_FORCE_SHARE 0x10 /* with IMG_RDONLY only: read the image even if another
			      * process writes it (qemu-img -U); see below */

/* Capabilities a driver reports; the backend advertises exactly these. */
#define IMG_CAN_WRITE        0x01
#define IMG_CAN_FLUSH        0x02
#define IMG_CAN_DISCARD      0x04  /* discard frees space (reads then return zeros) */
#define IMG_CAN_WRITE_ZEROES 0x08
#define IMG_CAN_SECURE_DISCARD 0x10 /* discarded data is unrecoverable from the file */

/*
 * Open path.  fmt is "raw", "qcow2" or "qcow" (v1), or NULL to probe from
 * the magic (only with IMG_RDONLY).  On failure returns a negative errno and
 * writes a one-line message ("disk.qcow2: L1 table offset 0x123 is not
 * cluster-aligned") into err.
 *
 * Every file of the chain is locked as QEMU locks it (formats/image_lock.h),
 * for as long as it is open: a writable image excludes every other writer
 * and reader, a read-only image or backing file excludes writers but not
 * other readers.  An image someone else uses that way fails with -EBUSY and
 * "FILE: is in use by another process ...".  IMG_FORCE_SHARE (read-only
 * opens only, else -EINVAL) reads it anyway, as qemu-img -U does; the data
 * may then change or be inconsistent while it is read.
 */
int img_open(const char *path, const char *fmt, unsigned flags, struct img **out,
	     char *err, size_t errlen);
/* An open image may have several owners: img_ref() adds one (and returns
 * img); img_close() drops one and closes the image with the last. */
struct img *img_ref(struct img *img);
void img_close(struct img *img);
/* Whether a writer could open path now: 0 if nobody (vbdfs, QEMU,
 * qemu-img) holds it in a way that excludes writers; -EBUSY and a message
 * naming path and the lock otherwise (0 too if path cannot be opened). */
int img_check_free(const char *path, char *err, size_t errlen);
/* Whether st (stat() of a path) is the file img was opened from (the top
 * image, not a backing file). */
bool img_is_file(const struct img *img, const struct stat *st);

/* Probe a file's format from its magic: "raw", "qcow2", "qcow". For
 * inspection only (see above). */
int img_probe(const char *path, const char **fmt, char *err, size_t errlen);

uint64_t img_size(const struct img *img);      /* virtual size in bytes */
unsigned img_caps(const struct img *img);      /* IMG_CAN_* */
const char *img_format(const struct img *img); /* "raw", "qcow2", "qcow" */

/* Vectored I/O at a byte offset; the whole range must lie inside the disk.
 * Reads of unallocated space return zeros (or the backing file's data). */
int img_preadv(struct img *img, const struct iovec *iov, int iovcnt, uint64_t off);
int img_pwritev(struct img *img, const struct iovec *iov, int iovcnt, uint64_t off);
int img_pread(struct img *img, void *buf, size_t len, uint64_t off);
/* img_preadv, but only if it completes without waiting for the disk (the
 * data is in the page cache, preadv2 RWF_NOWAIT): -EAGAIN otherwise, and
 * always for formats or requests that cannot tell (only raw without
 * O_DIRECT can).  Any failure is -EAGAIN: the caller retries with
 * img_preadv, which reports real errors.  For serving cached reads inline
 * and handing the rest to I/O threads, as io_uring does. */
int img_preadv_nowait(struct img *img, const struct iovec *iov, int iovcnt, uint64_t off);
int img_pwrite(struct img *img, const void *buf, size_t len, uint64_t off);

/* Online resize: grow the virtual disk to new_size bytes (never shrinks;
 * equal is a no-op).  Concurrent I/O stays valid: requests are checked
 * against the old or the new size.  Returns 0, -EINVAL (smaller), -EROFS,
 * -ENOTSUP (the format cannot grow) or another -errno. */
int img_resize(struct img *img, uint64_t new_size);

/* Durable on return: all data and metadata written so far. */
int img_flush(struct img *img);
/* Deallocate a range (best effort: unaligned edges may stay allocated but
 * still read as their old data or zeros as the driver documents). */
int img_discard(struct img *img, uint64_t off, uint64_t len);
/* Make a range read as zeros. */
int img_write_zeroes(struct img *img, uint64_t off, uint64_t len);

/* Allocation of the range starting at off. */
enum img_extent_type {
	IMG_EXT_DATA,        /* allocated data in some layer */
	IMG_EXT_ZERO,        /* reads as zeros (zero cluster or hole) */
	IMG_EXT_UNALLOCATED, /* not allocated anywhere in the chain: reads as zeros */
};
struct img_extent {
	uint64_t offset;       /* == the off asked for */
	uint64_t length;       /* > 0, extent ends at offset+length */
	enum img_extent_type type;
	bool compressed;       /* data stored compressed */
	unsigned depth;        /* layer holding it: 0 = this image, 1 = its backing file... */
	uint64_t host_offset;  /* for DATA in an uncompressed layer, else 0 */
};
/* Describe the longest uniform extent starting at off (clamped to len). */
int img_block_status(struct img *img, uint64_t off, uint64_t len, struct img_extent *ext);

struct img_info {
	const char *format;      /* "raw", "qcow2", "qcow" */
	const char *path;
	uint64_t virtual_size;
	uint64_t file_size;      /* bytes of the host file */
	uint64_t allocated;      /* bytes of the host file actually allocated */
	uint32_t cluster_size;   /* 0 for raw */
	int version;             /* qcow2: 2 or 3; qcow: 1; raw: 0 */
	const char *compression; /* "zlib" or NULL */
	bool dirty, corrupt, readonly;
	unsigned refcount_bits;  /* qcow2 */
	const char *backing_file;   /* as stored in the image, or NULL */
	const char *backing_format; /* from the header extension, or NULL */
	struct img *backing;        /* the open backing image, or NULL */
};
void img_get_info(struct img *img, struct img_info *info);

/* Format-specific hooks for vbd-img; see formats/vbd-img.c. */
struct img_check_result {
	uint64_t corruptions;
	uint64_t leaks;
	uint64_t leaks_fixed;
	uint64_t corruptions_fixed;
	uint64_t check_errors;   /* internal/IO errors during the check */
	uint64_t allocated_clusters;
	uint64_t total_clusters;
};
/* What img_check may repair (img_check(img, 0, ...) only looks). */
#define IMG_FIX_LEAKS  0x1 /* free leaked clusters (refcount above references) */
#define IMG_FIX_ERRORS 0x2 /* qcow2: rebuild the refcounts from the references
			    * (refcounts too low, stale after a crash with
			    * lazy refcounts) and clear the dirty and corrupt
			    * bits; only if every other structure is sound */
/* Validate metadata (qcow2: refcounts vs references), repairing what fix
 * says.  raw: always clean.  Problems are logged one per line. */
int img_check(struct img *img, unsigned fix, struct img_check_result *res);

#endif
