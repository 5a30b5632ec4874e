/* qcow2_create.c - write an empty qcow2 image; see qcow2_create.h. */
#include "qcow2_create.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "driver.h"
#include "image_lock.h"
#include "qcow2.h"
#include "util/endian.h"


void qcow2_create_opts_default(struct qcow2_create_opts *o, uint64_t size)
{
	memset(o, 0, sizeof(*o));
	o->size = size;
	o->cluster_bits = 16;
	o->version = 3;
	o->refcount_order = 4;
}

uint64_t qcow2_l1_entries(const struct qcow2_create_opts *o)
{
	uint64_t cs = 1ull << o->cluster_bits;
	uint64_t clusters = o->size / cs + (o->size % cs != 0);
	uint64_t l2_entries = cs / 8;
	return clusters / l2_entries + (clusters % l2_entries != 0);
}

static size_t ext_len(size_t data_len)
{
	return 8 + ((data_len + 7) & ~(size_t)7);
}

int qcow2_create_opts_check(const struct qcow2_create_opts *o, char *err, size_t errlen)
{
	if (o->cluster_bits < 9 || o->cluster_bits > 21) {
		snprintf(err, errlen, "cluster size must be a power of two between 512 and 2M");
		return -EINVAL;
	}
	if (o->version != 2 && o->version != 3) {
		snprintf(err, errlen, "compat must be 0.10 (version 2) or 1.1 (version 3)");
		return -EINVAL;
	}
	if (o->refcount_order > 6) {
		snprintf(err, errlen, "refcount_bits must be a power of two from 1 to 64");
		return -EINVAL;
	}
	if (o->version == 2 && o->refcount_order != 4) {
		snprintf(err, errlen, "compat=0.10 images only support refcount_bits=16; "
			 "use compat=1.1 for other widths");
		return -EINVAL;
	}
	/* QEMU keeps offsets and sizes below 2^63 and the L1 table below 32 MiB. */
	if (o->size > (1ull << 62)) {
		snprintf(err, errlen, "size is too large (at most 4 EiB)");
		return -EINVAL;
	}
	if (qcow2_l1_entries(o) * 8 > QCOW2_MAX_L1_BYTES) {
		snprintf(err, errlen, "size %llu needs an L1 table larger than 32 MiB; "
			 "use a larger cluster_size", (unsigned long long)o->size);
		return -EINVAL;
	}
	if (o->backing_file) {
		size_t n = strlen(o->backing_file);
		if (n == 0 || n > QCOW2_BACKING_NAME_MAX) {
			snprintf(err, errlen, "backing file name must be 1 to %d bytes long",
				 QCOW2_BACKING_NAME_MAX);
			return -EINVAL;
		}
	}
	if (o->backing_format) {
		size_t n = strlen(o->backing_format);
		if (n == 0 || n > QCOW2_BACKING_FMT_MAX || !o->backing_file) {
			snprintf(err, errlen, "backing format must be a short name such as "
				 "raw or qcow2, given together with a backing file");
			return -EINVAL;
		}
	}
	/* Header, extensions and backing name must fit in cluster 0. */
	size_t need = o->version == 2 ? QCOW2_HDR_V2_LENGTH : QCOW2_HDR_V3_LENGTH;
	if (o->backing_format)
		need += ext_len(strlen(o->backing_format));
	need += 8; /* end of extensions */
	if (o->backing_file)
		need += strlen(o->backing_file);
	if (need > (1ull << o->cluster_bits)) {
		snprintf(err, errlen, "header and backing file name (%zu bytes) do not fit "
			 "in one %llu-byte cluster; use a larger cluster_size", need,
			 1ull << o->cluster_bits);
		return -EINVAL;
	}
	return 0;
}

int qcow2_header_build(uint8_t *buf, const struct qcow2_create_opts *o,
		       const struct qcow2_layout *l)
{
	size_t cs = (size_t)1 << o->cluster_bits;
	size_t pos = o->version == 2 ? QCOW2_HDR_V2_LENGTH : QCOW2_HDR_V3_LENGTH;

	memset(buf, 0, cs);
	put_be32(buf + QCOW2_HDR_MAGIC, QCOW2_MAGIC);
	put_be32(buf + QCOW2_HDR_VERSION, (uint32_t)o->version);
	put_be32(buf + QCOW2_HDR_CLUSTER_BITS, o->cluster_bits);
	put_be64(buf + QCOW2_HDR_SIZE, o->size);
	put_be32(buf + QCOW2_HDR_CRYPT_METHOD, QCOW2_CRYPT_NONE);
	put_be32(buf + QCOW2_HDR_L1_SIZE, l->l1_size);
	put_be64(buf + QCOW2_HDR_L1_TABLE_OFFSET, l->l1_offset);
	put_be64(buf + QCOW2_HDR_REFCOUNT_TABLE_OFFSET, l->refcount_table_offset);
	put_be32(buf + QCOW2_HDR_REFCOUNT_TABLE_CLUSTERS, l->refcount_table_clusters);
	/* no snapshots: nb_snapshots and snapshots_offset stay 0 */
	if (o->version == 3) {
		/* incompatible/compatible/autoclear features all clear */
		put_be32(buf + QCOW2_HDR_REFCOUNT_ORDER, o->refcount_order);
		put_be32(buf + QCOW2_HDR_HEADER_LENGTH, QCOW2_HDR_V3_LENGTH);
		buf[QCOW2_HDR_COMPRESSION_TYPE] = QCOW2_COMPRESSION_ZLIB;
	}
	if (o->backing_format) {
		size_t n = strlen(o->backing_format);
		if (pos + ext_len(n) + 8 > cs)
			return -EINVAL;
		put_be32(buf + pos, QCOW2_EXT_BACKING_FORMAT);
		put_be32(buf + pos + 4, (uint32_t)n);
		memcpy(buf + pos + 8, o->backing_format, n);
		pos += ext_len(n);
	}
	if (pos + 8 > cs)
		return -EINVAL;
	put_be32(buf + pos, QCOW2_EXT_END);
	put_be32(buf + pos + 4, 0);
	pos += 8;
	if (o->backing_file) {
		size_t n = strlen(o->backing_file);
		if (n > QCOW2_BACKING_NAME_MAX || pos + n > cs)
			return -EINVAL;
		memcpy(buf + pos, o->backing_file, n);
		put_be64(buf + QCOW2_HDR_BACKING_FILE_OFFSET, pos);
		put_be32(buf + QCOW2_HDR_BACKING_FILE_SIZE, (uint32_t)n);
	}
	return 0;
}

