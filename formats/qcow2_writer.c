/* qcow2_writer.c - sequential qcow2 writer for convert; see qcow2_writer.h. */
#include "qcow2_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "driver.h"
#include "image_lock.h"
#include "qcow2.h"
#include "util/endian.h"

#define QW_WBUF_SIZE  (1u << 20)     /* write-behind buffer for appends */
#define QW_ZLIB_LEVEL    4           /* see qcow2_compressor_new() */
#define QW_ZLIB_MEMLEVEL 8

struct qcow2_writer {
	int fd;
	struct qcow2_create_opts o;
	uint64_t cs;             /* cluster size */
	uint64_t l2_entries;

	uint64_t l1_offset;
	uint64_t l1_size;
	uint64_t *l1;            /* host order */

	uint64_t *l2;            /* current L2 table, host order */
	uint64_t l2_index;       /* which L1 slot it belongs to */
	bool l2_loaded;

	bool started;
	uint64_t last_index;     /* last guest cluster stored */

	uint64_t eof;            /* next free cluster-aligned host offset */
	uint64_t cpos;           /* end of packed compressed data inside a
	                          * partly used cluster, or 0 */
	uint32_t *ref;           /* references per host cluster */
	uint64_t ref_cap;
	uint64_t ref_max;        /* largest refcount the image can store */

	uint8_t *wbuf;           /* pending bytes for [wbuf_off, +wbuf_len) */
	uint64_t wbuf_off;
	size_t wbuf_len;
	int error;               /* first write error, sticky */
};

static int wbuf_flush(struct qcow2_writer *w)
{
	if (w->wbuf_len) {
		int r = full_pwrite(w->fd, w->wbuf, w->wbuf_len, w->wbuf_off);
		w->wbuf_len = 0;
		if (r < 0 && !w->error)
			w->error = r;
	}
	return w->error;
}

/* Write through the buffer: contiguous small writes are merged. */
static int out_write(struct qcow2_writer *w, const void *data, size_t len, uint64_t off)
{
	if (w->error)
		return w->error;
	if (w->wbuf_len && off == w->wbuf_off + w->wbuf_len &&
	    w->wbuf_len + len <= QW_WBUF_SIZE) {
		memcpy(w->wbuf + w->wbuf_len, data, len);
		w->wbuf_len += len;
		return 0;
	}
	if (wbuf_flush(w))
		return w->error;
	if (len >= QW_WBUF_SIZE) {
		int r = full_pwrite(w->fd, data, len, off);
		if (r < 0)
			w->error = r;
		return r;
	}
	memcpy(w->wbuf, data, len);
	w->wbuf_off = off;
	w->wbuf_len = len;
	return 0;
}

