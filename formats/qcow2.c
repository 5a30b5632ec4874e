/*
 * qcow2.c - the qcow2 driver (QEMU docs/interop/qcow2.txt): open and
 * validation, reads, writes, discard, write_zeroes, block status, flush.
 * Refcounts and allocation live in qcow2_refcount.c, the metadata cache in
 * qcow2_cache.c, the consistency check in qcow2_check.c.
 *
 * Supported: versions 2 and 3, clusters 512 B..2 MiB, refcounts of 1..64
 * bits (read and write), zero clusters (v3), zlib-compressed clusters (read;
 * a write to one allocates a normal cluster), backing files of any format.
 * Refused with a message naming the feature: encryption, external data
 * files, extended L2 entries, compression types other than zlib, unknown
 * incompatible features.  Images with internal snapshots are read and
 * written (the active layer; shared L2 tables and data clusters are copied
 * on write) and their snapshots are checked.  Dirty (lazy refcounts)
 * and corrupt images are opened read-only, as QEMU would refuse to write
 * them without a repair.
 */
#include "formats/qcow2_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/zcodec.h"
#include "util/endian.h"

#define L2_CACHE_BYTES (8u << 20)
#define RB_CACHE_BYTES (1u << 20)

/* ------------------------------------------------------------------ */
/* open and validation                                                 */
/* ------------------------------------------------------------------ */

static bool qcow2_probe(const uint8_t *buf, size_t len)
{
	return len >= 8 && get_be32(buf) == QCOW2_MAGIC &&
	       (get_be32(buf + 4) == 2 || get_be32(buf + 4) == 3);
}

int q2_write_header_field(struct qcow2 *q, unsigned off, const void *val, size_t len)
{
	return full_pwrite(q->fd, val, len, off);
}

/* Name an incompatible feature bit from the image's feature-name table. */
static void feature_name(const uint8_t *tab, uint32_t len, unsigned bit, char *out, size_t outlen)
{
	snprintf(out, outlen, "bit %u", bit);
	if (!tab)
		return;
	for (uint32_t i = 0; i + 48 <= len; i += 48)
		if (tab[i] == 0 && tab[i + 1] == bit) {
			char name[47];
			memcpy(name, tab + i + 2, 46);
			name[46] = '\0';
			for (char *p = name; *p; p++)
				if (*p < 0x20 || *p > 0x7e)
					*p = '?';
			snprintf(out, outlen, "bit %u '%s'", bit, name);
			return;
		}
}

/* Header extensions: between the header and the backing file name (or the
 * end of cluster 0).  Sets backing_fmt; refuses duplicates and overruns. */
static int parse_extensions(struct qcow2 *q, struct img *img, const uint8_t *c0, uint64_t end,
			    const uint8_t **ftab, uint32_t *ftab_len, char *err, size_t errlen)
{
	uint64_t pos = q->version == 2 ? QCOW2_HDR_V2_LENGTH : q->header_length;
	uint32_t seen[8];
	unsigned nseen = 0;

	*ftab = NULL;
	*ftab_len = 0;
	for (;;) {
		if (pos + QCOW2_EXT_HDR_LEN > end) {
			if (pos == end)
				return 0;   /* no end marker room: QEMU accepts this */
			return img_seterr(err, errlen, -EINVAL, "header extension too large");
		}
		uint32_t type = get_be32(c0 + pos), len = get_be32(c0 + pos + 4);
		pos += QCOW2_EXT_HDR_LEN;
		if (type == QCOW2_EXT_END)
			return 0;
		if (len > end - pos)
			return img_seterr(err, errlen, -EINVAL,
					  "header extension 0x%08x too large", type);
		for (unsigned i = 0; i < nseen; i++)
			if (seen[i] == type)
				return img_seterr(err, errlen, -EINVAL,
						  "header extension 0x%08x appears twice", type);
		if (nseen < 8)
			seen[nseen++] = type;
		switch (type) {
		case QCOW2_EXT_BACKING_FORMAT:
			if (len > QCOW2_BACKING_FMT_MAX || len == 0)
				return img_seterr(err, errlen, -EINVAL,
						  "backing format name too long (%u bytes)", len);
			img->backing_fmt = strndup((const char *)c0 + pos, len);
			if (!img->backing_fmt)
				return img_seterr(err, errlen, -ENOMEM, "out of memory");
			if (strlen(img->backing_fmt) != len)
				return img_seterr(err, errlen, -EINVAL,
						  "backing format name contains a NUL byte");
			break;
		case QCOW2_EXT_BITMAPS:
			if (len >= 24) {
				q->nb_bitmaps = get_be32(c0 + pos);
				q->bitmap_dir_size = get_be64(c0 + pos + 8);
				q->bitmap_dir_offset = get_be64(c0 + pos + 16);
			}
			break;
		case QCOW2_EXT_FEATURE_TABLE:
			*ftab = c0 + pos;
			*ftab_len = len;
			break;
		case QCOW2_EXT_CRYPTO:
			return img_seterr(err, errlen, -ENOTSUP,
					  "encryption (LUKS header extension) is not supported");
		case QCOW2_EXT_DATA_FILE:
			return img_seterr(err, errlen, -ENOTSUP,
					  "external data files are not supported");
		default:
			break;   /* bitmaps and unknown extensions are ignored */
		}
		pos += ((uint64_t)len + 7) & ~7ull;
	}
}

/* A table of n bytes at off must be cluster-aligned, inside the file and
 * clear of the header cluster. */
static int check_table(struct qcow2 *q, uint64_t off, uint64_t n, uint64_t fsize,
		       const char *what, char *err, size_t errlen)
{
	if (off % q->cluster_size)
		return img_seterr(err, errlen, -EINVAL, "%s offset 0x%llx is not cluster-aligned",
				  what, (unsigned long long)off);
	if (off == 0 && n > 0)
		return img_seterr(err, errlen, -EINVAL, "%s overlaps the header", what);
	if (off >= QCOW2_MAX_HOST_OFFSET || n > QCOW2_MAX_HOST_OFFSET - off)
		return img_seterr(err, errlen, -EINVAL, "%s offset 0x%llx invalid", what,
				  (unsigned long long)off);
	if (off + n > fsize)
		return img_seterr(err, errlen, -EINVAL, "%s extends past the end of the file", what);
	return 0;
}

static int load_table(struct qcow2 *q, uint64_t off, uint64_t n, uint64_t **out)
{
	uint64_t *t = malloc(n ? n * 8 : 8);
	int r;

	*out = NULL;
	if (!t)
		return -ENOMEM;
	r = full_pread(q->fd, t, n * 8, off);
	if (r < 0) {
		free(t);
		return r;
	}
	for (uint64_t i = 0; i < n; i++)
		t[i] = get_be64(&t[i]);
	*out = t;
	return 0;
}

static void qcow2_free_state(struct qcow2 *q)
{
	qcache_destroy(&q->l2_cache);
	qcache_destroy(&q->rb_cache);
	free(q->l1);
	free(q->reft);
	free(q->frees);
	pthread_mutex_destroy(&q->lock);
	pthread_cond_destroy(&q->cond);
	for (int i = 0; i < ZCACHE_N; i++)
		free(q->zc.buf[i]);
	if (q->dfd >= 0)
		close(q->dfd);
	pthread_mutex_destroy(&q->zc.lock);
	free(q);
}

static int l2_before_writeback(struct qcow2 *q)
{
	return q2_refcounts_durable(q);
}

