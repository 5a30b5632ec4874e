/*
 * qcow.c - the original QCOW format (version 1), read-only.
 *
 * Layout (QEMU block/qcow.c; Xen blktap block-qcow.c), all big endian:
 *   0  magic "QFI\xfb"          4  version = 1
 *   8  backing_file_offset u64  16 backing_file_size u32 (<= 1023)
 *   20 mtime u32                24 size u64 (bytes)
 *   32 cluster_bits u8 (9..16)  33 l2_bits u8 (6..13: 512 B..64 KiB tables)
 *   36 crypt_method u32 (0 none, 1 AES: refused)
 *   40 l1_table_offset u64      48 end of header
 * l1_size is computed: ceil(size / 2^(cluster_bits + l2_bits)).  L1 entries
 * are L2 table offsets, L2 entries data cluster offsets; 0 = unallocated
 * (the backing file, or zeros).  An L2 entry with bit 63 set is a
 * compressed cluster: bits (63 - cluster_bits)..62 hold the exact byte
 * length of a raw deflate stream (window 2^12) at the byte offset held in
 * the bits below.  No refcounts, no snapshots.
 *
 * Xen blktap extension: when the L1 table offset is 4 KiB aligned and a
 * 16-byte block with magic "XEN\xfb" follows the header (magic, L1
 * checksum, min_cluster_alloc, flags), blktap images without flag 0x02
 * (L1_BIG_ENDIAN) hold their L1 table in x86 (little endian) byte order.
 * We read such an L1 table as little endian; blktap2 would rewrite it on
 * open, but we never write.  Preallocated extents (min_cluster_alloc) need
 * nothing here: blktap also records their clusters in the L2 tables.
 *
 * Every offset and length read from the file is checked against the file
 * size before use.  Thread-safe: the L2 table cache is under a mutex;
 * data reads and decompression run outside it.
 */
#include "formats/driver.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "formats/zcodec.h"
#include "util/endian.h"

#define QCOW_MAGIC        0x514649fbu
#define QCOW_VERSION      1
#define QCOW_HEADER_LEN   48
#define QCOW_CRYPT_NONE   0
#define QCOW_CRYPT_AES    1
#define QCOW_OFLAG_COMPRESSED (1ull << 63)
#define QCOW_MAX_BACKING  1023
#define QCOW_MAX_L1_BYTES (32u << 20)

#define XEN_MAGIC         0x58454efbu  /* "XEN\xfb" */
#define XEN_EXT_LEN       16
#define XEN_L1_BIG_ENDIAN 0x02

#define QCOW_L2_CACHE     16           /* L2 tables kept in memory */
#define QCOW_STATUS_MAX_CLUSTERS 65536 /* clusters one block-status call visits */

struct l2_slot {
	uint64_t offset;        /* host offset of the table; 0 = empty slot */
	uint64_t last_use;
	uint64_t *table;        /* host byte order, l2_size entries */
};

struct qcow {
	unsigned cluster_bits, l2_bits;
	uint64_t cluster_size;
	uint64_t l2_size;             /* entries per L2 table */
	uint64_t l1_size;
	uint64_t *l1;                 /* host byte order, validated */
	uint64_t file_size;
	bool xen_le_l1;               /* blktap image with a little-endian L1 */

	pthread_mutex_t lock;         /* the L2 cache */
	struct l2_slot cache[QCOW_L2_CACHE];
	uint64_t use_clock;
};

static bool qcow_probe(const uint8_t *buf, size_t len)
{
	return len >= 8 && get_be32(buf) == QCOW_MAGIC && get_be32(buf + 4) == QCOW_VERSION;
}

static void qcow_free(struct qcow *q)
{
	if (!q)
		return;
	for (int i = 0; i < QCOW_L2_CACHE; i++)
		free(q->cache[i].table);
	free(q->l1);
	pthread_mutex_destroy(&q->lock);
	free(q);
}

