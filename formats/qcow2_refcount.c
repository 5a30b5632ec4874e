/*
 * qcow2_refcount.c - reference counts: lookup and update through the
 * refcount-block cache, cluster allocation, deferred frees, and growth of
 * the refcount table.
 *
 * Allocation scans refcounts from a hint for a run of free clusters;
 * everything past the end of the file is free.  A missing refcount block
 * for table index t is created at the first cluster of the range it covers
 * (cluster t << rb_bits): no block means every cluster of the range has
 * refcount 0, so that cluster is free and the block can count itself.  When
 * the table itself is too small, a new, larger table is written past the
 * end of the file together with the refcount blocks that cover it, made
 * durable, and then switched to with one header write (offset and size are
 * adjacent), after which the old table is freed.
 *
 * All functions need q->lock.
 */
#include "formats/qcow2_int.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/endian.h"

bool q2_is_fixed_meta(const struct qcow2 *q, uint64_t cluster)
{
	uint64_t l1_first = q->l1_offset >> q->cluster_bits;
	uint64_t l1_n = ((uint64_t)q->l1_size * 8 + q->cluster_size - 1) >> q->cluster_bits;
	uint64_t rt_first = q->reft_offset >> q->cluster_bits;

	if (cluster == 0)
		return true;
	if (q->l1_size && cluster >= l1_first && cluster < l1_first + l1_n)
		return true;
	return cluster >= rt_first && cluster < rt_first + q->reft_clusters;
}

/* The cached refcount block holding cluster's count, or *blk = NULL. */
static int block_of(struct qcow2 *q, uint64_t cluster, uint8_t **blk)
{
	uint64_t t = cluster >> q->rb_bits;

	*blk = NULL;
	if (t >= q->reft_entries || q->reft[t] == 0)
		return 0;
	return qcache_get(q, &q->rb_cache, q->reft[t], false, blk);
}

int q2_refcount_get(struct qcow2 *q, uint64_t cluster, uint64_t *val)
{
	uint8_t *blk;
	int r = block_of(q, cluster, &blk);

	if (r < 0)
		return r;
	*val = blk ? qcow2_refblock_get(blk, cluster & ((1ull << q->rb_bits) - 1),
					q->refcount_order)
		   : 0;
	return 0;
}

int q2_refcount_set(struct qcow2 *q, uint64_t cluster, uint64_t val)
{
	uint8_t *blk;
	int r = block_of(q, cluster, &blk);

	if (r < 0)
		return r;
	if (!blk) {
		img_log_bad(q->img, "no refcount block for cluster %llu",
			    (unsigned long long)cluster);
		return -EIO;
	}
	if (val > qcow2_refcount_max(q->refcount_order)) {
		img_log_bad(q->img, "refcount of cluster %llu would overflow %u bits",
			    (unsigned long long)cluster, 1u << q->refcount_order);
		return -EIO;
	}
	qcow2_refblock_set(blk, cluster & ((1ull << q->rb_bits) - 1), q->refcount_order, val);
	qcache_mark_dirty(q, &q->rb_cache, q->reft[cluster >> q->rb_bits]);
	return 0;
}

static void reft_mark_dirty(struct qcow2 *q, uint64_t t)
{
	if (q->reft_dirty_lo >= q->reft_dirty_hi) {
		q->reft_dirty_lo = t;
		q->reft_dirty_hi = t + 1;
		return;
	}
	if (t < q->reft_dirty_lo)
		q->reft_dirty_lo = t;
	if (t + 1 > q->reft_dirty_hi)
		q->reft_dirty_hi = t + 1;
}

static uint64_t end_cluster(const struct qcow2 *q)
{
	return (q->file_end + q->cluster_size - 1) >> q->cluster_bits;
}

static void extend_file_end(struct qcow2 *q, uint64_t cluster_after)
{
	uint64_t e = cluster_after << q->cluster_bits;
	if (e > q->file_end)
		q->file_end = e;
}