static int qcow2_open2(struct img *img, struct qcow2 *q, char *err, size_t errlen)
{
	uint8_t h[QCOW2_HDR_V3_LENGTH];
	uint8_t *c0 = NULL;
	const uint8_t *ftab;
	uint32_t ftab_len;
	struct stat st;
	uint64_t fsize, boff, ext_end;
	uint32_t bsize, crypt;
	int r;

	if (fstat(q->fd, &st) < 0)
		return img_seterr(err, errlen, -errno, "%s", strerror(errno));
	fsize = (uint64_t)st.st_size;
	if (fsize < QCOW2_HDR_V2_LENGTH)
		return img_seterr(err, errlen, -EINVAL, "file too short for a qcow2 header");
	memset(h, 0, sizeof(h));
	r = full_pread(q->fd, h, sizeof(h), 0);
	if (r < 0)
		return img_seterr(err, errlen, r, "reading the header: %s", strerror(-r));
	if (get_be32(h + QCOW2_HDR_MAGIC) != QCOW2_MAGIC)
		return img_seterr(err, errlen, -EINVAL, "not a qcow2 image (bad magic)");
	uint32_t version = get_be32(h + QCOW2_HDR_VERSION);
	if (version != 2 && version != 3)
		return img_seterr(err, errlen, -ENOTSUP, "unsupported qcow2 version %u%s", version,
				  version == 1 ? " (this is a qcow v1 image)" : "");
	q->version = (int)version;
	uint32_t cb = get_be32(h + QCOW2_HDR_CLUSTER_BITS);
	if (cb < QCOW2_MIN_CLUSTER_BITS || cb > QCOW2_MAX_CLUSTER_BITS)
		return img_seterr(err, errlen, -EINVAL,
				  "unsupported cluster size 2^%u (must be 512 B..2 MiB)", cb);
	q->cluster_bits = cb;
	q->cluster_size = 1ull << cb;
	q->l2_bits = cb - 3;

	if (version == 2) {
		q->header_length = QCOW2_HDR_V2_LENGTH;
		q->refcount_order = QCOW2_DEFAULT_REFCOUNT_ORDER;
	} else {
		q->incompat = get_be64(h + QCOW2_HDR_INCOMPAT_FEATURES);
		q->compat = get_be64(h + QCOW2_HDR_COMPAT_FEATURES);
		q->autoclear = get_be64(h + QCOW2_HDR_AUTOCLEAR_FEATURES);
		q->refcount_order = get_be32(h + QCOW2_HDR_REFCOUNT_ORDER);
		q->header_length = get_be32(h + QCOW2_HDR_HEADER_LENGTH);
		if (q->header_length < QCOW2_HDR_V3_MIN_LENGTH || q->header_length % 8)
			return img_seterr(err, errlen, -EINVAL, "invalid header length %u",
					  q->header_length);
		if (q->header_length > q->cluster_size)
			return img_seterr(err, errlen, -EINVAL, "qcow2 header exceeds cluster size");
		if (q->refcount_order > QCOW2_MAX_REFCOUNT_ORDER)
			return img_seterr(err, errlen, -EINVAL, "invalid refcount order %u",
					  q->refcount_order);
	}
	q->rb_bits = cb + 3 - q->refcount_order;

	/* the whole header cluster: extensions and the backing name live here */
	uint64_t c0len = fsize < q->cluster_size ? fsize : q->cluster_size;
	c0 = calloc(1, q->cluster_size);
	if (!c0)
		return img_seterr(err, errlen, -ENOMEM, "out of memory");
	r = full_pread(q->fd, c0, c0len, 0);
	if (r < 0) {
		r = img_seterr(err, errlen, r, "reading the header: %s", strerror(-r));
		goto out;
	}

	boff = get_be64(h + QCOW2_HDR_BACKING_FILE_OFFSET);
	bsize = get_be32(h + QCOW2_HDR_BACKING_FILE_SIZE);
	ext_end = q->cluster_size;
	if (boff) {
		if (boff > q->cluster_size || bsize > QCOW2_BACKING_NAME_MAX ||
		    bsize > q->cluster_size - boff || boff < q->header_length) {
			r = img_seterr(err, errlen, -EINVAL, "invalid backing file name offset/size");
			goto out;
		}
		ext_end = boff;
	}
	r = parse_extensions(q, img, c0, ext_end, &ftab, &ftab_len, err, errlen);
	if (r < 0)
		goto out;

	/* features: refuse what we cannot honour, naming it */
	uint64_t unknown = q->incompat & ~QCOW2_INCOMPAT_KNOWN;
	if (unknown) {
		char name[80];
		feature_name(ftab, ftab_len, (unsigned)__builtin_ctzll(unknown), name, sizeof(name));
		r = img_seterr(err, errlen, -ENOTSUP, "unsupported incompatible feature %s (0x%llx)",
			       name, (unsigned long long)unknown);
		goto out;
	}
	if (q->incompat & QCOW2_INCOMPAT_DATA_FILE) {
		r = img_seterr(err, errlen, -ENOTSUP, "external data files are not supported");
		goto out;
	}
	if (q->incompat & QCOW2_INCOMPAT_EXTL2) {
		r = img_seterr(err, errlen, -ENOTSUP,
			       "extended L2 entries (subclusters) are not supported");
		goto out;
	}
	uint8_t ctype = q->header_length > QCOW2_HDR_COMPRESSION_TYPE ?
				c0[QCOW2_HDR_COMPRESSION_TYPE] : 0;
	if (!!(q->incompat & QCOW2_INCOMPAT_COMPRESSION) != (ctype != 0)) {
		r = img_seterr(err, errlen, -EINVAL,
			       "compression type %u inconsistent with the feature bit", ctype);
		goto out;
	}
	if (ctype != QCOW2_COMPRESSION_ZLIB) {
		r = img_seterr(err, errlen, -ENOTSUP, "compression type %s is not supported",
			       ctype == QCOW2_COMPRESSION_ZSTD ? "zstd" : "unknown");
		goto out;
	}
	crypt = get_be32(h + QCOW2_HDR_CRYPT_METHOD);
	if (crypt != QCOW2_CRYPT_NONE) {
		r = img_seterr(err, errlen, -ENOTSUP, "encrypted images (%s) are not supported",
			       crypt == QCOW2_CRYPT_AES ? "AES" :
			       crypt == QCOW2_CRYPT_LUKS ? "LUKS" : "unknown method");
		goto out;
	}
	q->dirty_bit = q->incompat & QCOW2_INCOMPAT_DIRTY;
	q->corrupt_bit = q->incompat & QCOW2_INCOMPAT_CORRUPT;

	/* backing file name: untrusted bytes, checked again by image.c */
	if (boff && bsize) {
		img->backing_name = strndup((const char *)c0 + boff, bsize);
		if (!img->backing_name) {
			r = img_seterr(err, errlen, -ENOMEM, "out of memory");
			goto out;
		}
		if (strlen(img->backing_name) != bsize) {
			r = img_seterr(err, errlen, -EINVAL, "backing file name contains a NUL byte");
			goto out;
		}
		q->has_backing = true;
	}

	/* virtual size and the L1 table */
	img->size = get_be64(h + QCOW2_HDR_SIZE);
	q->l1_size = get_be32(h + QCOW2_HDR_L1_SIZE);
	q->l1_offset = get_be64(h + QCOW2_HDR_L1_TABLE_OFFSET);
	if (img->size > (1ull << 62)) {
		r = img_seterr(err, errlen, -EINVAL, "virtual size too large");
		goto out;
	}
	if ((uint64_t)q->l1_size * 8 > QCOW2_MAX_L1_BYTES) {
		r = img_seterr(err, errlen, -EINVAL, "active L1 table too large (%u entries)",
			       q->l1_size);
		goto out;
	}
	uint64_t per_l1e = q->cluster_size << q->l2_bits;     /* bytes one L2 maps */
	if ((img->size + per_l1e - 1) / per_l1e > q->l1_size) {
		r = img_seterr(err, errlen, -EINVAL, "L1 table is too small for the virtual size");
		goto out;
	}
	if (q->l1_size) {
		r = check_table(q, q->l1_offset, (uint64_t)q->l1_size * 8, fsize, "L1 table", err,
				errlen);
		if (r < 0)
			goto out;
	}

	/* refcount table */
	q->reft_offset = get_be64(h + QCOW2_HDR_REFCOUNT_TABLE_OFFSET);
	q->reft_clusters = get_be32(h + QCOW2_HDR_REFCOUNT_TABLE_CLUSTERS);
	if (q->reft_clusters == 0) {
		r = img_seterr(err, errlen, -EINVAL, "image does not contain a reference count table");
		goto out;
	}
	if ((uint64_t)q->reft_clusters * q->cluster_size > QCOW2_MAX_REFTABLE_BYTES) {
		r = img_seterr(err, errlen, -EINVAL, "reference count table too large (%u clusters)",
			       q->reft_clusters);
		goto out;
	}
	q->reft_entries = (uint64_t)q->reft_clusters * q->cluster_size / 8;
	if (q->l1_size && q->l1_offset < q->reft_offset + (uint64_t)q->reft_clusters * q->cluster_size &&
	    q->reft_offset < q->l1_offset + (uint64_t)q->l1_size * 8) {
		r = img_seterr(err, errlen, -EINVAL, "L1 table overlaps the refcount table");
		goto out;
	}
	r = check_table(q, q->reft_offset, (uint64_t)q->reft_clusters * q->cluster_size, fsize,
			"refcount table", err, errlen);
	if (r < 0)
		goto out;

	/* snapshots: validated here, walked by check */
	q->nb_snapshots = get_be32(h + QCOW2_HDR_NB_SNAPSHOTS);
	q->snapshots_offset = get_be64(h + QCOW2_HDR_SNAPSHOTS_OFFSET);
	if (q->nb_snapshots > QCOW2_MAX_SNAPSHOTS) {
		r = img_seterr(err, errlen, -EINVAL, "too many snapshots (%u)", q->nb_snapshots);
		goto out;
	}
	if (q->nb_snapshots) {
		r = check_table(q, q->snapshots_offset, (uint64_t)q->nb_snapshots * QCOW2_SN_HDR_LEN,
				fsize, "snapshot table", err, errlen);
		if (r < 0)
			goto out;
	}

	r = load_table(q, q->l1_offset, q->l1_size, &q->l1);
	if (r == 0)
		r = load_table(q, q->reft_offset, q->reft_entries, &q->reft);
	if (r < 0) {
		r = img_seterr(err, errlen, r, "reading tables: %s", strerror(-r));
		goto out;
	}
	for (uint64_t t = 0; t < q->reft_entries; t++) {
		uint64_t o = q->reft[t];
		if (!o)
			continue;
		if ((o & QCOW2_REFT_RESERVED_MASK) || o % q->cluster_size ||
		    o >= QCOW2_MAX_HOST_OFFSET || o >= fsize) {
			r = img_seterr(err, errlen, -EINVAL,
				       "refcount block %llu offset 0x%llx invalid%s",
				       (unsigned long long)t, (unsigned long long)o,
				       o >= fsize ? " (past the end of the file)" : "");
			goto out;
		}
	}
	q->file_end = fsize;

	r = qcache_init(&q->l2_cache, q->cluster_size, L2_CACHE_BYTES, 16, 2048);
	if (r == 0)
		r = qcache_init(&q->rb_cache, q->cluster_size, RB_CACHE_BYTES, 16, 512);
	if (r < 0) {
		r = img_seterr(err, errlen, r, "out of memory");
		goto out;
	}
	q->l2_cache.before_writeback = l2_before_writeback;

	/* what we may write */
	if (!img->readonly) {
		const char *why = q->corrupt_bit ? "marked corrupt (repair: vbd-img check -r all)" :
				  q->dirty_bit ? "dirty (refcounts may be stale; repair: vbd-img "
						 "check -r all)" :
						 NULL;
		if (why && (img->flags & IMG_REPAIR)) {
			log_info("%s: image %s: opened for repair", img->path, why);
		} else if (why) {
			log_warn("%s: image %s: opening read-only", img->path, why);
			img->readonly = true;
		}
	}
	if (!img->readonly && q->version == 3 && q->autoclear) {
		/* we do not maintain bitmaps: clear what we do not understand */
		uint8_t z[8] = { 0 };
		r = q2_write_header_field(q, QCOW2_HDR_AUTOCLEAR_FEATURES, z, 8);
		if (r == 0 && fdatasync(q->fd) < 0)
			r = -errno;
		if (r < 0) {
			r = img_seterr(err, errlen, r, "clearing autoclear features: %s",
				       strerror(-r));
			goto out;
		}
		q->autoclear = 0;
	}
	img->caps = IMG_CAN_FLUSH;
	if (!img->readonly) {
		img->caps |= IMG_CAN_WRITE | IMG_CAN_WRITE_ZEROES;
		/* discarded ranges must read as zeros: v2 cannot hide backing data */
		if (q->version == 3 || !q->has_backing)
			img->caps |= IMG_CAN_DISCARD;
	}
	r = 0;
out:
	free(c0);
	return r;
}