/* The backing file name: inside the file, not empty, no NUL bytes. */
static int read_backing_name(struct img *img, const uint8_t *h, uint64_t file_size,
			     char *err, size_t errlen)
{
	uint64_t off = get_be64(h + 8);
	uint32_t len = get_be32(h + 16);

	if (off == 0)
		return 0;
	if (len == 0 || len > QCOW_MAX_BACKING)
		return img_seterr(err, errlen, -EINVAL,
				  "backing file name length %u is invalid (1 to %d)", len,
				  QCOW_MAX_BACKING);
	if (off < QCOW_HEADER_LEN || off > file_size || len > file_size - off)
		return img_seterr(err, errlen, -EINVAL,
				  "backing file name at offset %llu is outside the file",
				  (unsigned long long)off);
	char *name = malloc(len + 1);
	if (!name)
		return img_seterr(err, errlen, -ENOMEM, "out of memory");
	int r = full_pread(img->fd, name, len, off);
	if (r < 0) {
		free(name);
		return img_seterr(err, errlen, r, "reading the backing file name: %s",
				  strerror(-r));
	}
	name[len] = '\0';
	if (strlen(name) != len) {
		free(name);
		return img_seterr(err, errlen, -EINVAL, "backing file name contains a NUL byte");
	}
	img->backing_name = name;
	return 0;
}

/* Detect the blktap extension (see the top of the file). */
static int read_xen_ext(struct img *img, struct qcow *q, uint64_t l1_off)
{
	uint8_t ext[XEN_EXT_LEN];

	if (l1_off % 4096 || l1_off < QCOW_HEADER_LEN + XEN_EXT_LEN)
		return 0;
	int r = full_pread(img->fd, ext, sizeof(ext), QCOW_HEADER_LEN);
	if (r < 0)
		return r;
	if (get_be32(ext) == XEN_MAGIC && !(get_be32(ext + 12) & XEN_L1_BIG_ENDIAN))
		q->xen_le_l1 = true;
	return 0;
}

static int load_l1(struct img *img, struct qcow *q, uint64_t l1_off, char *err,
		   size_t errlen)
{
	uint64_t bytes = q->l1_size * 8;
	uint64_t l2_bytes = q->l2_size * 8;

	if (bytes > QCOW_MAX_L1_BYTES)
		return img_seterr(err, errlen, -EFBIG, "L1 table of %llu entries is too large",
				  (unsigned long long)q->l1_size);
	if (l1_off < QCOW_HEADER_LEN || l1_off > q->file_size || bytes > q->file_size - l1_off)
		return img_seterr(err, errlen, -EINVAL,
				  "L1 table at offset %llu (%llu bytes) is outside the file",
				  (unsigned long long)l1_off, (unsigned long long)bytes);
	q->l1 = malloc(bytes ? bytes : 1);
	if (!q->l1)
		return img_seterr(err, errlen, -ENOMEM, "out of memory");
	int r = full_pread(img->fd, q->l1, bytes, l1_off);
	if (r < 0)
		return img_seterr(err, errlen, r, "reading the L1 table: %s", strerror(-r));
	for (uint64_t i = 0; i < q->l1_size; i++) {
		uint64_t e = q->xen_le_l1 ? get_le64(&q->l1[i]) : get_be64(&q->l1[i]);
		if (e && (e < QCOW_HEADER_LEN || e > q->file_size || l2_bytes > q->file_size - e))
			return img_seterr(err, errlen, -EINVAL,
					  "L1 entry %llu points to an L2 table at offset %llu, "
					  "outside the file", (unsigned long long)i,
					  (unsigned long long)e);
		q->l1[i] = e;
	}
	return 0;
}

