/*
 * qcow2_repair.c - rebuilding the refcount structure from the references.
 *
 * After a crash of a writer using lazy refcounts (the dirty bit) the stored
 * refcounts may be lower than the references, and refcount blocks may be
 * missing; the normal allocator, which trusts them, could then hand out a
 * cluster in use.  qcow2_check counts every reference; this file writes a
 * whole new refcount table and refcount blocks that hold exactly those
 * counts, past the end of the file where nothing lives, and switches to
 * them the way grow_reftable does:
 *
 *   1. new blocks and table written and made durable (nothing points to
 *      them yet: a crash here leaves the old, still dirty image);
 *   2. one header write of the adjacent table offset and size fields, made
 *      durable (the switch);
 *   3. the dirty and corrupt bits cleared, made durable.
 *
 * The old table and blocks are then referenced by nothing: free space with
 * refcount 0, reused by later allocations.  Every cluster of the new range
 * gets a block, which keeps the layout computation a simple fixed point.
 */
#include "formats/qcow2_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/endian.h"
#include "util/log.h"

struct layout {
	uint64_t end;        /* clusters in the file before the rebuild */
	uint64_t table;      /* first cluster of the new table */
	uint64_t table_n;    /* its clusters */
	uint64_t blocks;     /* first cluster of the new blocks */
	uint64_t blocks_n;   /* one per rb_entries clusters of [0, total) */
	uint64_t total;      /* clusters once the new structure is written */
};

static uint64_t div_up(uint64_t a, uint64_t b)
{
	return a / b + (a % b != 0);
}

/* Size the new structure: the blocks must cover the file, the table and
 * the blocks themselves.  Each round only grows; a few rounds settle it. */
static int plan_layout(const struct qcow2 *q, uint64_t end, struct layout *l)
{
	uint64_t per_block = 1ull << q->rb_bits, per_cl = q->cluster_size / 8;
	uint64_t t = 0, b = 0;

	for (int round = 0; round < 16; round++) {
		uint64_t nb = div_up(end + t + b, per_block);
		uint64_t nt = div_up(nb, per_cl);
		if (nb == b && nt == t) {
			if (t * q->cluster_size > QCOW2_MAX_REFTABLE_BYTES)
				return -EFBIG;
			*l = (struct layout){ .end = end, .table = end, .table_n = t,
					      .blocks = end + t, .blocks_n = b,
					      .total = end + t + b };
			return 0;
		}
		b = nb;
		t = nt;
	}
	return -EFBIG;
}

/* The refcount the new structure gives cluster c. */
static uint64_t new_refcount(const struct layout *l, const uint16_t *refs, uint64_t c)
{
	if (c < l->end)
		return refs[c];
	return c < l->total ? 1 : 0;
}

/* Write new refcount block i (covering clusters [i * per_block, ...)). */
static int write_block(struct qcow2 *q, const struct layout *l, const uint16_t *refs,
		       uint64_t i, uint8_t *buf)
{
	uint64_t per_block = 1ull << q->rb_bits, max = qcow2_refcount_max(q->refcount_order);

	memset(buf, 0, q->cluster_size);
	for (uint64_t j = 0; j < per_block; j++) {
		uint64_t c = i * per_block + j, v = new_refcount(l, refs, c);
		if (v > max || v == UINT16_MAX) {
			log_err("%s: cluster %" PRIu64 " has %" PRIu64 "%s references, more than "
				"%u-bit refcounts hold: cannot repair", q->img->path, c, v,
				v == UINT16_MAX ? " or more" : "", 1u << q->refcount_order);
			return -EOVERFLOW;
		}
		qcow2_refblock_set(buf, j, q->refcount_order, v);
	}
	return full_pwrite(q->fd, buf, q->cluster_size, (l->blocks + i) * q->cluster_size);
}

/* Steps 1 and 2: blocks, table, fdatasync, header switch, fdatasync.
 * Fills table (host order) with the new entries. */