static int qcow2_open(struct img *img, char *err, size_t errlen)
{
	struct qcow2 *q = calloc(1, sizeof(*q));
	int r;

	if (!q)
		return img_seterr(err, errlen, -ENOMEM, "out of memory");
	q->img = img;
	q->fd = img->fd;
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->cond, NULL);
	pthread_mutex_init(&q->zc.lock, NULL);
	q->dfd = -1;
	r = qcow2_open2(img, q, err, errlen);
	if (r == 0 && (img->flags & IMG_DIRECT)) {
		char p[64];
		snprintf(p, sizeof(p), "/proc/self/fd/%d", img->fd);
		/* no O_DIRECT here (tmpfs...): everything stays buffered */
		q->dfd = open(p, (img->readonly ? O_RDONLY : O_RDWR) | O_DIRECT | O_CLOEXEC);
	}
	if (r < 0) {
		qcow2_free_state(q);
		free(img->backing_name);
		free(img->backing_fmt);
		img->backing_name = img->backing_fmt = NULL;
		return r;
	}
	img->priv = q;
	return 0;
}

/* ------------------------------------------------------------------ */
/* lookups                                                             */
/* ------------------------------------------------------------------ */

/* Validate an L1 entry; returns the L2 table offset or 0 (unallocated). */
static int l1_entry(struct qcow2 *q, uint64_t l1i, uint64_t *l2off)
{
	uint64_t e = q->l1[l1i], off = e & QCOW2_L1E_OFFSET_MASK;

	*l2off = off;
	if (off == 0)
		return 0;
	if ((e & QCOW2_L1E_RESERVED_MASK) || off % q->cluster_size || q2_is_fixed_meta(q, off >> q->cluster_bits) ||
	    off >= q->file_end) {
		img_log_bad(q->img, "L1 entry %llu (0x%llx) is invalid", (unsigned long long)l1i,
			    (unsigned long long)e);
		return -EIO;
	}
	return 0;
}

/* The L2 table (cached) mapping guest cluster gc, or *l2 = NULL. */
static int l2_table(struct qcow2 *q, uint64_t gc, uint8_t **l2)
{
	uint64_t l2off;
	int r = l1_entry(q, gc >> q->l2_bits, &l2off);

	*l2 = NULL;
	if (r < 0 || l2off == 0)
		return r;
	return qcache_get(q, &q->l2_cache, l2off, false, l2);
}

enum q2_kind { K_UNALLOC, K_ZERO, K_NORMAL, K_COMPRESSED };

/* Classify and validate an L2 entry. */
static int l2_kind(struct qcow2 *q, uint64_t e, uint64_t gc, enum q2_kind *kind)
{
	if (e & QCOW2_OFLAG_COMPRESSED) {
		uint64_t off, n;
		qcow2_compressed_decode(e, q->cluster_bits, &off, &n);
		if ((e & QCOW2_OFLAG_COPIED) || off < q->cluster_size || off >= q->file_end ||
		    off >= QCOW2_MAX_HOST_OFFSET) {
			img_log_bad(q->img, "compressed cluster descriptor 0x%llx for guest offset "
				    "0x%llx points outside the file", (unsigned long long)e,
				    (unsigned long long)(gc << q->cluster_bits));
			return -EIO;
		}
		*kind = K_COMPRESSED;
		return 0;
	}
	uint64_t off = e & QCOW2_L2E_OFFSET_MASK;
	bool zero = e & QCOW2_OFLAG_ZERO;
	if ((e & QCOW2_L2E_RESERVED_MASK) || (zero && q->version < 3)) {
		img_log_bad(q->img, "L2 entry 0x%llx for guest offset 0x%llx has reserved bits set",
			    (unsigned long long)e, (unsigned long long)(gc << q->cluster_bits));
		return -EIO;
	}
	if (off && (off % q->cluster_size || off >= q->file_end || q2_is_fixed_meta(q, off >> q->cluster_bits))) {
		img_log_bad(q->img, "L2 entry 0x%llx for guest offset 0x%llx: invalid data "
			    "cluster offset", (unsigned long long)e,
			    (unsigned long long)(gc << q->cluster_bits));
		return -EIO;
	}
	if (zero)
		*kind = K_ZERO;
	else if (off)
		*kind = K_NORMAL;
	else if (e & QCOW2_OFLAG_COPIED) {
		img_log_bad(q->img, "L2 entry 0x%llx: offset 0 needs an external data file",
			    (unsigned long long)e);
		return -EIO;
	} else
		*kind = K_UNALLOC;
	return 0;
}