static int qcow_open(struct img *img, char *err, size_t errlen)
{
	uint8_t h[QCOW_HEADER_LEN];
	struct stat st;
	struct qcow *q;
	int r;

	if (fstat(img->fd, &st) < 0)
		return img_seterr(err, errlen, -errno, "%s", strerror(errno));
	if ((uint64_t)st.st_size < QCOW_HEADER_LEN)
		return img_seterr(err, errlen, -EINVAL, "file too short for a qcow header");
	r = full_pread(img->fd, h, sizeof(h), 0);
	if (r < 0)
		return img_seterr(err, errlen, r, "reading the header: %s", strerror(-r));
	if (get_be32(h) != QCOW_MAGIC)
		return img_seterr(err, errlen, -EINVAL, "not a qcow image (bad magic)");
	uint32_t version = get_be32(h + 4);
	if (version != QCOW_VERSION)
		return img_seterr(err, errlen, -ENOTSUP,
				  "qcow version %u is not 1%s", version,
				  version == 2 || version == 3 ? "; open it as qcow2" : "");
	uint64_t size = get_be64(h + 24);
	unsigned cluster_bits = h[32], l2_bits = h[33];
	uint32_t crypt = get_be32(h + 36);
	uint64_t l1_off = get_be64(h + 40);

	if (size <= 1)
		return img_seterr(err, errlen, -EINVAL, "image size %llu is too small",
				  (unsigned long long)size);
	if (cluster_bits < 9 || cluster_bits > 16)
		return img_seterr(err, errlen, -EINVAL,
				  "cluster_bits %u is invalid (cluster size must be 512 B..64 KiB)",
				  cluster_bits);
	if (l2_bits < 6 || l2_bits > 13)
		return img_seterr(err, errlen, -EINVAL,
				  "l2_bits %u is invalid (L2 table must be 512 B..64 KiB)", l2_bits);
	if (crypt == QCOW_CRYPT_AES)
		return img_seterr(err, errlen, -ENOTSUP,
				  "encrypted qcow images are not supported (decrypt it first, "
				  "e.g. with qemu-img convert)");
	if (crypt != QCOW_CRYPT_NONE)
		return img_seterr(err, errlen, -EINVAL, "unknown encryption method %u", crypt);
	unsigned shift = cluster_bits + l2_bits;
	if (size > UINT64_MAX - (1ull << shift))
		return img_seterr(err, errlen, -EFBIG, "image size %llu is too large",
				  (unsigned long long)size);

	q = calloc(1, sizeof(*q));
	if (!q)
		return img_seterr(err, errlen, -ENOMEM, "out of memory");
	pthread_mutex_init(&q->lock, NULL);
	q->cluster_bits = cluster_bits;
	q->l2_bits = l2_bits;
	q->cluster_size = 1ull << cluster_bits;
	q->l2_size = 1ull << l2_bits;
	q->l1_size = (size + (1ull << shift) - 1) >> shift;
	q->file_size = (uint64_t)st.st_size;

	r = read_xen_ext(img, q, l1_off);
	if (r < 0) {
		img_seterr(err, errlen, r, "reading the header: %s", strerror(-r));
		goto fail;
	}
	r = load_l1(img, q, l1_off, err, errlen);
	if (r < 0)
		goto fail;
	r = read_backing_name(img, h, q->file_size, err, errlen);
	if (r < 0)
		goto fail;

	/* QEMU counts the disk in whole sectors */
	img->size = size & ~511ull;
	img->priv = q;
	img->readonly = true;      /* a read-only driver */
	img->caps = IMG_CAN_FLUSH;
	return 0;
fail:
	free(img->backing_name);
	img->backing_name = NULL;
	qcow_free(q);
	return r;
}

static void qcow_close(struct img *img)
{
	qcow_free(img->priv);
	img->priv = NULL;
}

/*
 * The L2 entry for guest cluster `cluster` (0 when there is no L2 table).
 * Tables are cached; the entry is copied out under the lock.
 */