void qcow2_refcount_space(uint64_t clusters, unsigned cluster_bits, unsigned refcount_order,
			  uint64_t *blocks, uint64_t *table_clusters)
{
	uint64_t cs = 1ull << cluster_bits;
	uint64_t per_block = (cs * 8) >> refcount_order;
	uint64_t rb = 0, rt = 0;

	/* The refcount structures count themselves: grow until stable.  Each
	 * round only adds clusters, so this ends after a few iterations. */
	for (;;) {
		uint64_t total = clusters + rb + rt;
		uint64_t nrb = total / per_block + (total % per_block != 0);
		uint64_t nrt = (nrb * 8) / cs + ((nrb * 8) % cs != 0);
		if (nrb == rb && nrt == rt)
			break;
		rb = nrb;
		rt = nrt;
	}
	*blocks = rb;
	*table_clusters = rt;
}

/* Refcount blocks for metadata clusters 0..n-1 (all refcount 1). */
static int write_refblocks(int fd, const struct qcow2_create_opts *o, uint64_t rb_off,
			   uint64_t rb_count, uint64_t n, uint8_t *buf)
{
	uint64_t cs = 1ull << o->cluster_bits;
	uint64_t per_block = (cs * 8) >> o->refcount_order;

	for (uint64_t b = 0; b < rb_count; b++) {
		memset(buf, 0, cs);
		for (uint64_t i = 0; i < per_block && b * per_block + i < n; i++)
			qcow2_refblock_set(buf, i, o->refcount_order, 1);
		int r = full_pwrite(fd, buf, cs, rb_off + b * cs);
		if (r < 0)
			return r;
	}
	return 0;
}

static int write_image(int fd, const struct qcow2_create_opts *o, char *err, size_t errlen)
{
	uint64_t cs = 1ull << o->cluster_bits;
	uint64_t l1_entries = qcow2_l1_entries(o);
	uint64_t l1_clusters = (l1_entries * 8 + cs - 1) / cs;
	uint64_t rb, rt;
	struct qcow2_layout l;
	int r;

	/* cluster 0 header, then refcount table, refcount blocks, L1 table */
	qcow2_refcount_space(1 + l1_clusters, o->cluster_bits, o->refcount_order, &rb, &rt);
	if (rt * cs > QCOW2_MAX_REFTABLE_BYTES) {
		snprintf(err, errlen, "refcount table would be too large");
		return -EINVAL;
	}
	uint64_t total = 1 + rt + rb + l1_clusters;
	l.refcount_table_offset = cs;
	l.refcount_table_clusters = (uint32_t)rt;
	l.l1_offset = (1 + rt + rb) * cs;
	l.l1_size = (uint32_t)l1_entries;

	uint8_t *buf = calloc(1, cs);
	if (!buf) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	r = qcow2_header_build(buf, o, &l);
	if (r < 0) {
		snprintf(err, errlen, "header does not fit in one cluster");
		goto out;
	}
	/* The L1 table (and everything else) starts as zeros: size the file
	 * first, then write the non-zero clusters. */
	if (ftruncate(fd, (off_t)(total * cs)) < 0) {
		r = -errno;
		snprintf(err, errlen, "cannot size the file: %s", strerror(errno));
		goto out;
	}
	r = full_pwrite(fd, buf, cs, 0);
	if (r == 0) {
		/* refcount table: one entry per refcount block */
		uint64_t rb_off = (1 + rt) * cs;
		for (uint64_t t = 0; t < rt && r == 0; t++) {
			memset(buf, 0, cs);
			for (uint64_t i = 0; i < cs / 8 && t * (cs / 8) + i < rb; i++)
				put_be64(buf + i * 8, rb_off + (t * (cs / 8) + i) * cs);
			r = full_pwrite(fd, buf, cs, (1 + t) * cs);
		}
		if (r == 0)
			r = write_refblocks(fd, o, rb_off, rb, total, buf);
	}
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (r < 0)
		snprintf(err, errlen, "write failed: %s", strerror(-r));
out:
	free(buf);
	return r;
}

int qcow2_create(const char *path, const struct qcow2_create_opts *o, char *err, size_t errlen)
{
	char why[256];
	int r = qcow2_create_opts_check(o, why, sizeof(why));
	if (r < 0) {
		snprintf(err, errlen, "%s: %s", path, why);
		return r;
	}
	int fd = img_create_open(path, err, errlen);
	if (fd < 0)
		return fd;
	r = write_image(fd, o, why, sizeof(why));
	if (close(fd) < 0 && r == 0) {
		r = -errno;
		snprintf(why, sizeof(why), "close failed: %s", strerror(errno));
	}
	if (r < 0)
		snprintf(err, errlen, "%s: %s", path, why);
	return r;
}