/* ------------------------------------------------------------------ */
/* request epochs                                                      */
/* ------------------------------------------------------------------ */
/*
 * A request that uses host offsets learned under the lock (reads, in-place
 * writes, copy-on-write sources) holds a reference on the current epoch
 * until its data I/O is done.  Freed clusters are only returned to the
 * allocator by flush after it has switched epochs and waited for the old
 * one to drain, so no request can read or write a cluster that was freed
 * and reused for other data under its feet.
 */
static unsigned epoch_enter(struct qcow2 *q)
{
	unsigned e = q->epoch & 1;        /* under q->lock */
	atomic_fetch_add(&q->inflight[e], 1);
	return e;
}

static void epoch_leave(struct qcow2 *q, unsigned e)
{
	if (atomic_fetch_sub(&q->inflight[e], 1) == 1 && atomic_load(&q->drain_waiters)) {
		pthread_mutex_lock(&q->lock);
		pthread_cond_broadcast(&q->cond);
		pthread_mutex_unlock(&q->lock);
	}
}

/* Same, for a caller that holds q->lock. */
static void epoch_leave_locked(struct qcow2 *q, unsigned e)
{
	if (atomic_fetch_sub(&q->inflight[e], 1) == 1)
		pthread_cond_broadcast(&q->cond);
}

/* ------------------------------------------------------------------ */
/* reads                                                               */
/* ------------------------------------------------------------------ */

/* Inflate one compressed cluster (descriptor e) into out (cluster_size). */
static int read_compressed(struct qcow2 *q, uint64_t e, uint8_t *out, uint8_t *in)
{
	uint64_t off, n;
	int r;

	qcow2_compressed_decode(e, q->cluster_bits, &off, &n);
	/* compressed data is shorter than a cluster: never read more than
	 * cluster + one sector, whatever the descriptor says */
	if (n > q->cluster_size + QCOW2_COMPRESSED_SECTOR_SIZE)
		n = q->cluster_size + QCOW2_COMPRESSED_SECTOR_SIZE;
	r = full_pread(q->fd, in, n, off);
	if (r < 0)
		return r;
	/* trailing bytes may belong to the next compressed cluster */
	r = zcodec_inflate_cluster(in, n, out, q->cluster_size);
	if (r == -EIO)
		img_log_bad(q->img, "compressed cluster at 0x%llx does not inflate to one cluster",
			    (unsigned long long)off);
	return r;
}

/* IMG_DIRECT: guest data goes through the O_DIRECT descriptor when the
 * offset, length and every buffer are 4 KiB aligned; metadata and anything
 * unaligned use the buffered one (Linux keeps the two coherent). */
#define Q2_DIRECT_ALIGN 4096u

static int data_fd(const struct qcow2 *q, const struct iovec *iov, int iovcnt, uint64_t off,
		   uint64_t len)
{
	if (q->dfd < 0 || (off | len) % Q2_DIRECT_ALIGN)
		return q->fd;
	for (int i = 0; i < iovcnt; i++)
		if (((uintptr_t)iov[i].iov_base | iov[i].iov_len) % Q2_DIRECT_ALIGN)
			return q->fd;
	return q->dfd;
}

/* A cluster-sized bounce buffer, aligned for O_DIRECT when that is used. */
static uint8_t *bounce_alloc(const struct qcow2 *q)
{
	void *p = NULL;
	if (q->dfd < 0)
		return malloc(q->cluster_size);
	return posix_memalign(&p, Q2_DIRECT_ALIGN, q->cluster_size) == 0 ? p : NULL;
}

struct rseg {
	enum q2_kind kind;
	uint64_t guest;       /* byte offset in the disk */
	uint64_t len;
	uint64_t host;        /* K_NORMAL: host byte offset; K_COMPRESSED: the L2 entry */
};

#define RSEG_MAX 32

/* Map [off, off+len) into at most RSEG_MAX segments; *mapped = bytes covered. */
static int plan_read(struct qcow2 *q, uint64_t off, uint64_t len, struct rseg *seg, int *nseg,
		     uint64_t *mapped)
{
	uint64_t done = 0, cs = q->cluster_size;
	uint8_t *l2 = NULL;
	uint64_t l2_gc_base = UINT64_MAX;
	int n = 0, r;

	while (done < len) {
		uint64_t g = off + done, gc = g >> q->cluster_bits, in = g & (cs - 1);
		uint64_t chunk = cs - in < len - done ? cs - in : len - done;
		uint64_t e = 0, host = 0;
		enum q2_kind kind;

		if ((gc >> q->l2_bits) != l2_gc_base) {
			r = l2_table(q, gc, &l2);
			if (r < 0)
				return r;
			l2_gc_base = gc >> q->l2_bits;
		}
		if (l2) {
			e = get_be64(l2 + 8 * (gc & ((1ull << q->l2_bits) - 1)));
		} else {
			/* no L2 table: the rest of its range is unallocated */
			uint64_t span = (((gc >> q->l2_bits) + 1) << (q->l2_bits + q->cluster_bits)) - g;
			chunk = span < len - done ? span : len - done;
		}
		r = l2_kind(q, e, gc, &kind);
		if (r < 0)
			return r;
		if (kind == K_NORMAL)
			host = (e & QCOW2_L2E_OFFSET_MASK) + in;
		else if (kind == K_COMPRESSED)
			host = e;
		/* extend the previous segment when contiguous */
		if (n > 0 && seg[n - 1].kind == kind && kind != K_COMPRESSED &&
		    (kind != K_NORMAL || seg[n - 1].host + seg[n - 1].len == host)) {
			seg[n - 1].len += chunk;
		} else {
			if (n == RSEG_MAX)
				break;
			seg[n].kind = kind;
			seg[n].guest = g;
			seg[n].len = chunk;
			seg[n].host = host;
			n++;
		}
		done += chunk;
	}
	*nseg = n;
	*mapped = done;
	return 0;
}

/* Copy len bytes at offset in of the inflated cluster desc into iov, if
 * cached.  The copy happens under the cache lock (it is short). */
static bool zcache_copy(struct qcow2 *q, uint64_t desc, const struct iovec *iov, int iovcnt,
			size_t io, uint64_t in, uint64_t len)
{
	struct q2_zcache *z = &q->zc;
	bool hit = false;

	pthread_mutex_lock(&z->lock);
	for (int i = 0; i < ZCACHE_N; i++)
		if (z->desc[i] == desc && z->buf[i]) {
			iov_from_buf(iov, iovcnt, io, z->buf[i] + in, len);
			z->lru[i] = ++z->tick;
			hit = true;
			break;
		}
	pthread_mutex_unlock(&z->lock);
	return hit;
}

static void zcache_put(struct qcow2 *q, uint64_t desc, const uint8_t *data)
{
	struct q2_zcache *z = &q->zc;
	int v = 0;

	pthread_mutex_lock(&z->lock);
	for (int i = 1; i < ZCACHE_N; i++)
		if (z->lru[i] < z->lru[v])
			v = i;
	if (!z->buf[v])
		z->buf[v] = malloc(q->cluster_size);
	if (z->buf[v]) {
		memcpy(z->buf[v], data, q->cluster_size);
		z->desc[v] = desc;
		z->lru[v] = ++z->tick;
	}
	pthread_mutex_unlock(&z->lock);
}