static int ref_inc(struct qcow2_writer *w, uint64_t cluster)
{
	if (cluster >= w->ref_cap) {
		uint64_t cap = w->ref_cap ? w->ref_cap : 1024;
		while (cap <= cluster)
			cap *= 2;
		uint32_t *n = realloc(w->ref, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		memset(n + w->ref_cap, 0, (cap - w->ref_cap) * sizeof(*n));
		w->ref = n;
		w->ref_cap = cap;
	}
	w->ref[cluster]++;
	return 0;
}

static uint64_t ref_get(const struct qcow2_writer *w, uint64_t cluster)
{
	return cluster < w->ref_cap ? w->ref[cluster] : 0;
}

/* A fresh cluster at the end of the file. */
static int alloc_cluster(struct qcow2_writer *w, uint64_t *off)
{
	int r = ref_inc(w, w->eof / w->cs);
	if (r < 0)
		return r;
	*off = w->eof;
	w->eof += w->cs;
	return 0;
}

/*
 * len bytes for compressed data: right after the previous compressed
 * cluster when they fit in its host cluster (or that one is the last
 * cluster of the file, so the data may run on into a new one), else at the
 * end of the file.  Every host cluster touched gets one reference, which is
 * what `qemu-img check` counts.
 */
static int alloc_bytes(struct qcow2_writer *w, size_t len, uint64_t *off)
{
	uint64_t start = w->eof;

	if (w->cpos && ref_get(w, w->cpos / w->cs) < w->ref_max) {
		uint64_t cluster_end = (w->cpos / w->cs + 1) * w->cs;
		if (w->cpos + len <= cluster_end || cluster_end == w->eof)
			start = w->cpos;
	}
	uint64_t end = start + len;
	for (uint64_t c = start / w->cs; c <= (end - 1) / w->cs; c++) {
		int r = ref_inc(w, c);
		if (r < 0)
			return r;
	}
	if (end > w->eof)
		w->eof = (end + w->cs - 1) / w->cs * w->cs;
	w->cpos = end % w->cs ? end : 0;
	*off = start;
	return 0;
}

static int flush_l2(struct qcow2_writer *w)
{
	uint64_t off;
	int r;

	if (!w->l2_loaded)
		return 0;
	r = alloc_cluster(w, &off);
	if (r < 0)
		return r;
	/* convert in place to big endian, write, and forget the table */
	for (uint64_t i = 0; i < w->l2_entries; i++)
		put_be64(&w->l2[i], w->l2[i]);
	r = out_write(w, w->l2, w->cs, off);
	if (r < 0)
		return r;
	w->l1[w->l2_index] = off | QCOW2_OFLAG_COPIED;
	w->l2_loaded = false;
	return 0;
}

int qcow2_writer_open(const char *path, const struct qcow2_create_opts *o,
		      struct qcow2_writer **out, char *err, size_t errlen)
{
	char why[256];
	int r = qcow2_create_opts_check(o, why, sizeof(why));
	if (r < 0) {
		snprintf(err, errlen, "%s: %s", path, why);
		return r;
	}
	if (o->backing_file) {
		snprintf(err, errlen, "%s: the sequential writer cannot add a backing file", path);
		return -EINVAL;
	}

	struct qcow2_writer *w = calloc(1, sizeof(*w));
	if (!w) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	w->fd = -1;
	w->o = *o;
	w->cs = 1ull << o->cluster_bits;
	w->l2_entries = w->cs / 8;
	w->l1_size = qcow2_l1_entries(o);
	w->ref_max = o->refcount_order >= 5 ? UINT32_MAX : qcow2_refcount_max(o->refcount_order);
	w->l1 = calloc(w->l1_size ? w->l1_size : 1, sizeof(uint64_t));
	w->l2 = malloc(w->cs);
	w->wbuf = malloc(QW_WBUF_SIZE);
	if (!w->l1 || !w->l2 || !w->wbuf) {
		snprintf(err, errlen, "%s: out of memory", path);
		qcow2_writer_abort(w);
		return -ENOMEM;
	}
	w->fd = img_create_open(path, err, errlen);
	if (w->fd < 0) {
		r = w->fd;
		w->fd = -1;
		qcow2_writer_abort(w);
		return r;
	}
	/* cluster 0: header (written last); then the L1 table */
	uint64_t l1_clusters = (w->l1_size * 8 + w->cs - 1) / w->cs;
	w->l1_offset = w->cs;
	w->eof = 0;
	for (uint64_t i = 0; i < 1 + l1_clusters; i++) {
		uint64_t off;
		r = alloc_cluster(w, &off);
		if (r < 0) {
			snprintf(err, errlen, "%s: out of memory", path);
			qcow2_writer_abort(w);
			return r;
		}
	}
	*out = w;
	return 0;
}

int qcow2_writer_put(struct qcow2_writer *w, uint64_t index, const void *data, size_t len,
		     bool compressed)
{
	uint64_t off, entry;
	int r;

	if (w->error)
		return w->error;
	if (index >= w->l1_size * w->l2_entries || (w->started && index <= w->last_index))
		return -EINVAL;
	if (compressed ? (len == 0 || len >= w->cs) : len != w->cs)
		return -EINVAL;

	uint64_t l2_index = index / w->l2_entries;
	if (w->l2_loaded && w->l2_index != l2_index) {
		r = flush_l2(w);
		if (r < 0)
			return r;
	}
	if (!w->l2_loaded) {
		memset(w->l2, 0, w->cs);
		w->l2_index = l2_index;
		w->l2_loaded = true;
	}

	if (compressed) {
		r = alloc_bytes(w, len, &off);
		if (r < 0)
			return r;
		if (off >= qcow2_coffset_mask(w->o.cluster_bits) ||
		    off >= QCOW2_MAX_HOST_OFFSET)
			return -EFBIG;
		entry = qcow2_compressed_encode(off, len, w->o.cluster_bits);
	} else {
		r = alloc_cluster(w, &off);
		if (r < 0)
			return r;
		entry = off | QCOW2_OFLAG_COPIED;
	}
	r = out_write(w, data, len, off);
	if (r < 0)
		return r;
	w->l2[index % w->l2_entries] = entry;
	w->started = true;
	w->last_index = index;
	return 0;
}

uint64_t qcow2_writer_file_size(const struct qcow2_writer *w)
{
	return w->eof;
}

/* Refcount blocks then the refcount table, at the end of the file. */
static int write_refcounts(struct qcow2_writer *w, struct qcow2_layout *l)
{
	uint64_t rb, rt, off;
	uint64_t per_block = (w->cs * 8) >> w->o.refcount_order;
	int r;

	qcow2_refcount_space(w->eof / w->cs, w->o.cluster_bits, w->o.refcount_order, &rb, &rt);
	uint64_t rb_off = w->eof;
	for (uint64_t i = 0; i < rb + rt; i++) {
		r = alloc_cluster(w, &off);
		if (r < 0)
			return r;
	}
	uint64_t total = w->eof / w->cs;
	uint8_t *buf = malloc(w->cs);
	if (!buf)
		return -ENOMEM;
	for (uint64_t b = 0; b < rb; b++) {
		memset(buf, 0, w->cs);
		for (uint64_t i = 0; i < per_block && b * per_block + i < total; i++)
			qcow2_refblock_set(buf, i, w->o.refcount_order, ref_get(w, b * per_block + i));
		r = out_write(w, buf, w->cs, rb_off + b * w->cs);
		if (r < 0)
			goto out;
	}
	uint64_t rt_off = rb_off + rb * w->cs;
	for (uint64_t t = 0; t < rt; t++) {
		memset(buf, 0, w->cs);
		for (uint64_t i = 0; i < w->cs / 8 && t * (w->cs / 8) + i < rb; i++)
			put_be64(buf + i * 8, rb_off + (t * (w->cs / 8) + i) * w->cs);
		r = out_write(w, buf, w->cs, rt_off + t * w->cs);
		if (r < 0)
			goto out;
	}
	l->refcount_table_offset = rt_off;
	l->refcount_table_clusters = (uint32_t)rt;
	r = 0;
out:
	free(buf);
	return r;
}

int qcow2_writer_finish(struct qcow2_writer *w, bool sync, char *err, size_t errlen)
{
	struct qcow2_layout l = { 0 };
	uint8_t *hdr = NULL;
	int r;

	r = flush_l2(w);
	if (r < 0)
		goto fail;
	/* L1 table, big endian, in its reserved clusters */
	for (uint64_t i = 0; i < w->l1_size; i++)
		put_be64(&w->l1[i], w->l1[i]);
	if (w->l1_size) {
		r = out_write(w, w->l1, w->l1_size * 8, w->l1_offset);
		if (r < 0)
			goto fail;
	}
	l.l1_offset = w->l1_offset;
	l.l1_size = (uint32_t)w->l1_size;
	r = write_refcounts(w, &l);
	if (r < 0)
		goto fail;
	r = wbuf_flush(w);
	if (r < 0)
		goto fail;
	/* Every cluster is written, but the last compressed data may end
	 * inside its cluster: size the file to whole clusters. */
	if (ftruncate(w->fd, (off_t)w->eof) < 0 || (sync && fdatasync(w->fd) < 0)) {
		r = -errno;
		goto fail;
	}
	hdr = malloc(w->cs);
	if (!hdr) {
		r = -ENOMEM;
		goto fail;
	}
	r = qcow2_header_build(hdr, &w->o, &l);
	if (r == 0)
		r = full_pwrite(w->fd, hdr, w->cs, 0);
	if (r == 0 && sync && fsync(w->fd) < 0)
		r = -errno;
	free(hdr);
	if (r < 0)
		goto fail;
	if (close(w->fd) < 0) {
		w->fd = -1;
		r = -errno;
		goto fail;
	}
	w->fd = -1;
	qcow2_writer_abort(w);
	return 0;
fail:
	snprintf(err, errlen, "writing the qcow2 image failed: %s", strerror(-r));
	qcow2_writer_abort(w);
	return r;
}

void qcow2_writer_abort(struct qcow2_writer *w)
{
	if (!w)
		return;
	if (w->fd >= 0)
		close(w->fd);
	free(w->l1);
	free(w->l2);
	free(w->ref);
	free(w->wbuf);
	free(w);
}

/* ---- compression ---- */

struct qcow2_compressor {
	z_stream z;
};

struct qcow2_compressor *qcow2_compressor_new(void)
{
	struct qcow2_compressor *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	/* The stream format QEMU writes and reads (block/qcow2-threads.c): raw
	 * deflate with a 4 KiB window (-12), which is all a reader depends on.
	 * The effort differs: QEMU uses level 6 with memLevel 9; level 4 with
	 * memLevel 8 (hash tables sized for a 4 KiB window) takes about a
	 * third less CPU for output about 1% larger on mixed system data. */
	if (deflateInit2(&c->z, QW_ZLIB_LEVEL, Z_DEFLATED, -12, QW_ZLIB_MEMLEVEL,
			 Z_DEFAULT_STRATEGY) != Z_OK) {
		free(c);
		return NULL;
	}
	return c;
}

void qcow2_compressor_free(struct qcow2_compressor *c)
{
	if (!c)
		return;
	deflateEnd(&c->z);
	free(c);
}

ssize_t qcow2_compress_cluster(struct qcow2_compressor *c, const void *in, size_t cs,
			       void *out)
{
	if (deflateReset(&c->z) != Z_OK)
		return -EIO;
	c->z.next_in = (Bytef *)(uintptr_t)in;
	c->z.avail_in = (uInt)cs;
	c->z.next_out = out;
	c->z.avail_out = (uInt)(cs - 1);
	int r = deflate(&c->z, Z_FINISH);
	if (r == Z_STREAM_END)
		return (ssize_t)(cs - 1 - c->z.avail_out);
	if (r == Z_OK || r == Z_BUF_ERROR)
		return 0; /* did not fit in cs - 1 bytes */
	return -EIO;
}
