/*
 * raw.c - the raw format: the disk is the file, byte for byte.
 *
 * I/O is positional (preadv/pwritev).  flush = fdatasync.  discard punches
 * a hole (FALLOC_FL_PUNCH_HOLE: the data is gone from the file, so discard
 * is also "secure"); write_zeroes uses FALLOC_FL_ZERO_RANGE, else a punched
 * hole, else written zeros.  Block status comes from SEEK_DATA/SEEK_HOLE.
 *
 * IMG_DIRECT: a second descriptor opened with O_DIRECT serves requests whose
 * offset, length and buffers are all 4 KiB aligned; anything else goes
 * through the ordinary descriptor (Linux keeps the two coherent).
 *
 * preadv_nowait (img_preadv_nowait): preadv2 with RWF_NOWAIT, so the
 * request engine can serve page-cache hits on its intake thread.
 */
#include "formats/driver.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define RAW_DIRECT_ALIGN 4096u

struct raw {
	int dfd;          /* O_DIRECT descriptor, or -1 */
	bool is_blk;
};

static int raw_open(struct img *img, char *err, size_t errlen)
{
	struct raw *r = calloc(1, sizeof(*r));
	struct stat st;

	if (!r)
		return img_seterr(err, errlen, -ENOMEM, "out of memory");
	r->dfd = -1;
	if (fstat(img->fd, &st) < 0) {
		free(r);
		return img_seterr(err, errlen, -errno, "%s", strerror(errno));
	}
	if (S_ISBLK(st.st_mode)) {
		uint64_t sz;
		if (ioctl(img->fd, BLKGETSIZE64, &sz) < 0) {
			int e = errno;
			free(r);
			return img_seterr(err, errlen, -e, "BLKGETSIZE64: %s", strerror(e));
		}
		img->size = sz;
		r->is_blk = true;
	} else {
		img->size = (uint64_t)st.st_size;
	}
	if (img->flags & IMG_DIRECT) {
		char p[64];
		snprintf(p, sizeof(p), "/proc/self/fd/%d", img->fd);
		r->dfd = open(p, (img->readonly ? O_RDONLY : O_RDWR) | O_DIRECT | O_CLOEXEC);
		/* no O_DIRECT here (tmpfs...): fall back to buffered I/O */
	}
	img->priv = r;
	img->caps = IMG_CAN_FLUSH;
	if (!img->readonly)
		img->caps |= IMG_CAN_WRITE | IMG_CAN_DISCARD | IMG_CAN_WRITE_ZEROES |
			     IMG_CAN_SECURE_DISCARD;
	return 0;
}

static void raw_close(struct img *img)
{
	struct raw *r = img->priv;

	if (r && r->dfd >= 0)
		close(r->dfd);
	free(r);
	img->priv = NULL;
}

/* The descriptor to use for this request. */
static int raw_fd_for(struct img *img, const struct iovec *iov, int iovcnt, uint64_t off,
		      uint64_t len)
{
	struct raw *r = img->priv;

	if (r->dfd < 0 || (off | len) % RAW_DIRECT_ALIGN)
		return img->fd;
	for (int i = 0; i < iovcnt; i++)
		if (((uintptr_t)iov[i].iov_base | iov[i].iov_len) % RAW_DIRECT_ALIGN)
			return img->fd;
	return r->dfd;
}

static int raw_preadv(struct img *img, const struct iovec *iov, int iovcnt, uint64_t off,
		      uint64_t len)
{
	return full_preadv(raw_fd_for(img, iov, iovcnt, off, len), iov, iovcnt, off);
}

/* One preadv2(RWF_NOWAIT): all of it from the page cache, or -EAGAIN.  A
 * short read (partly cached, or past the end of the file, which
 * full_preadv zero-fills) is -EAGAIN too: the caller then reads it all
 * again the ordinary way.  The O_DIRECT descriptor never says "cached". */
static int raw_preadv_nowait(struct img *img, const struct iovec *iov, int iovcnt,
			     uint64_t off, uint64_t len)
{
	ssize_t n;

	if (raw_fd_for(img, iov, iovcnt, off, len) != img->fd)
		return -EAGAIN;
	n = preadv2(img->fd, iov, iovcnt, (off_t)off, RWF_NOWAIT);
	return n >= 0 && (uint64_t)n == len ? 0 : -EAGAIN;
}