/* Make the refcount table cover index t_need (see the top of the file). */
static int grow_reftable(struct qcow2 *q, uint64_t t_need)
{
	uint64_t per_cl = q->cluster_size / 8, rb_mask = (1ull << q->rb_bits) - 1;
	uint64_t want = q->reft_entries * 2 > t_need + 1 ? q->reft_entries * 2 : t_need + 1;
	uint64_t A = end_cluster(q), B = 0, C = 0, t_lo, t_hi;
	uint64_t *nt = NULL, *blocks = NULL;
	uint8_t *buf = NULL, hdr[12];
	int r, iter;

	for (iter = 0; iter < 64; iter++) {
		uint64_t nb = 0;
		C = (want + per_cl - 1) / per_cl;
		t_lo = A >> q->rb_bits;
		t_hi = (A + C + B - 1) >> q->rb_bits;
		if (t_hi >= want) {
			want = t_hi + 1;
			continue;
		}
		for (uint64_t t = t_lo; t <= t_hi; t++)
			if (t >= q->reft_entries || q->reft[t] == 0)
				nb++;
		if (nb == B)
			break;
		B = nb;
	}
	if (iter == 64 || C * q->cluster_size > QCOW2_MAX_REFTABLE_BYTES) {
		img_log_bad(q->img, "refcount table would exceed %u bytes; image too large",
			    QCOW2_MAX_REFTABLE_BYTES);
		return -ENOSPC;
	}
	nt = calloc(C * per_cl, sizeof(uint64_t));
	blocks = calloc(B ? B : 1, sizeof(uint64_t));
	buf = malloc(C * q->cluster_size > q->cluster_size ? C * q->cluster_size : q->cluster_size);
	r = -ENOMEM;
	if (!nt || !blocks || !buf)
		goto out;
	memcpy(nt, q->reft, q->reft_entries * sizeof(uint64_t));

	/* new refcount blocks for uncovered ranges, each counting the area
	 * clusters of its range; existing blocks are updated in the cache */
	uint64_t nb = 0, area_end = A + C + B;
	for (uint64_t t = t_lo; t <= t_hi; t++) {
		if (t < q->reft_entries && q->reft[t] != 0)
			continue;
		blocks[nb] = A + C + nb;
		nt[t] = blocks[nb] << q->cluster_bits;
		memset(buf, 0, q->cluster_size);
		for (uint64_t x = A; x < area_end; x++)
			if (x >> q->rb_bits == t)
				qcow2_refblock_set(buf, x & rb_mask, q->refcount_order, 1);
		qcache_drop(&q->rb_cache, nt[t]);
		r = full_pwrite(q->fd, buf, q->cluster_size, nt[t]);
		if (r < 0)
			goto out;
		nb++;
	}
	for (uint64_t x = A; x < area_end; x++) {
		uint64_t t = x >> q->rb_bits;
		if (t < q->reft_entries && q->reft[t] != 0) {
			r = q2_refcount_set(q, x, 1);
			if (r < 0)
				goto out;
		}
	}
	r = qcache_writeback(q, &q->rb_cache);
	if (r < 0)
		goto out;
	for (uint64_t i = 0; i < C * per_cl; i++)
		put_be64(buf + 8 * i, nt[i]);
	r = full_pwrite(q->fd, buf, C * q->cluster_size, A << q->cluster_bits);
	if (r < 0)
		goto out;
	if (fdatasync(q->fd) < 0) {
		r = -errno;
		goto out;
	}
	put_be64(hdr, A << q->cluster_bits);
	put_be32(hdr + 8, (uint32_t)C);
	r = q2_write_header_field(q, QCOW2_HDR_REFCOUNT_TABLE_OFFSET, hdr, sizeof(hdr));
	if (r < 0)
		goto out;
	if (fdatasync(q->fd) < 0) {
		r = -errno;
		goto out;
	}

	/* switched: the old table is garbage now */
	uint64_t old_off = q->reft_offset, old_n = q->reft_clusters;
	free(q->reft);
	q->reft = nt;
	nt = NULL;
	q->reft_entries = C * per_cl;
	q->reft_clusters = (uint32_t)C;
	q->reft_offset = A << q->cluster_bits;
	q->reft_dirty_lo = q->reft_dirty_hi = 0;
	extend_file_end(q, area_end);
	q2_free_now(q, old_off, old_n);
	r = 0;
out:
	free(nt);
	free(blocks);
	free(buf);
	return r;
}

/* Make sure cluster has a refcount block.  1: the layout changed (the
 * caller must look for free clusters again), 0: nothing to do. */