static int exec_read(struct qcow2 *q, struct img *img, const struct iovec *iov, int iovcnt,
		     uint64_t base, const struct rseg *seg, int nseg, uint8_t **cbuf)
{
	struct iov_slice s;
	int r = 0;

	for (int i = 0; i < nseg && r == 0; i++) {
		size_t io = (size_t)(seg[i].guest - base);
		switch (seg[i].kind) {
		case K_ZERO:
			iov_memset(iov, iovcnt, io, 0, seg[i].len);
			break;
		case K_UNALLOC:
			r = img_read_backing(img, iov, iovcnt, io, seg[i].guest, seg[i].len);
			break;
		case K_NORMAL:
			r = iov_slice(&s, iov, iovcnt, io, seg[i].len);
			if (r == 0) {
				r = full_preadv(data_fd(q, s.iov, s.cnt, seg[i].host, seg[i].len),
						s.iov, s.cnt, seg[i].host);
				iov_slice_free(&s);
			}
			break;
		case K_COMPRESSED:
			if (!*cbuf) {
				/* one cluster of output + the bounded input */
				*cbuf = malloc(2 * q->cluster_size + QCOW2_COMPRESSED_SECTOR_SIZE);
				if (!*cbuf)
					return -ENOMEM;
			}
			if (zcache_copy(q, seg[i].host, iov, iovcnt, io,
					seg[i].guest & (q->cluster_size - 1), seg[i].len))
				break;
			r = read_compressed(q, seg[i].host, *cbuf, *cbuf + q->cluster_size);
			if (r == 0) {
				iov_from_buf(iov, iovcnt, io,
					     *cbuf + (seg[i].guest & (q->cluster_size - 1)),
					     seg[i].len);
				zcache_put(q, seg[i].host, *cbuf);
			}
			break;
		}
	}
	return r;
}

static int qcow2_preadv(struct img *img, const struct iovec *iov, int iovcnt, uint64_t off,
			uint64_t len)
{
	struct qcow2 *q = img->priv;
	struct rseg seg[RSEG_MAX];
	uint8_t *cbuf = NULL;
	uint64_t done = 0, mapped;
	int nseg, r = 0;

	while (done < len && r == 0) {
		pthread_mutex_lock(&q->lock);
		r = plan_read(q, off + done, len - done, seg, &nseg, &mapped);
		unsigned ep = epoch_enter(q);
		pthread_mutex_unlock(&q->lock);
		if (r == 0)
			r = exec_read(q, img, iov, iovcnt, off, seg, nseg, &cbuf);
		epoch_leave(q, ep);
		done += mapped;
	}
	free(cbuf);
	return r;
}

/* ------------------------------------------------------------------ */
/* writes                                                              */
/* ------------------------------------------------------------------ */
/*
 * Metadata write ordering.  A crash at any instant must leave at worst
 * leaked clusters (refcount higher than the references), never a reference
 * to a cluster whose refcount is 0 or whose content is not yet on disk.
 * Guest data is written directly; all metadata is written back from caches
 * in this order, with fdatasync between the steps:
 *
 *   1. guest data for newly allocated clusters (done before the L2 entry is
 *      even set in the cache)
 *   2. refcount blocks (increments), then the refcount table entries that
 *      point at new blocks                  -- q2_refcounts_durable()
 *   3. fdatasync                            (covers 1 and 2)
 *   4. L2 tables                            -- also on eviction, after 2-3
 *   5. fdatasync
 *   6. L1 entries pointing at new L2 tables
 *   7. fdatasync
 *   8. only now are queued frees applied (refcount decrements: the
 *      references they drop are durably gone), once no request still uses
 *      an old mapping (epochs, above).  Their refcount blocks are written
 *      by a later flush or eviction; a crash before that only leaks.
 *
 * Growing the refcount table writes the new table and its blocks, syncs,
 * switches the header, syncs, and only then frees the old table.
 * img_flush runs steps 2-8, so every write acknowledged before it is
 * durable when it returns.
 *
 * Concurrency.  The metadata lock is never held across guest data I/O.
 * A write to an allocated cluster (COPIED, refcount 1) goes straight to the
 * host offset.  A write that needs new clusters (unallocated, zero,
 * compressed or shared clusters) allocates them under the lock, registers a
 * marker for the guest clusters, writes the data (merging the old contents
 * of partially written clusters: backing file, decompressed data, zeros)
 * without the lock, then sets the L2 entries.  Any other request that wants
 * to change the mapping of a marked cluster waits for the marker to go.
 */

static bool marked(struct qcow2 *q, uint64_t gc)
{
	for (struct q2_marker *m = q->markers; m; m = m->next)
		if (gc >= m->first && gc - m->first < m->count)
			return true;
	return false;
}

static void unmark(struct qcow2 *q, struct q2_marker *mk)
{
	for (struct q2_marker **p = &q->markers; *p; p = &(*p)->next)
		if (*p == mk) {
			*p = mk->next;
			break;
		}
	pthread_cond_broadcast(&q->cond);
}

static void l1_mark_dirty(struct qcow2 *q, uint32_t i)
{
	if (q->l1_dirty_lo >= q->l1_dirty_hi) {
		q->l1_dirty_lo = i;
		q->l1_dirty_hi = i + 1;
		return;
	}
	if (i < q->l1_dirty_lo)
		q->l1_dirty_lo = i;
	if (i + 1 > q->l1_dirty_hi)
		q->l1_dirty_hi = i + 1;
}

/* The L2 table for gc, allocating an empty one if needed (writes only). */
static int l2_table_alloc(struct qcow2 *q, uint64_t gc, uint8_t **l2, uint64_t *l2off)
{
	uint64_t l1i = gc >> q->l2_bits, off;
	int r = l1_entry(q, l1i, &off);

	if (r < 0)
		return r;
	if (off && (q->l1[l1i] & QCOW2_OFLAG_COPIED)) {
		*l2off = off;
		return qcache_get(q, &q->l2_cache, off, false, l2);
	}
	if (off) {
		/* shared with a snapshot: copy the table.  The data clusters keep
		 * their refcounts (each is still reached once through the old
		 * table and once through the copy); the old table loses the
		 * active L1's reference once the new L1 entry is durable. */
		uint64_t noff, got;
		uint8_t *old, *dst, *tmp = malloc(q->cluster_size);
		if (!tmp)
			return -ENOMEM;
		r = qcache_get(q, &q->l2_cache, off, false, &old);
		if (r < 0) {
			free(tmp);
			return r;
		}
		memcpy(tmp, old, q->cluster_size);
		r = q2_alloc_clusters(q, 1, &noff, &got);
		if (r == 0) {
			r = qcache_get(q, &q->l2_cache, noff, true, &dst);
			if (r < 0)
				q2_free_now(q, noff, 1);
		}
		if (r < 0) {
			free(tmp);
			return r;
		}
		memcpy(dst, tmp, q->cluster_size);
		free(tmp);
		qcache_mark_dirty(q, &q->l2_cache, noff);
		q2_queue_free_l2e(q, off);   /* a plain cluster reference */
		q->l1[l1i] = noff | QCOW2_OFLAG_COPIED;
		l1_mark_dirty(q, (uint32_t)l1i);
		*l2off = noff;
		*l2 = dst;
		return 0;
	}
	uint64_t got;
	r = q2_alloc_clusters(q, 1, &off, &got);
	if (r < 0)
		return r;
	r = qcache_get(q, &q->l2_cache, off, true, l2);
	if (r < 0) {
		q2_free_now(q, off, 1);
		return r;
	}
	q->l1[l1i] = off | QCOW2_OFLAG_COPIED;
	l1_mark_dirty(q, (uint32_t)l1i);
	*l2off = off;
	return 0;
}