static int raw_pwritev(struct img *img, const struct iovec *iov, int iovcnt, uint64_t off,
		       uint64_t len)
{
	return full_pwritev(raw_fd_for(img, iov, iovcnt, off, len), iov, iovcnt, off);
}

static int raw_flush(struct img *img)
{
	return fdatasync(img->fd) < 0 ? -errno : 0;
}

static int write_zero_bytes(int fd, uint64_t off, uint64_t len)
{
	static const uint8_t zeros[65536];
	struct iovec v[16];

	while (len > 0) {
		int n = 0;
		uint64_t chunk = 0;
		while (n < 16 && chunk < len) {
			uint64_t k = len - chunk < sizeof(zeros) ? len - chunk : sizeof(zeros);
			v[n].iov_base = (void *)zeros;
			v[n].iov_len = k;
			chunk += k;
			n++;
		}
		int r = full_pwritev(fd, v, n, off);
		if (r < 0)
			return r;
		off += chunk;
		len -= chunk;
	}
	return 0;
}

static int raw_discard(struct img *img, uint64_t off, uint64_t len)
{
	struct raw *r = img->priv;

	if (r->is_blk) {
		uint64_t range[2] = { off, len };
		if (ioctl(img->fd, BLKDISCARD, range) == 0)
			return 0;
		return write_zero_bytes(img->fd, off, len);
	}
	if (fallocate(img->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
		      (off_t)len) == 0)
		return 0;
	if (errno != EOPNOTSUPP)
		return -errno;
	/* the file system cannot punch: keep the promise that reads give zeros */
	return write_zero_bytes(img->fd, off, len);
}

static int raw_write_zeroes(struct img *img, uint64_t off, uint64_t len)
{
	struct raw *r = img->priv;

	if (r->is_blk) {
		uint64_t range[2] = { off, len };
		if (ioctl(img->fd, BLKZEROOUT, range) == 0)
			return 0;
		return write_zero_bytes(img->fd, off, len);
	}
	if (fallocate(img->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)off,
		      (off_t)len) == 0)
		return 0;
	if (fallocate(img->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
		      (off_t)len) == 0)
		return 0;
	return write_zero_bytes(img->fd, off, len);
}

static int raw_block_status(struct img *img, uint64_t off, uint64_t len, struct img_extent *ext)
{
	off_t data, hole;

	ext->offset = off;
	ext->length = len;
	ext->type = IMG_EXT_DATA;
	data = lseek(img->fd, (off_t)off, SEEK_DATA);
	if (data < 0 && errno == ENXIO) {
		ext->type = IMG_EXT_ZERO;      /* only a hole from here to the end */
		return 0;
	}
	if (data < 0)                      /* no SEEK_DATA support: all data */
		return 0;
	if ((uint64_t)data > off) {
		ext->type = IMG_EXT_ZERO;
		if ((uint64_t)data - off < len)
			ext->length = (uint64_t)data - off;
		return 0;
	}
	hole = lseek(img->fd, (off_t)off, SEEK_HOLE);
	if (hole > (off_t)off && (uint64_t)hole - off < len)
		ext->length = (uint64_t)hole - off;
	ext->host_offset = off;
	return 0;
}

/* A file grows by ftruncate (sparse); a block device only if it already
 * did (e.g. an LV that was extended). */
static int raw_resize(struct img *img, uint64_t size)
{
	struct raw *r = img->priv;
	uint64_t sz;

	if (r->is_blk) {
		if (ioctl(img->fd, BLKGETSIZE64, &sz) < 0)
			return -errno;
		return sz >= size ? 0 : -ENOSPC;
	}
	if (ftruncate(img->fd, (off_t)size) < 0 || fsync(img->fd) < 0)
		return -errno;
	return 0;
}

const struct img_driver raw_driver = {
	.name = "raw",
	.open = raw_open,
	.close = raw_close,
	.preadv = raw_preadv,
	.preadv_nowait = raw_preadv_nowait,
	.pwritev = raw_pwritev,
	.flush = raw_flush,
	.discard = raw_discard,
	.write_zeroes = raw_write_zeroes,
	.block_status = raw_block_status,
	.resize = raw_resize,
};
