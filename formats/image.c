/*
 * image.c - the generic half of formats/image.h: opening a file with the
 * right driver, the backing chain, request range checks, and small helpers
 * (full positional I/O, iovec slicing) shared by the drivers.
 *
 * Backing chains.  A driver's open() reports the backing file name and the
 * backing-format extension as stored in the image; both are untrusted.  We
 * refuse names with a protocol prefix ("nbd:", "json:{...}", anything with a
 * ':' before the first '/'), resolve relative names against the directory
 * of the image that names them (as QEMU does), open backing files read-only,
 * refuse a file that already appears in the chain (loops, by device and
 * inode) and chains deeper than IMG_MAX_CHAIN_DEPTH.  When the backing-format
 * extension is missing we probe the backing file's format from its magic:
 * that is acceptable only because backing files are opened read-only, so a
 * guest that writes a qcow2 header into a raw backing file cannot make us
 * write through it (and the overlay's own format always comes from the
 * caller).
 */
#include "formats/driver.h"
#include "formats/image_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Every format this build knows.  Adding a driver is one line here. */
static const struct img_driver *const drivers[] = {
	&raw_driver,
	&qcow2_driver,
	&qcow_driver,
};

static const struct img_driver *find_driver(const char *name)
{
	for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++)
		if (strcmp(drivers[i]->name, name) == 0)
			return drivers[i];
	return NULL;
}

int img_seterr(char *err, size_t errlen, int neg_errno, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return neg_errno;
}

static struct ratelimit bad_image_rl = RATELIMIT_INIT(10, 5);

void img_log_bad(const struct img *img, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_limited(&bad_image_rl, VLOG_ERR, "%s: %s", img->path, msg);
}

/* ---- probing ---- */

static const char *probe_buf(const uint8_t *buf, size_t len)
{
	/* "QFI\xfb" then a big-endian version: 1 = qcow, 2/3 = qcow2 */
	if (len >= 8 && memcmp(buf, "QFI\xfb", 4) == 0) {
		uint32_t v = (uint32_t)buf[4] << 24 | (uint32_t)buf[5] << 16 |
			     (uint32_t)buf[6] << 8 | buf[7];
		if (v == 1)
			return "qcow";
		if (v == 2 || v == 3)
			return "qcow2";
	}
	return "raw";
}