/* A write segment, planned under the lock. */
struct wseg {
	bool alloc;           /* new clusters (else in place) */
	uint64_t guest;       /* first guest byte written */
	uint64_t len;         /* bytes of the request in this segment */
	uint64_t host;        /* host offset of guest (in place) / of first cluster (alloc) */
	uint64_t gc0, n;      /* alloc: first guest cluster, cluster count */
	uint64_t old_head, old_tail;  /* alloc: old L2 entries of first/last cluster */
	struct q2_marker mk;
	unsigned ep;
};

#define WSEG_MAX_BYTES (4u << 20)

/* Plan the longest simple segment at off.  Returns 1 if the caller must
 * wait (a cluster is being allocated by someone else) and retry. */
static int plan_write(struct qcow2 *q, uint64_t off, uint64_t len, struct wseg *w)
{
	uint64_t cs = q->cluster_size, gc = off >> q->cluster_bits, in = off & (cs - 1);
	uint64_t l2mask = (1ull << q->l2_bits) - 1, l2off, e;
	enum q2_kind kind;
	uint8_t *l2;
	int r;

	if (marked(q, gc))
		return 1;
	r = l2_table_alloc(q, gc, &l2, &l2off);
	if (r < 0)
		return r;
	e = get_be64(l2 + 8 * (gc & l2mask));
	r = l2_kind(q, e, gc, &kind);
	if (r < 0)
		return r;
	memset(w, 0, sizeof(*w));
	w->guest = off;
	if (kind == K_NORMAL && (e & QCOW2_OFLAG_COPIED)) {
		/* in place: extend over following clusters with contiguous hosts */
		uint64_t host0 = e & QCOW2_L2E_OFFSET_MASK;
		uint64_t n = 1, got = cs - in;
		while (got < len && got < WSEG_MAX_BYTES && ((gc + n) & l2mask) != 0) {
			uint64_t e2 = get_be64(l2 + 8 * ((gc + n) & l2mask));
			enum q2_kind k2;
			if (l2_kind(q, e2, gc + n, &k2) < 0 || k2 != K_NORMAL ||
			    !(e2 & QCOW2_OFLAG_COPIED) ||
			    (e2 & QCOW2_L2E_OFFSET_MASK) != host0 + n * cs || marked(q, gc + n))
				break;
			got += cs;
			n++;
		}
		w->len = got < len ? got : len;
		w->host = host0 + in;
		if (w->host + w->len > q->file_end && w->host + w->len - q->file_end > cs) {
			img_log_bad(q->img, "data cluster past the end of the file");
			return -EIO;
		}
		w->ep = epoch_enter(q);
		return 0;
	}
	/* allocating: the run of following clusters that also need new ones */
	uint64_t n = 1, got = cs - in;
	w->old_head = e;
	w->old_tail = e;
	while (got < len && got < WSEG_MAX_BYTES && ((gc + n) & l2mask) != 0 && !marked(q, gc + n)) {
		uint64_t e2 = get_be64(l2 + 8 * ((gc + n) & l2mask));
		enum q2_kind k2;
		if (l2_kind(q, e2, gc + n, &k2) < 0 || (k2 == K_NORMAL && (e2 & QCOW2_OFLAG_COPIED)))
			break;
		w->old_tail = e2;
		got += cs;
		n++;
	}
	uint64_t have;
	r = q2_alloc_clusters(q, n, &w->host, &have);
	if (r < 0)
		return r;
	if (have < n) {
		/* fewer contiguous clusters than asked: write that much now */
		n = have;
		got = n * cs - in;
		w->old_tail = n == 1 ? e : get_be64(l2 + 8 * ((gc + n - 1) & l2mask));
	}
	w->len = got < len ? got : len;
	w->alloc = true;
	w->gc0 = gc;
	w->n = n;
	w->mk.first = gc;
	w->mk.count = n;
	w->mk.next = q->markers;
	q->markers = &w->mk;
	w->ep = epoch_enter(q);
	return 0;
}

/* The current contents of guest cluster gc whose L2 entry is e. */
static int old_cluster(struct qcow2 *q, struct img *img, uint64_t gc, uint64_t e, uint8_t *buf,
		       uint8_t *zbuf)
{
	enum q2_kind kind;
	uint64_t g = gc << q->cluster_bits, n = q->cluster_size;
	struct iovec v = { .iov_base = buf, .iov_len = n };

	/* e was validated by plan_write under the lock; this runs without it */
	if (e & QCOW2_OFLAG_COMPRESSED)
		kind = K_COMPRESSED;
	else if (e & QCOW2_OFLAG_ZERO)
		kind = K_ZERO;
	else if (e & QCOW2_L2E_OFFSET_MASK)
		kind = K_NORMAL;
	else
		kind = K_UNALLOC;
	switch (kind) {
	case K_ZERO:
		memset(buf, 0, n);
		return 0;
	case K_NORMAL:
		return full_pread(q->fd, buf, n, e & QCOW2_L2E_OFFSET_MASK);
	case K_COMPRESSED:
		return read_compressed(q, e, buf, zbuf);
	default:
		if (g >= img->size) {
			memset(buf, 0, n);
			return 0;
		}
		if (n > img->size - g) {
			memset(buf, 0, n);
			v.iov_len = img->size - g;
		}
		return img_read_backing(img, &v, 1, 0, g, v.iov_len);
	}
}

static int exec_alloc_write(struct qcow2 *q, struct img *img, const struct iovec *iov,
			    int iovcnt, uint64_t base, struct wseg *w)
{
	uint64_t cs = q->cluster_size, g0 = w->gc0 << q->cluster_bits;
	uint64_t head_pad = w->guest - g0, end = w->guest + w->len;
	uint64_t tail_pad = g0 + w->n * cs - end;
	uint8_t *head = NULL, *tail = NULL, *zbuf = NULL;
	struct iovec *v = NULL, vlocal[IOV_SLICE_INLINE + 2];
	struct iov_slice mid = { 0 };
	int r = 0, nv = 0;

	/* partial first/last clusters get their old contents merged in */
	if (head_pad || tail_pad) {
		zbuf = malloc(cs + QCOW2_COMPRESSED_SECTOR_SIZE);
		if (!zbuf)
			return -ENOMEM;
	}
	if (head_pad || (w->n == 1 && tail_pad)) {
		head = bounce_alloc(q);
		if (!head || (r = old_cluster(q, img, w->gc0, w->old_head, head, zbuf)) < 0)
			goto out;
		uint64_t k = w->n == 1 ? w->len : cs - head_pad;
		iov_to_buf(iov, iovcnt, (size_t)(w->guest - base), head + head_pad, k);
	}
	if (tail_pad && w->n > 1) {
		tail = bounce_alloc(q);
		if (!tail || (r = old_cluster(q, img, w->gc0 + w->n - 1, w->old_tail, tail, zbuf)) < 0)
			goto out;
		iov_to_buf(iov, iovcnt, (size_t)(end - (cs - tail_pad) - base), tail, cs - tail_pad);
	}
	/* the full clusters in between come straight from the guest's buffers */
	uint64_t mid_start = head ? g0 + cs : w->guest;
	uint64_t mid_end = tail ? end - (cs - tail_pad) : end;
	if (head && w->n == 1)
		mid_end = mid_start;
	if (mid_end > mid_start) {
		r = iov_slice(&mid, iov, iovcnt, (size_t)(mid_start - base), mid_end - mid_start);
		if (r < 0)
			goto out;
	}
	v = mid.cnt + 2 <= IOV_SLICE_INLINE + 2 ? vlocal : malloc(sizeof(*v) * (size_t)(mid.cnt + 2));
	if (!v) {
		r = -ENOMEM;
		goto out;
	}
	if (head)
		v[nv++] = (struct iovec){ head, cs };
	for (int i = 0; i < mid.cnt; i++)
		v[nv++] = mid.iov[i];
	if (tail)
		v[nv++] = (struct iovec){ tail, cs };
	r = full_pwritev(data_fd(q, v, nv, w->host, w->n * cs), v, nv, w->host);
out:
	if (mid.iov)
		iov_slice_free(&mid);
	if ((head_pad || (w->n == 1 && tail_pad)) && !head)
		r = r < 0 ? r : -ENOMEM;
	if (tail_pad && w->n > 1 && !tail)
		r = r < 0 ? r : -ENOMEM;
	if (v != vlocal)
		free(v);
	free(head);
	free(tail);
	free(zbuf);
	return r;
}