static int ensure_refblock(struct qcow2 *q, uint64_t cluster)
{
	uint64_t t = cluster >> q->rb_bits, b = t << q->rb_bits;
	uint8_t *blk;
	int r;

	if (t >= q->reft_entries) {
		r = grow_reftable(q, t);
		return r < 0 ? r : 1;
	}
	if (q->reft[t] != 0)
		return 0;
	if (q2_is_fixed_meta(q, b)) {
		img_log_bad(q->img, "refcount table entry %llu is empty but covers metadata",
			    (unsigned long long)t);
		return -EIO;
	}
	r = qcache_get(q, &q->rb_cache, b << q->cluster_bits, true, &blk);
	if (r < 0)
		return r;
	qcow2_refblock_set(blk, 0, q->refcount_order, 1);   /* counts itself */
	q->reft[t] = b << q->cluster_bits;
	reft_mark_dirty(q, t);
	extend_file_end(q, b + 1);
	return 1;
}

/* The first run of free clusters at or after cluster from, up to n long;
 * with whole, exactly n long (shorter holes are skipped). */
static int find_free_run(struct qcow2 *q, uint64_t from, uint64_t n, bool whole,
			 uint64_t *start, uint64_t *len)
{
	uint64_t end = end_cluster(q), run = 0, rs = from, v;
	int r;

	for (uint64_t c = from;; c++) {
		if (c >= end) {
			/* past the end of the file, clusters without a refcount
			 * block are free (a hostile or leaky image may count
			 * some that have one: those are scanned) */
			uint64_t t = c >> q->rb_bits;
			if (t >= q->reft_entries || q->reft[t] == 0) {
				*start = run ? rs : c;
				*len = n;
				return 0;
			}
		}
		v = 1;
		if (!q2_is_fixed_meta(q, c)) {
			r = q2_refcount_get(q, c, &v);
			if (r < 0)
				return r;
		}
		if (v != 0) {
			if (run && !whole) {
				*start = rs;
				*len = run;
				return 0;
			}
			run = 0;
			continue;
		}
		if (run == 0)
			rs = c;
		if (++run == n) {
			*start = rs;
			*len = n;
			return 0;
		}
	}
}

static int alloc_run(struct qcow2 *q, uint64_t n, bool whole, uint64_t *host, uint64_t *got)
{
	uint64_t from, start, len, v;
	int r;

	if (q->free_hint == 0)
		q->free_hint = 1;
	from = q->free_hint;
	for (int attempt = 0; attempt < 4096; attempt++) {
		bool again = false;
		r = find_free_run(q, from, n, whole, &start, &len);
		if (r < 0)
			return r;
		if (start + len > (QCOW2_MAX_HOST_OFFSET >> q->cluster_bits))
			return -ENOSPC;
		for (uint64_t i = 0; i < len && !again; i++) {
			r = ensure_refblock(q, start + i);
			if (r < 0)
				return r;
			again = r > 0;
		}
		/* a hostile image may count clusters past its end: re-check,
		 * and keep the free prefix of the run (or, for a whole run,
		 * look again after the cluster in use) */
		for (uint64_t i = 0; i < len && !again; i++) {
			r = q2_refcount_get(q, start + i, &v);
			if (r < 0)
				return r;
			if (v == 0)
				continue;
			if (i == 0 || whole) {
				from = start + i + 1;
				if (!whole)
					q->free_hint = from;
				again = true;
			} else {
				len = i;
			}
		}
		if (again)
			continue;
		for (uint64_t i = 0; i < len; i++) {
			r = q2_refcount_set(q, start + i, 1);
			if (r < 0)
				return r;
		}
		/* a whole run may lie past free holes: the hint stays on them */
		if (!whole || start == q->free_hint)
			q->free_hint = start + len;
		extend_file_end(q, start + len);
		*host = start << q->cluster_bits;
		*got = len;
		return 0;
	}
	img_log_bad(q->img, "cannot find free clusters (refcount metadata inconsistent?)");
	return -EIO;
}

int q2_alloc_clusters(struct qcow2 *q, uint64_t n, uint64_t *host, uint64_t *got)
{
	return alloc_run(q, n, false, host, got);
}