static int probe_fd(int fd, const char **fmt)
{
	uint8_t buf[8];
	ssize_t n;

	do
		n = pread(fd, buf, sizeof(buf), 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	*fmt = probe_buf(buf, (size_t)n);
	return 0;
}

int img_probe(const char *path, const char **fmt, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int r;

	if (fd < 0)
		return img_seterr(err, errlen, -errno, "%s: %s", path, strerror(errno));
	r = probe_fd(fd, fmt);
	close(fd);
	if (r < 0)
		return img_seterr(err, errlen, r, "%s: %s", path, strerror(-r));
	return 0;
}

/* ---- open / close ---- */

/* The chain above the image being opened, for loop detection. */
struct chain {
	const struct chain *up;
	dev_t dev;
	ino_t ino;
};

static int open_layer(const char *path, const char *fmt, unsigned flags, unsigned depth,
		      const struct chain *up, struct img **out, char *err, size_t errlen);

/* A backing name is a plain file path; anything QEMU would treat as a
 * protocol or a JSON description is refused. */
static bool backing_name_ok(const char *name, char *why, size_t whylen)
{
	const char *colon = strchr(name, ':');
	const char *slash = strchr(name, '/');

	if (name[0] == '\0') {
		snprintf(why, whylen, "empty backing file name");
		return false;
	}
	if (strncmp(name, "json:", 5) == 0) {
		snprintf(why, whylen, "backing file name is a json: description (refused)");
		return false;
	}
	if (colon && (!slash || colon < slash)) {
		snprintf(why, whylen, "backing file name '%.64s' has a protocol prefix (refused)",
			 name);
		return false;
	}
	return true;
}

/* Resolve name relative to the directory of the image at path. */
static char *resolve_backing(const char *path, const char *name)
{
	const char *slash;
	char *res;
	size_t dirlen;

	if (name[0] == '/')
		return strdup(name);
	slash = strrchr(path, '/');
	if (!slash)
		return strdup(name);
	dirlen = (size_t)(slash - path) + 1;
	res = malloc(dirlen + strlen(name) + 1);
	if (!res)
		return NULL;
	memcpy(res, path, dirlen);
	strcpy(res + dirlen, name);
	return res;
}

static int open_backing(struct img *img, const struct chain *self, char *err, size_t errlen)
{
	char why[160];
	char *bpath;
	const char *bfmt = img->backing_fmt;
	int r;

	if (!backing_name_ok(img->backing_name, why, sizeof(why)))
		return img_seterr(err, errlen, -EINVAL, "%s: %s", img->path, why);
	if (img->depth + 1 > IMG_MAX_CHAIN_DEPTH)
		return img_seterr(err, errlen, -ELOOP,
				  "%s: backing chain deeper than %u images", img->path,
				  IMG_MAX_CHAIN_DEPTH);
	if (bfmt && !find_driver(bfmt))
		return img_seterr(err, errlen, -ENOTSUP,
				  "%s: backing file format '%.32s' is not supported", img->path,
				  bfmt);
	bpath = resolve_backing(img->path, img->backing_name);
	if (!bpath)
		return img_seterr(err, errlen, -ENOMEM, "%s: out of memory", img->path);
	r = open_layer(bpath, bfmt, IMG_RDONLY | (img->flags & (IMG_DIRECT | IMG_FORCE_SHARE)),
		       img->depth + 1, self,
		       &img->backing, err, errlen);
	free(bpath);
	return r;
}

struct img *img_ref(struct img *img)
{
	__atomic_add_fetch(&img->refs, 1, __ATOMIC_RELAXED);
	return img;
}

int img_check_free(const char *path, char *err, size_t errlen)
{
	return img_lock_check_writable(path, err, errlen);
}

bool img_is_file(const struct img *img, const struct stat *st)
{
	return st->st_dev == img->dev && st->st_ino == img->ino;
}

void img_close(struct img *img)
{
	if (!img || __atomic_sub_fetch(&img->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	/* the driver first: its close may still flush (and could read) */
	if (img->drv && img->drv->close)
		img->drv->close(img);
	if (img->backing)
		img_close(img->backing);
	if (img->fd >= 0)
		close(img->fd);
	free(img->backing_name);
	free(img->backing_fmt);
	free(img->path);
	free(img);
}

/* Take QEMU's locks for how this layer is opened; they last until
 * img->fd is closed.  Read-only (and backing) layers hold what QEMU's
 * backing files and qemu-img info hold; see image_lock.h. */
static int lock_layer(struct img *img, char *err, size_t errlen)
{
	if (img->flags & IMG_FORCE_SHARE)
		return img_lock_fd(img->fd, img->path, IMG_READER_PERM, IMG_PERM_ALL, err, errlen);
	if (img->readonly)
		return img_lock_fd(img->fd, img->path, IMG_READER_PERM, IMG_READER_SHARED, err,
				   errlen);
	return img_lock_fd(img->fd, img->path, IMG_WRITER_PERM, IMG_WRITER_SHARED, err, errlen);
}

static int open_layer(const char *path, const char *fmt, unsigned flags, unsigned depth,
		      const struct chain *up, struct img **out, char *err, size_t errlen)
{
	const struct img_driver *drv;
	struct chain self;
	struct img *img;
	struct stat st;
	char msg[256];
	bool rdonly = flags & IMG_RDONLY;
	int r;

	*out = NULL;
	if (!fmt && !rdonly)
		return img_seterr(err, errlen, -EINVAL,
				  "%s: the format of a writable image must be given, not probed",
				  path);
	if ((flags & IMG_FORCE_SHARE) && !rdonly)
		return img_seterr(err, errlen, -EINVAL,
				  "%s: force-share is only for read-only opens", path);
	img = calloc(1, sizeof(*img));
	if (!img)
		return img_seterr(err, errlen, -ENOMEM, "%s: out of memory", path);
	img->fd = -1;
	img->refs = 1;
	img->flags = flags;
	img->readonly = rdonly;
	img->depth = depth;
	img->path = strdup(path);
	if (!img->path) {
		r = img_seterr(err, errlen, -ENOMEM, "%s: out of memory", path);
		goto fail;
	}
	img->fd = open(path, (rdonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (img->fd < 0) {
		r = img_seterr(err, errlen, -errno, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (fstat(img->fd, &st) < 0) {
		r = img_seterr(err, errlen, -errno, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		r = img_seterr(err, errlen, -EINVAL, "%s: not a regular file or block device",
			       path);
		goto fail;
	}
	img->dev = st.st_dev;
	img->ino = st.st_ino;
	for (const struct chain *c = up; c; c = c->up)
		if (c->dev == st.st_dev && c->ino == st.st_ino) {
			r = img_seterr(err, errlen, -ELOOP,
				       "%s: backing chain loop (file already in the chain)", path);
			goto fail;
		}
	r = lock_layer(img, err, errlen);
	if (r < 0)
		goto fail;
	if (!fmt) {
		r = probe_fd(img->fd, &fmt);
		if (r < 0) {
			r = img_seterr(err, errlen, r, "%s: %s", path, strerror(-r));
			goto fail;
		}
	}
	drv = find_driver(fmt);
	if (!drv) {
		r = img_seterr(err, errlen, -ENOTSUP, "%s: unsupported image format '%.32s'", path,
			       fmt);
		goto fail;
	}
	img->drv = drv;
	msg[0] = '\0';
	r = drv->open(img, msg, sizeof(msg));
	if (r < 0) {
		img->drv = NULL;   /* open cleaned up after itself */
		r = img_seterr(err, errlen, r, "%s: %s", path, msg[0] ? msg : strerror(-r));
		goto fail;
	}
	if (img->readonly)
		img->caps &= ~(unsigned)(IMG_CAN_WRITE | IMG_CAN_DISCARD | IMG_CAN_WRITE_ZEROES |
					 IMG_CAN_SECURE_DISCARD);
	if (img->backing_name && !(flags & IMG_NOBACKING)) {
		self.up = up;
		self.dev = img->dev;
		self.ino = img->ino;
		r = open_backing(img, &self, err, errlen);
		if (r < 0)
			goto fail;
	}
	*out = img;
	return 0;
fail:
	img_close(img);
	return r;
}

int img_open(const char *path, const char *fmt, unsigned flags, struct img **out, char *err,
	     size_t errlen)
{
	if (err && errlen)
		err[0] = '\0';
	if (!path || !out)
		return img_seterr(err, errlen, -EINVAL, "img_open: no path");
	return open_layer(path, fmt, flags, 0, NULL, out, err, errlen);
}

uint64_t img_size(const struct img *img)
{
	return img->size;
}

unsigned img_caps(const struct img *img)
{
	return img->caps;
}

const char *img_format(const struct img *img)
{
	return img->drv->name;
}

int img_resize(struct img *img, uint64_t new_size)
{
	int r;

	if (img->readonly)
		return -EROFS;
	if (new_size < img->size || new_size > (uint64_t)INT64_MAX)
		return -EINVAL;
	if (new_size == img->size)
		return 0;
	if (!img->drv->resize)
		return -ENOTSUP;
	r = img->drv->resize(img, new_size);
	if (r < 0)
		return r;
	/* Readers check ranges against img->size without a lock; it only
	 * grows, so either value they see is safe. */
	__atomic_store_n(&img->size, new_size, __ATOMIC_RELEASE);
	return 0;
}

/* ---- requests ---- */

static int check_range(const struct img *img, uint64_t off, uint64_t len)
{
	if (off > img->size || len > img->size - off)
		return -EINVAL;
	return 0;
}

static int check_iov(const struct iovec *iov, int iovcnt, uint64_t *len)
{
	uint64_t total = 0;

	if (iovcnt < 0 || iovcnt > IOV_MAX || (iovcnt > 0 && !iov))
		return -EINVAL;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > SSIZE_MAX - total)
			return -EINVAL;
		total += iov[i].iov_len;
	}
	*len = total;
	return 0;
}

int img_preadv(struct img *img, const struct iovec *iov, int iovcnt, uint64_t off)
{
	uint64_t len;
	int r = check_iov(iov, iovcnt, &len);

	if (r < 0)
		return r;
	r = check_range(img, off, len);
	if (r < 0 || len == 0)
		return r;
	return img->drv->preadv(img, iov, iovcnt, off, len);
}

int img_preadv_nowait(struct img *img, const struct iovec *iov, int iovcnt, uint64_t off)
{
	uint64_t len;

	if (!img->drv->preadv_nowait || check_iov(iov, iovcnt, &len) < 0 ||
	    check_range(img, off, len) < 0 || len == 0)
		return -EAGAIN; /* img_preadv will say what is wrong */
	return img->drv->preadv_nowait(img, iov, iovcnt, off, len);
}

int img_pwritev(struct img *img, const struct iovec *iov, int iovcnt, uint64_t off)
{
	uint64_t len;
	int r = check_iov(iov, iovcnt, &len);

	if (r < 0)
		return r;
	if (img->readonly)
		return -EROFS;
	r = check_range(img, off, len);
	if (r < 0 || len == 0)
		return r;
	return img->drv->pwritev(img, iov, iovcnt, off, len);
}

int img_pread(struct img *img, void *buf, size_t len, uint64_t off)
{
	struct iovec v = { .iov_base = buf, .iov_len = len };
	return img_preadv(img, &v, 1, off);
}

int img_pwrite(struct img *img, const void *buf, size_t len, uint64_t off)
{
	struct iovec v = { .iov_base = (void *)buf, .iov_len = len };
	return img_pwritev(img, &v, 1, off);
}

int img_flush(struct img *img)
{
	if (img->readonly)
		return 0;
	return img->drv->flush(img);
}

int img_discard(struct img *img, uint64_t off, uint64_t len)
{
	int r;

	if (img->readonly)
		return -EROFS;
	r = check_range(img, off, len);
	if (r < 0 || len == 0)
		return r;
	if (!img->drv->discard)
		return 0; /* discard is advisory */
	return img->drv->discard(img, off, len);
}

int img_write_zeroes(struct img *img, uint64_t off, uint64_t len)
{
	int r;

	if (img->readonly)
		return -EROFS;
	r = check_range(img, off, len);
	if (r < 0 || len == 0)
		return r;
	if (!img->drv->write_zeroes)
		return -EOPNOTSUPP;
	return img->drv->write_zeroes(img, off, len);
}

int img_block_status(struct img *img, uint64_t off, uint64_t len, struct img_extent *ext)
{
	int r = check_range(img, off, len);

	if (r < 0)
		return r;
	if (len == 0)
		return -EINVAL;
	memset(ext, 0, sizeof(*ext));
	r = img->drv->block_status(img, off, len, ext);
	if (r == 0 && (ext->offset != off || ext->length == 0 || ext->length > len))
		return -EIO;  /* driver bug; never hand out a bogus extent */
	return r;
}

void img_get_info(struct img *img, struct img_info *info)
{
	struct stat st;

	memset(info, 0, sizeof(*info));
	info->format = img->drv->name;
	info->path = img->path;
	info->virtual_size = img->size;
	if (fstat(img->fd, &st) == 0) {
		info->file_size = (uint64_t)st.st_size;
		info->allocated = (uint64_t)st.st_blocks * 512;
	}
	info->readonly = img->readonly;
	info->backing_file = img->backing_name;
	info->backing_format = img->backing_fmt;
	info->backing = img->backing;
	if (img->drv->info)
		img->drv->info(img, info);
}

int img_check(struct img *img, unsigned fix, struct img_check_result *res)
{
	memset(res, 0, sizeof(*res));
	if (!img->drv->check)
		return 0;
	if (fix && img->readonly)
		return -EROFS;
	return img->drv->check(img, fix, res);
}

/* ---- helpers for drivers ---- */

int img_read_backing(struct img *img, const struct iovec *iov, int iovcnt, size_t iov_off,
		     uint64_t off, uint64_t len)
{
	struct img *b = img->backing;
	uint64_t have = 0;
	struct iov_slice s;
	int r;

	if (b && off < b->size) {
		have = b->size - off < len ? b->size - off : len;
		r = iov_slice(&s, iov, iovcnt, iov_off, have);
		if (r < 0)
			return r;
		r = b->drv->preadv(b, s.iov, s.cnt, off, have);
		iov_slice_free(&s);
		if (r < 0)
			return r;
	}
	if (have < len)
		iov_memset(iov, iovcnt, iov_off + have, 0, len - have);
	return 0;
}

/*
 * Positional vectored I/O that finishes the whole range: retries EINTR and
 * continues after short transfers.  A read past the end of the file fills
 * the rest with zeros; a write that makes no progress is -EIO.
 */
static int full_rw(int fd, const struct iovec *iov, int iovcnt, uint64_t off, bool write)
{
	struct iovec local[IOV_SLICE_INLINE];
	struct iovec *v = (struct iovec *)iov;
	size_t left = iov_total(iov, iovcnt);
	ssize_t n;

	while (left > 0) {
		n = write ? pwritev(fd, v, iovcnt, (off_t)off) : preadv(fd, v, iovcnt, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0) {
			if (write)
				return -EIO;
			iov_memset(v, iovcnt, 0, 0, left); /* past end of file */
			return 0;
		}
		left -= (size_t)n;
		off += (uint64_t)n;
		if (left == 0)
			break;
		/* Short transfer: continue with the rest (rare; copy once). */
		struct iov_slice s;
		int r = iov_slice(&s, v, iovcnt, (size_t)n, left);
		if (r < 0)
			return r;
		if (s.cnt <= IOV_SLICE_INLINE) {
			memcpy(local, s.iov, sizeof(struct iovec) * (size_t)s.cnt);
			iovcnt = s.cnt;
			v = local;
			iov_slice_free(&s);
		} else {
			r = full_rw(fd, s.iov, s.cnt, off, write);
			iov_slice_free(&s);
			return r;
		}
	}
	return 0;
}

int full_preadv(int fd, const struct iovec *iov, int iovcnt, uint64_t off)
{
	return full_rw(fd, iov, iovcnt, off, false);
}

int full_pwritev(int fd, const struct iovec *iov, int iovcnt, uint64_t off)
{
	return full_rw(fd, iov, iovcnt, off, true);
}

int full_pread(int fd, void *buf, size_t len, uint64_t off)
{
	struct iovec v = { .iov_base = buf, .iov_len = len };
	return full_preadv(fd, &v, 1, off);
}

int full_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
	struct iovec v = { .iov_base = (void *)buf, .iov_len = len };
	return full_pwritev(fd, &v, 1, off);
}

/* ---- iovec helpers ---- */

size_t iov_total(const struct iovec *iov, int iovcnt)
{
	size_t t = 0;
	for (int i = 0; i < iovcnt; i++)
		t += iov[i].iov_len;
	return t;
}

/* Walk [iov_off, iov_off+len) of iov, calling fn on each contiguous piece
 * with the number of bytes walked before it. */
typedef void iov_piece_fn(uint8_t *piece, size_t n, size_t before, void *ctx);

static void iov_walk(const struct iovec *iov, int iovcnt, size_t iov_off, size_t len,
		     iov_piece_fn *fn, void *ctx)
{
	size_t skip = iov_off, done = 0;

	for (int i = 0; i < iovcnt && done < len; i++) {
		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		size_t n = iov[i].iov_len - skip;
		if (n > len - done)
			n = len - done;
		fn((uint8_t *)iov[i].iov_base + skip, n, done, ctx);
		skip = 0;
		done += n;
	}
}

static void piece_from_buf(uint8_t *piece, size_t n, size_t before, void *buf)
{
	memcpy(piece, (const uint8_t *)buf + before, n);
}

static void piece_to_buf(uint8_t *piece, size_t n, size_t before, void *buf)
{
	memcpy((uint8_t *)buf + before, piece, n);
}

static void piece_set(uint8_t *piece, size_t n, size_t before, void *c)
{
	(void)before;
	memset(piece, *(const int *)c, n);
}

void iov_from_buf(const struct iovec *iov, int iovcnt, size_t iov_off, const void *buf,
		  size_t len)
{
	iov_walk(iov, iovcnt, iov_off, len, piece_from_buf, (void *)buf);
}

void iov_to_buf(const struct iovec *iov, int iovcnt, size_t iov_off, void *buf, size_t len)
{
	iov_walk(iov, iovcnt, iov_off, len, piece_to_buf, buf);
}

void iov_memset(const struct iovec *iov, int iovcnt, size_t iov_off, int c, size_t len)
{
	iov_walk(iov, iovcnt, iov_off, len, piece_set, &c);
}

int iov_slice(struct iov_slice *s, const struct iovec *iov, int iovcnt, size_t iov_off,
	      size_t len)
{
	size_t skip = iov_off, left = len;
	int first = 0, cnt = 0;

	/* find the first element and count the pieces */
	while (first < iovcnt && skip >= iov[first].iov_len) {
		skip -= iov[first].iov_len;
		first++;
	}
	for (int i = first; i < iovcnt && left > 0; i++) {
		size_t n = iov[i].iov_len - (i == first ? skip : 0);
		left -= n < left ? n : left;
		cnt++;
	}
	s->iov = s->inline_iov;
	if (cnt > IOV_SLICE_INLINE) {
		s->iov = malloc(sizeof(struct iovec) * (size_t)cnt);
		if (!s->iov)
			return -ENOMEM;
	}
	left = len;
	s->cnt = 0;
	for (int i = first; i < iovcnt && left > 0; i++) {
		size_t sk = i == first ? skip : 0;
		size_t n = iov[i].iov_len - sk;
		if (n > left)
			n = left;
		if (n == 0)
			continue;
		s->iov[s->cnt].iov_base = (uint8_t *)iov[i].iov_base + sk;
		s->iov[s->cnt].iov_len = n;
		s->cnt++;
		left -= n;
	}
	return 0;
}

void iov_slice_free(struct iov_slice *s)
{
	if (s->iov != s->inline_iov)
		free(s->iov);
	s->iov = NULL;
}