/* Point the L2 entries at the new clusters (or undo on failure). */
static int commit_alloc(struct qcow2 *q, struct wseg *w, int result)
{
	uint64_t l2mask = (1ull << q->l2_bits) - 1, l2off;
	uint8_t *l2;
	int r = result;

	if (r == 0)
		r = l2_table_alloc(q, w->gc0, &l2, &l2off);
	if (r == 0) {
		for (uint64_t i = 0; i < w->n; i++) {
			uint8_t *p = l2 + 8 * ((w->gc0 + i) & l2mask);
			q2_queue_free_l2e(q, get_be64(p));
			put_be64(p, (w->host + i * q->cluster_size) | QCOW2_OFLAG_COPIED);
		}
		qcache_mark_dirty(q, &q->l2_cache, l2off);
	} else {
		q2_free_now(q, w->host, w->n);   /* never referenced */
	}
	unmark(q, &w->mk);
	return r;
}



static void maybe_apply_frees(struct qcow2 *q)
{
	pthread_mutex_lock(&q->lock);
	if (q->nfrees >= Q2_FREES_SOFT_MAX && !q->flushing)
		(void)q2_flush_locked(q);
	pthread_mutex_unlock(&q->lock);
}

static int qcow2_pwritev(struct img *img, const struct iovec *iov, int iovcnt, uint64_t off,
			 uint64_t len)
{
	struct qcow2 *q = img->priv;
	uint64_t done = 0;
	struct wseg w;
	int r = 0;

	while (done < len && r == 0) {
		pthread_mutex_lock(&q->lock);
		while ((r = plan_write(q, off + done, len - done, &w)) == 1)
			pthread_cond_wait(&q->cond, &q->lock);
		pthread_mutex_unlock(&q->lock);
		if (r < 0)
			break;
		if (w.alloc) {
			r = exec_alloc_write(q, img, iov, iovcnt, off, &w);
			pthread_mutex_lock(&q->lock);
			r = commit_alloc(q, &w, r);
			epoch_leave_locked(q, w.ep);
			pthread_mutex_unlock(&q->lock);
		} else {
			struct iov_slice s;
			r = iov_slice(&s, iov, iovcnt, (size_t)done, w.len);
			if (r == 0) {
				r = full_pwritev(data_fd(q, s.iov, s.cnt, w.host, w.len), s.iov,
						 s.cnt, w.host);
				iov_slice_free(&s);
			}
			epoch_leave(q, w.ep);
		}
		done += w.len;
	}
	if (atomic_load(&q->frees_pressure))
		maybe_apply_frees(q);
	return r;
}

/* ------------------------------------------------------------------ */
/* discard and write_zeroes                                            */
/* ------------------------------------------------------------------ */

static const uint8_t zero_block[65536];

/* Write literal zeros through the normal write path. */
static int write_zero_data(struct img *img, uint64_t off, uint64_t len)
{
	struct iovec v[16];

	while (len > 0) {
		int n = 0;
		uint64_t chunk = 0;
		while (n < 16 && chunk < len) {
			uint64_t k = len - chunk < sizeof(zero_block) ? len - chunk : sizeof(zero_block);
			v[n++] = (struct iovec){ (void *)zero_block, k };
			chunk += k;
		}
		int r = qcow2_pwritev(img, v, n, off, chunk);
		if (r < 0)
			return r;
		off += chunk;
		len -= chunk;
	}
	return 0;
}

/* Set the L2 entries of whole clusters [gc, gc+n) to new_e (0 or ZERO),
 * dropping their old references. */
static int set_clusters(struct qcow2 *q, uint64_t gc, uint64_t n, uint64_t new_e)
{
	uint64_t l2mask = (1ull << q->l2_bits) - 1;
	int r = 0;

	pthread_mutex_lock(&q->lock);
	for (uint64_t i = 0; i < n && r == 0;) {
		uint64_t c = gc + i, l2off, e;
		uint8_t *l2;
		enum q2_kind kind;

		if (marked(q, c)) {
			pthread_cond_wait(&q->cond, &q->lock);
			continue;
		}
		if (new_e == 0) {
			/* unallocated: nothing to do without a table */
			uint64_t l1off;
			r = l1_entry(q, c >> q->l2_bits, &l1off);
			if (r < 0)
				break;
			if (l1off == 0) {
				i += (l2mask + 1) - (c & l2mask);
				continue;
			}
		}
		r = l2_table_alloc(q, c, &l2, &l2off);
		if (r < 0)
			break;
		/* this table's clusters in the range */
		uint64_t stop = i + (l2mask + 1) - (c & l2mask);
		if (stop > n)
			stop = n;
		bool changed = false;
		for (; i < stop; i++) {
			uint8_t *p = l2 + 8 * ((gc + i) & l2mask);
			e = get_be64(p);
			if (marked(q, gc + i))
				break;
			if ((r = l2_kind(q, e, gc + i, &kind)) < 0)
				break;
			if (e == new_e)
				continue;
			q2_queue_free_l2e(q, e);
			put_be64(p, new_e);
			changed = true;
		}
		if (changed)
			qcache_mark_dirty(q, &q->l2_cache, l2off);
	}
	pthread_mutex_unlock(&q->lock);
	if (atomic_load(&q->frees_pressure))
		maybe_apply_frees(q);
	return r;
}

static int zero_or_discard(struct img *img, uint64_t off, uint64_t len, bool discard)
{
	struct qcow2 *q = img->priv;
	uint64_t cs = q->cluster_size;
	uint64_t a = (off + cs - 1) & ~(cs - 1), b = (off + len) & ~(cs - 1);
	uint64_t new_e;
	int r;

	/* the last cluster may be partial in the disk: it still counts whole */
	if (off + len == img->size)
		b = (off + len + cs - 1) & ~(cs - 1);
	if (q->has_backing && q->version < 3) {
		/* v2 cannot say "zero" over a backing file */
		return discard ? 0 : write_zero_data(img, off, len);
	}
	new_e = q->has_backing ? QCOW2_OFLAG_ZERO : 0;
	if (a >= b)
		return discard ? 0 : write_zero_data(img, off, len);
	if (!discard && a > off && (r = write_zero_data(img, off, a - off)) < 0)
		return r;
	r = set_clusters(q, a >> q->cluster_bits, (b - a) >> q->cluster_bits, new_e);
	if (r < 0)
		return r;
	if (!discard && off + len > b)
		r = write_zero_data(img, b, off + len - b);
	return r;
}

static int qcow2_discard(struct img *img, uint64_t off, uint64_t len)
{
	/* unaligned edges keep their data (discard is advisory) */
	return zero_or_discard(img, off, len, true);
}

static int qcow2_write_zeroes(struct img *img, uint64_t off, uint64_t len)
{
	return zero_or_discard(img, off, len, false);
}

/* ------------------------------------------------------------------ */
/* flush                                                               */
/* ------------------------------------------------------------------ */

static int write_l1(struct qcow2 *q)
{
	uint32_t lo = q->l1_dirty_lo, hi = q->l1_dirty_hi;
	uint8_t *buf;
	int r;

	if (lo >= hi)
		return 0;
	buf = malloc((size_t)(hi - lo) * 8);
	if (!buf)
		return -ENOMEM;
	for (uint32_t i = lo; i < hi; i++)
		put_be64(buf + 8 * (i - lo), q->l1[i]);
	r = full_pwrite(q->fd, buf, (size_t)(hi - lo) * 8, q->l1_offset + (uint64_t)lo * 8);
	free(buf);
	if (r == 0)
		q->l1_dirty_lo = q->l1_dirty_hi = 0;
	return r;
}