int q2_alloc_contiguous(struct qcow2 *q, uint64_t n, uint64_t *host)
{
	uint64_t got;

	return alloc_run(q, n, true, host, &got);
}

void q2_free_now(struct qcow2 *q, uint64_t host, uint64_t n)
{
	struct q2_free f = { .off = host, .len = n << q->cluster_bits };
	q2_apply_frees(q, &f, 1);
}

void q2_queue_free_l2e(struct qcow2 *q, uint64_t l2e)
{
	struct q2_free f;

	if (l2e & QCOW2_OFLAG_COMPRESSED) {
		uint64_t off, nbytes;
		qcow2_compressed_decode(l2e, q->cluster_bits, &off, &nbytes);
		/* the sectors the descriptor spans, as QEMU counts them */
		f.off = off & ~(uint64_t)(QCOW2_COMPRESSED_SECTOR_SIZE - 1);
		f.len = nbytes + off % QCOW2_COMPRESSED_SECTOR_SIZE;
	} else {
		f.off = l2e & QCOW2_L2E_OFFSET_MASK;
		f.len = q->cluster_size;
		if (f.off == 0)
			return;   /* unallocated or a plain zero cluster */
	}
	if (q->nfrees == q->frees_cap) {
		size_t cap = q->frees_cap ? q->frees_cap * 2 : 256;
		struct q2_free *nf = cap <= (1u << 22) ? realloc(q->frees, cap * sizeof(*nf)) : NULL;
		if (!nf) {
			/* the cluster stays allocated: a leak, never a corruption */
			img_log_bad(q->img, "cannot queue the free of 0x%llx (leaked)",
				    (unsigned long long)f.off);
			return;
		}
		q->frees = nf;
		q->frees_cap = cap;
	}
	q->frees[q->nfrees++] = f;
	if (q->nfrees >= Q2_FREES_SOFT_MAX)
		atomic_store(&q->frees_pressure, true);
}

/* Give freed space back to the file system, one call per run of clusters. */
static void punch(struct qcow2 *q, uint64_t first, uint64_t n)
{
	if (n)
		(void)fallocate(q->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				(off_t)(first << q->cluster_bits), (off_t)(n << q->cluster_bits));
}

void q2_apply_frees(struct qcow2 *q, struct q2_free *f, size_t n)
{
	uint64_t run_first = 0, run_n = 0;

	for (size_t i = 0; i < n; i++) {
		if (f[i].len == 0)
			continue;
		uint64_t first = f[i].off >> q->cluster_bits;
		uint64_t last = (f[i].off + f[i].len - 1) >> q->cluster_bits;
		for (uint64_t c = first; c <= last; c++) {
			uint64_t v;
			if (q2_refcount_get(q, c, &v) < 0 || v == 0) {
				img_log_bad(q->img, "freeing cluster %llu with refcount 0",
					    (unsigned long long)c);
				continue;
			}
			if (q2_refcount_set(q, c, v - 1) < 0 || v != 1)
				continue;
			if (c < q->free_hint)
				q->free_hint = c;
			/* the data is unreachable now */
			if (run_n && c == run_first + run_n) {
				run_n++;
			} else {
				punch(q, run_first, run_n);
				run_first = c;
				run_n = 1;
			}
		}
	}
	punch(q, run_first, run_n);
}

int q2_refcounts_durable(struct qcow2 *q)
{
	int wrote = qcache_writeback(q, &q->rb_cache), r;

	if (wrote < 0)
		return wrote;
	if (q->reft_dirty_lo < q->reft_dirty_hi) {
		uint64_t lo = q->reft_dirty_lo, hi = q->reft_dirty_hi;
		uint8_t *buf = malloc((hi - lo) * 8);
		if (!buf)
			return -ENOMEM;
		/* the blocks must be durable before the table points at them */
		if (wrote && fdatasync(q->fd) < 0) {
			free(buf);
			return -errno;
		}
		for (uint64_t t = lo; t < hi; t++)
			put_be64(buf + 8 * (t - lo), q->reft[t]);
		r = full_pwrite(q->fd, buf, (hi - lo) * 8, q->reft_offset + lo * 8);
		free(buf);
		if (r < 0)
			return r;
		q->reft_dirty_lo = q->reft_dirty_hi = 0;
	}
	return fdatasync(q->fd) < 0 ? -errno : 0;
}