static int l2_entry(struct img *img, uint64_t cluster, uint64_t *entry)
{
	struct qcow *q = img->priv;
	uint64_t l1_index = cluster >> q->l2_bits;
	uint64_t l2_index = cluster & (q->l2_size - 1);
	int r = 0;

	if (l1_index >= q->l1_size)
		return -EIO;  /* cannot happen: img->size bounds the request */
	uint64_t l2_off = q->l1[l1_index];
	if (!l2_off) {
		*entry = 0;
		return 0;
	}

	pthread_mutex_lock(&q->lock);
	struct l2_slot *slot = NULL, *victim = &q->cache[0];
	for (int i = 0; i < QCOW_L2_CACHE; i++) {
		if (q->cache[i].offset == l2_off && q->cache[i].table) {
			slot = &q->cache[i];
			break;
		}
		if (q->cache[i].last_use < victim->last_use)
			victim = &q->cache[i];
	}
	if (!slot) {
		slot = victim;
		slot->offset = 0;
		if (!slot->table)
			slot->table = malloc(q->l2_size * 8);
		if (!slot->table) {
			r = -ENOMEM;
			goto out;
		}
		r = full_pread(img->fd, slot->table, q->l2_size * 8, l2_off);
		if (r < 0)
			goto out;
		for (uint64_t i = 0; i < q->l2_size; i++)
			slot->table[i] = get_be64(&slot->table[i]);
		slot->offset = l2_off;
	}
	slot->last_use = ++q->use_clock;
	*entry = slot->table[l2_index];
out:
	pthread_mutex_unlock(&q->lock);
	return r;
}

/* Decompress the compressed cluster described by entry into out (one cluster). */
static int read_compressed(struct img *img, uint64_t entry, uint8_t *out)
{
	struct qcow *q = img->priv;
	unsigned len_shift = 63 - q->cluster_bits;
	uint64_t clen = (entry >> len_shift) & (q->cluster_size - 1);
	uint64_t coff = entry & ((1ull << len_shift) - 1);

	if (clen == 0 || coff < QCOW_HEADER_LEN || coff > q->file_size ||
	    clen > q->file_size - coff) {
		img_log_bad(img, "compressed cluster at offset %llu (%llu bytes) is outside "
			    "the file", (unsigned long long)coff, (unsigned long long)clen);
		return -EIO;
	}
	uint8_t *in = malloc(clen);
	if (!in)
		return -ENOMEM;
	int r = full_pread(img->fd, in, clen, coff);
	if (r < 0) {
		free(in);
		return r;
	}
	r = zcodec_inflate_cluster(in, clen, out, q->cluster_size);
	free(in);
	if (r == -EIO) {
		img_log_bad(img, "compressed cluster at offset %llu does not inflate to one "
			    "cluster", (unsigned long long)coff);
		return -EIO;
	}
	return r;
}

static int qcow_preadv(struct img *img, const struct iovec *iov, int iovcnt, uint64_t off,
		       uint64_t len)
{
	struct qcow *q = img->priv;
	uint8_t *cbuf = NULL;
	size_t iov_off = 0;
	int r = 0;

	while (len > 0) {
		uint64_t cluster = off >> q->cluster_bits;
		uint64_t in = off & (q->cluster_size - 1);
		uint64_t n = q->cluster_size - in < len ? q->cluster_size - in : len;
		uint64_t e;

		r = l2_entry(img, cluster, &e);
		if (r < 0)
			break;
		if (e == 0) {
			r = img_read_backing(img, iov, iovcnt, iov_off, off, n);
		} else if (e & QCOW_OFLAG_COMPRESSED) {
			if (!cbuf && !(cbuf = malloc(q->cluster_size))) {
				r = -ENOMEM;
				break;
			}
			r = read_compressed(img, e, cbuf);
			if (r == 0)
				iov_from_buf(iov, iovcnt, iov_off, cbuf + in, n);
		} else {
			/* plain cluster; a short file reads as zeros past its end */
			if (e < QCOW_HEADER_LEN || e >= q->file_size || e > UINT64_MAX - in - n) {
				img_log_bad(img, "data cluster offset %llu is outside the file",
					    (unsigned long long)e);
				r = -EIO;
				break;
			}
			struct iov_slice s;
			r = iov_slice(&s, iov, iovcnt, iov_off, n);
			if (r < 0)
				break;
			r = full_preadv(img->fd, s.iov, s.cnt, e + in);
			iov_slice_free(&s);
		}
		if (r < 0)
			break;
		off += n;
		len -= n;
		iov_off += n;
	}
	free(cbuf);
	return r;
}