/* Steps 2-8 of the ordering above.  Needs q->lock (released while waiting). */
int q2_flush_locked(struct qcow2 *q)
{
	struct q2_free *f = NULL;
	size_t nf = 0;
	int r;

	while (q->flushing)
		pthread_cond_wait(&q->cond, &q->lock);
	q->flushing = true;

	/* frees queued so far may be applied once the old epoch drains */
	if (q->nfrees) {
		f = q->frees;
		nf = q->nfrees;
		q->frees = NULL;
		q->nfrees = q->frees_cap = 0;
		atomic_store(&q->frees_pressure, false);
		unsigned old = q->epoch & 1;
		q->epoch++;
		atomic_fetch_add(&q->drain_waiters, 1);
		while (atomic_load(&q->inflight[old]) != 0)
			pthread_cond_wait(&q->cond, &q->lock);
		atomic_fetch_sub(&q->drain_waiters, 1);
	}
	r = q2_refcounts_durable(q);                         /* 2, 3 */
	if (r == 0 && (r = qcache_writeback(q, &q->l2_cache)) >= 0) {  /* 4 */
		bool l1 = q->l1_dirty_lo < q->l1_dirty_hi;
		if (r > 0 || l1)
			r = fdatasync(q->fd) < 0 ? -errno : 0;      /* 5 */
		if (r == 0 && l1) {
			r = write_l1(q);                         /* 6 */
			if (r == 0 && fdatasync(q->fd) < 0)      /* 7 */
				r = -errno;
		}
	}
	if (r == 0) {
		q2_apply_frees(q, f, nf);                        /* 8 */
		free(f);
	} else if (nf) {
		/* keep them for the next attempt */
		struct q2_free *merged = realloc(f, (nf + q->nfrees) * sizeof(*f));
		if (merged) {
			if (q->nfrees)
				memcpy(merged + nf, q->frees, q->nfrees * sizeof(*f));
			free(q->frees);
			q->frees = merged;
			q->nfrees += nf;
			q->frees_cap = q->nfrees;
		} else {
			free(f);    /* leaked clusters, never corruption */
		}
	}
	q->flushing = false;
	pthread_cond_broadcast(&q->cond);
	if (r < 0)
		img_log_bad(q->img, "flush failed: %s", strerror(-r));
	return r;
}

static int qcow2_flush(struct img *img)
{
	struct qcow2 *q = img->priv;
	int r;

	pthread_mutex_lock(&q->lock);
	r = q2_flush_locked(q);
	pthread_mutex_unlock(&q->lock);
	return r;
}

static void qcow2_close(struct img *img)
{
	struct qcow2 *q = img->priv;

	if (!q)
		return;
	if (!img->readonly) {
		/* twice: the second applies... nothing new, but writes the
		 * refcount decrements of the first to disk */
		(void)qcow2_flush(img);
		pthread_mutex_lock(&q->lock);
		if (q2_refcounts_durable(q) < 0)
			img_log_bad(img, "writing refcounts at close failed");
		pthread_mutex_unlock(&q->lock);
	}
	qcow2_free_state(q);
	img->priv = NULL;
}

/* ------------------------------------------------------------------ */
/* block status and info                                               */
/* ------------------------------------------------------------------ */

static int qcow2_block_status(struct img *img, uint64_t off, uint64_t len, struct img_extent *ext)
{
	struct qcow2 *q = img->priv;
	struct rseg seg[RSEG_MAX];
	uint64_t mapped;
	int nseg, r;

	pthread_mutex_lock(&q->lock);
	r = plan_read(q, off, len, seg, &nseg, &mapped);
	pthread_mutex_unlock(&q->lock);
	if (r < 0)
		return r;
	ext->offset = off;
	ext->length = seg[0].len;
	switch (seg[0].kind) {
	case K_ZERO:
		ext->type = IMG_EXT_ZERO;
		return 0;
	case K_NORMAL:
		ext->type = IMG_EXT_DATA;
		ext->host_offset = seg[0].host;
		return 0;
	case K_COMPRESSED: {
		/* merge following compressed clusters into one extent */
		int i = 1;
		while (i < nseg && seg[i].kind == K_COMPRESSED)
			ext->length += seg[i++].len;
		ext->type = IMG_EXT_DATA;
		ext->compressed = true;
		return 0;
	}
	default:
		break;
	}
	/* unallocated here: ask the backing file */
	struct img *b = img->backing;
	if (!b || off >= b->size) {
		ext->type = IMG_EXT_UNALLOCATED;
		return 0;
	}
	uint64_t blen = ext->length < b->size - off ? ext->length : b->size - off;
	r = img_block_status(b, off, blen, ext);
	if (r < 0)
		return r;
	ext->depth++;
	return 0;
}

/* Grow the virtual disk.  If the L1 table must grow, everything dirty is
 * flushed first (so the new table only points at durable L2 tables), the
 * new table is written and synced, the header switches to it with one
 * write (l1_size and l1_table_offset are adjacent), and only then is the
 * old table freed.  The new size goes into the header last. */
static int qcow2_resize(struct img *img, uint64_t size)
{
	struct qcow2 *q = img->priv;
	uint64_t per_l1e = q->cluster_size << q->l2_bits;
	uint64_t need = (size + per_l1e - 1) / per_l1e;
	uint8_t b[12];
	int r = 0;

	if (size > (1ull << 62) || need * 8 > QCOW2_MAX_L1_BYTES)
		return -EFBIG;
	pthread_mutex_lock(&q->lock);
	if (need > q->l1_size) {
		uint64_t bytes = need * 8, n = (bytes + q->cluster_size - 1) >> q->cluster_bits;
		uint64_t noff, *nl1 = calloc(need, 8);
		uint8_t *buf = calloc(1, n << q->cluster_bits);
		r = nl1 && buf ? q2_flush_locked(q) : -ENOMEM;
		if (r == 0)
			r = q2_alloc_contiguous(q, n, &noff);
		if (r == 0) {
			memcpy(nl1, q->l1, (size_t)q->l1_size * 8);
			for (uint64_t i = 0; i < need; i++)
				put_be64(buf + 8 * i, nl1[i]);
			r = q2_refcounts_durable(q);   /* the new table's refcounts */
			if (r == 0)
				r = full_pwrite(q->fd, buf, n << q->cluster_bits, noff);
			if (r == 0 && fdatasync(q->fd) < 0)
				r = -errno;
			put_be32(b, (uint32_t)need);
			put_be64(b + 4, noff);
			if (r == 0)
				r = q2_write_header_field(q, QCOW2_HDR_L1_SIZE, b, 12);
			if (r == 0 && fdatasync(q->fd) < 0)
				r = -errno;
			if (r < 0) {
				q2_free_now(q, noff, n);
			} else {
				uint64_t old_off = q->l1_offset;
				uint64_t old_n = ((uint64_t)q->l1_size * 8 + q->cluster_size - 1) >>
						 q->cluster_bits;
				free(q->l1);
				q->l1 = nl1;
				nl1 = NULL;
				q->l1_size = (uint32_t)need;
				q->l1_offset = noff;
				if (old_n)
					q2_free_now(q, old_off, old_n);
			}
		}
		free(nl1);
		free(buf);
	}
	if (r == 0) {
		put_be64(b, size);
		r = q2_write_header_field(q, QCOW2_HDR_SIZE, b, 8);
		if (r == 0 && fdatasync(q->fd) < 0)
			r = -errno;
	}
	pthread_mutex_unlock(&q->lock);
	return r;
}

static void qcow2_info(struct img *img, struct img_info *info)
{
	struct qcow2 *q = img->priv;

	info->cluster_size = (uint32_t)q->cluster_size;
	info->version = q->version;
	info->compression = "zlib";
	info->dirty = q->dirty_bit;
	info->corrupt = q->corrupt_bit;
	info->refcount_bits = 1u << q->refcount_order;
}

const struct img_driver qcow2_driver = {
	.name = "qcow2",
	.probe = qcow2_probe,
	.open = qcow2_open,
	.close = qcow2_close,
	.preadv = qcow2_preadv,
	.pwritev = qcow2_pwritev,
	.flush = qcow2_flush,
	.discard = qcow2_discard,
	.write_zeroes = qcow2_write_zeroes,
	.block_status = qcow2_block_status,
	.check = qcow2_check,
	.info = qcow2_info,
	.resize = qcow2_resize,
};
