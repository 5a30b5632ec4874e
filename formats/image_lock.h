/*
 * image_lock.h - QEMU-compatible image locking: two writers never share an
 * image file, whether they are vbdfs, QEMU, qemu-img or qemu-io.
 *
 * The scheme is QEMU's (block/file-posix.c), so each side honours the
 * other's locks.  Every user of an image file has a set of permissions it
 * holds and a set it shares with others (the BLK_PERM_* bits below).  For
 * each permission held it takes a shared OFD read lock on byte
 * IMG_LOCK_PERM_BASE + bit; for each permission it refuses to share, one on
 * IMG_LOCK_SHARED_BASE + bit.  Then it tests (F_OFD_GETLK with F_WRLCK)
 * that nobody else locks the opposite bytes: SHARED_BASE + p for each p it
 * wants, PERM_BASE + p for each p it does not share.  Taking first and
 * testing second means two racing openers can both fail, never both win.
 *
 * The locks are open-file-description locks: they belong to one open()
 * and go away when it is closed (or the process dies), and two opens of
 * one file inside one process conflict like two processes do.
 *
 * Nothing outside formats/ includes this; image.c locks every image it
 * opens, and vbd-img's create/convert lock the files they write.
 */
#ifndef VBDFS_FORMATS_IMAGE_LOCK_H
#define VBDFS_FORMATS_IMAGE_LOCK_H

#include <stddef.h>

/* QEMU's BLK_PERM_* bit numbers (include/block/block-common.h). */
#define IMG_PERM_CONSISTENT_READ 0x1
#define IMG_PERM_WRITE           0x2
#define IMG_PERM_WRITE_UNCHANGED 0x4
#define IMG_PERM_RESIZE          0x8
#define IMG_PERM_ALL             0xf

#define IMG_LOCK_PERM_BASE   100
#define IMG_LOCK_SHARED_BASE 200

/* What QEMU's qcow2/raw nodes hold on their file:
 * a writer holds consistent read, write and resize and shares neither
 * write nor resize; a reader (read-only image, backing file, qemu-img
 * info/check) holds consistent read and shares neither; a forced-share
 * reader (qemu-img -U) holds consistent read and shares everything. */
#define IMG_WRITER_PERM   (IMG_PERM_CONSISTENT_READ | IMG_PERM_WRITE | IMG_PERM_RESIZE)
#define IMG_WRITER_SHARED (IMG_PERM_ALL & ~(IMG_PERM_WRITE | IMG_PERM_RESIZE))
#define IMG_READER_PERM   IMG_PERM_CONSISTENT_READ
#define IMG_READER_SHARED (IMG_PERM_ALL & ~(IMG_PERM_WRITE | IMG_PERM_RESIZE))

/*
 * Take the locks for (perm, shared) on fd (open for reading) and check
 * nobody conflicts.  0 on success, also when the file system has no OFD
 * locks (warned about once, as QEMU does); -EBUSY if another open of the
 * file conflicts, with a message naming path and the lock into err; another
 * -errno on failure.  On failure no lock is left behind.
 */
int img_lock_fd(int fd, const char *path, unsigned perm, unsigned shared, char *err,
		size_t errlen);

/*
 * Open path for writing a new image in it: created if missing, locked as a
 * writer (refused with -EBUSY if someone uses it), then truncated to zero
 * bytes.  Returns the fd (O_RDWR, close-on-exec; the locks last until it is
 * closed) or a negative errno with a message naming path in err.
 */
int img_create_open(const char *path, char *err, size_t errlen);

/* Whether someone else uses path so that a writer could not open it
 * (-EBUSY, message in err), else 0 (also if path cannot be opened: the
 * caller's own create reports that).  For replacing a file: check first. */
int img_lock_check_writable(const char *path, char *err, size_t errlen);

#endif