static int qcow_pwritev(struct img *img, const struct iovec *iov, int iovcnt, uint64_t off,
			uint64_t len)
{
	return -EROFS;
}

static int qcow_flush(struct img *img)
{
	return 0;
}

/* What one guest cluster is: 0 unallocated, 1 plain data, 2 compressed. */
static int cluster_kind(uint64_t e)
{
	return e == 0 ? 0 : (e & QCOW_OFLAG_COMPRESSED) ? 2 : 1;
}

static int qcow_block_status(struct img *img, uint64_t off, uint64_t len,
			     struct img_extent *ext)
{
	struct qcow *q = img->priv;
	uint64_t cluster = off >> q->cluster_bits;
	uint64_t first_len = q->cluster_size - (off & (q->cluster_size - 1));
	uint64_t e, e2;
	int r = l2_entry(img, cluster, &e);

	if (r < 0)
		return r;
	int kind = cluster_kind(e);
	uint64_t n = first_len < len ? first_len : len;
	uint64_t next_host = e + (off & (q->cluster_size - 1)) + n;

	/* extend over following clusters of the same kind (plain data: only
	 * while contiguous in the file).  Unallocated L2 ranges are skipped
	 * whole, and one call looks at a bounded number of clusters, so a huge
	 * sparse image cannot make this loop for long. */
	unsigned looked = 0;
	while (n < len && looked++ < QCOW_STATUS_MAX_CLUSTERS) {
		uint64_t l1_index = (cluster + 1) >> q->l2_bits;
		if (kind == 0 && l1_index < q->l1_size && q->l1[l1_index] == 0) {
			/* no L2 table: the rest of its span is unallocated */
			uint64_t span_end = (l1_index + 1) << (q->l2_bits + q->cluster_bits);
			uint64_t step = span_end - (off + n);
			n += step < len - n ? step : len - n;
			cluster = (span_end >> q->cluster_bits) - 1;
			continue;
		}
		r = l2_entry(img, ++cluster, &e2);
		if (r < 0)
			return r;
		if (cluster_kind(e2) != kind || (kind == 1 && e2 != next_host))
			break;
		uint64_t step = q->cluster_size < len - n ? q->cluster_size : len - n;
		n += step;
		next_host += step;
	}

	ext->offset = off;
	ext->length = n;
	if (kind == 0) {
		struct img *b = img->backing;
		if (b && off < b->size) {
			uint64_t bl = n < b->size - off ? n : b->size - off;
			r = img_block_status(b, off, bl, ext);
			if (r < 0)
				return r;
			ext->depth++;
			return 0;
		}
		ext->type = IMG_EXT_UNALLOCATED;
		return 0;
	}
	ext->type = IMG_EXT_DATA;
	ext->compressed = kind == 2;
	ext->host_offset = kind == 1 ? e + (off & (q->cluster_size - 1)) : 0;
	return 0;
}

static void qcow_info(struct img *img, struct img_info *info)
{
	struct qcow *q = img->priv;

	info->cluster_size = (uint32_t)q->cluster_size;
	info->version = 1;
	info->compression = "zlib";
}

const struct img_driver qcow_driver = {
	.name = "qcow",
	.probe = qcow_probe,
	.open = qcow_open,
	.close = qcow_close,
	.preadv = qcow_preadv,
	.pwritev = qcow_pwritev,
	.flush = qcow_flush,
	.block_status = qcow_block_status,
	.info = qcow_info,
};