static int write_structure(struct qcow2 *q, const struct layout *l, const uint16_t *refs,
			   uint64_t *table)
{
	uint64_t per_cl = q->cluster_size / 8;
	uint8_t *buf = malloc(q->cluster_size), hdr[12];
	int r = buf ? 0 : -ENOMEM;

	for (uint64_t i = 0; r == 0 && i < l->blocks_n; i++) {
		table[i] = (l->blocks + i) * q->cluster_size;
		r = write_block(q, l, refs, i, buf);
	}
	for (uint64_t k = 0; r == 0 && k < l->table_n; k++) {
		memset(buf, 0, q->cluster_size);
		for (uint64_t e = 0; e < per_cl && k * per_cl + e < l->blocks_n; e++)
			put_be64(buf + 8 * e, table[k * per_cl + e]);
		r = full_pwrite(q->fd, buf, q->cluster_size, (l->table + k) * q->cluster_size);
	}
	free(buf);
	if (r == 0 && fdatasync(q->fd) < 0)
		r = -errno;
	if (r < 0)
		return r;
	/* the switch: offset (u64 at 48) and clusters (u32 at 56) in one write */
	put_be64(hdr, l->table * q->cluster_size);
	put_be32(hdr + 8, (uint32_t)l->table_n);
	r = q2_write_header_field(q, QCOW2_HDR_REFCOUNT_TABLE_OFFSET, hdr, sizeof(hdr));
	if (r == 0 && fdatasync(q->fd) < 0)
		r = -errno;
	return r;
}

/* Step 3, v3 only (v2 headers have no feature bits). */
int q2_clear_repair_bits(struct qcow2 *q)
{
	uint8_t v[8];
	uint64_t incompat = q->incompat & ~(QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT);
	int r = 0;

	if (q->version >= 3 && incompat != q->incompat) {
		put_be64(v, incompat);
		r = q2_write_header_field(q, QCOW2_HDR_INCOMPAT_FEATURES, v, sizeof(v));
		if (r == 0 && fdatasync(q->fd) < 0)
			r = -errno;
	}
	if (r == 0) {
		q->incompat = incompat;
		q->dirty_bit = q->corrupt_bit = false;
	}
	return r;
}

/* Forget the old structure in memory and use the new one. */
static void adopt(struct qcow2 *q, const struct layout *l, uint64_t *table)
{
	for (uint64_t t = 0; t < q->reft_entries; t++)
		if (q->reft[t])
			qcache_drop(&q->rb_cache, q->reft[t]);
	free(q->reft);
	q->reft = table;
	q->reft_offset = l->table * q->cluster_size;
	q->reft_clusters = (uint32_t)l->table_n;
	q->reft_entries = l->table_n * (q->cluster_size / 8);
	q->reft_dirty_lo = q->reft_dirty_hi = 0;
	if (l->total * q->cluster_size > q->file_end)
		q->file_end = l->total * q->cluster_size;
	q->free_hint = 0;
}

/* The old table and blocks lose the references check counted for them. */
static void unref_old(const struct qcow2 *q, uint16_t *refs, uint64_t nclusters)
{
	uint64_t first = q->reft_offset / q->cluster_size;

	for (uint64_t c = first; c < first + q->reft_clusters && c < nclusters; c++)
		if (refs[c] && refs[c] != UINT16_MAX)
			refs[c]--;
	for (uint64_t t = 0; t < q->reft_entries; t++) {
		uint64_t c = q->reft[t] / q->cluster_size;
		if (q->reft[t] && c < nclusters && refs[c] && refs[c] != UINT16_MAX)
			refs[c]--;
	}
}

int q2_rebuild_refcounts(struct qcow2 *q, uint16_t *refs, uint64_t nclusters)
{
	struct layout l;
	uint64_t *table;
	int r;

	unref_old(q, refs, nclusters);
	r = plan_layout(q, nclusters, &l);
	if (r < 0) {
		log_err("%s: the refcount structure for %" PRIu64 " clusters is too large",
			q->img->path, nclusters);
		return r;
	}
	table = calloc(l.table_n * (q->cluster_size / 8), sizeof(uint64_t));
	if (!table)
		return -ENOMEM;
	r = write_structure(q, &l, refs, table);
	if (r < 0) {
		free(table);
		return r;
	}
	adopt(q, &l, table);
	log_info("%s: refcounts rebuilt: %" PRIu64 " refcount blocks and a %" PRIu64
		 "-cluster table at cluster %" PRIu64, q->img->path, l.blocks_n, l.table_n,
		 l.table);
	return q2_clear_repair_bits(q);
}
