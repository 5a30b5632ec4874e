/*
 * qcow2_check.c - metadata consistency check with qemu-img check semantics.
 *
 * Every reference to a host cluster is counted: the header cluster, the
 * active L1 table and the L2 tables and data clusters it reaches, the
 * refcount table and blocks, the snapshot table and each snapshot's L1
 * table and what it reaches.  The counts are compared with the stored
 * refcounts: a stored refcount below the references is a corruption (the
 * cluster could be handed out twice), above is a leak (wasted space).
 * Entries with reserved bits, misaligned offsets, references past the end
 * of the file and wrong COPIED flags in the active tables are corruptions.
 * One log line per problem (capped).  With IMG_FIX_LEAKS, refcounts above
 * the references are lowered to match.  With IMG_FIX_ERRORS, when every
 * corruption found is a refcount one (too low, or a COPIED flag that
 * disagrees with a stale refcount) the whole refcount structure is rebuilt
 * from the counted references (qcow2_repair.c); other corruptions are
 * reported and nothing is written.
 *
 * Memory: one 16-bit counter per host cluster, refused beyond
 * CHECK_MAX_CLUSTERS clusters.
 */
#include "formats/qcow2_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/endian.h"

#define CHECK_MAX_CLUSTERS (1ull << 26)
#define CHECK_MAX_LINES 1000

struct ck {
	struct qcow2 *q;
	struct img_check_result *res;
	uint16_t *refs;
	uint64_t nclusters;
	unsigned lines;
	uint64_t refcount_errors;  /* the corruptions a rebuild repairs */
};

static void problem(struct ck *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(struct ck *k, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	if (k->lines++ >= CHECK_MAX_LINES) {
		if (k->lines == CHECK_MAX_LINES + 1)
			log_err("%s: more problems; not listing them", k->q->img->path);
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_err("%s: %s", k->q->img->path, msg);
}

/* Count one reference to every cluster overlapping [off, off+len). */
static void ref_range(struct ck *k, uint64_t off, uint64_t len, const char *what)
{
	struct qcow2 *q = k->q;

	if (len == 0)
		return;
	if (off >= QCOW2_MAX_HOST_OFFSET || len > QCOW2_MAX_HOST_OFFSET - off) {
		problem(k, "ERROR %s: invalid offset 0x%" PRIx64, what, off);
		k->res->corruptions++;
		return;
	}
	uint64_t first = off >> q->cluster_bits, last = (off + len - 1) >> q->cluster_bits;
	for (uint64_t c = first; c <= last; c++) {
		if (c >= k->nclusters) {
			problem(k, "ERROR %s: counting reference for region exceeding the end of "
				"the file (cluster %" PRIu64 ")", what, c);
			k->res->corruptions++;
			return;
		}
		if (k->refs[c] != UINT16_MAX)
			k->refs[c]++;
	}
}

static void check_copied(struct ck *k, uint64_t off, bool copied, const char *what)
{
	uint64_t rc;

	if (q2_refcount_get(k->q, off >> k->q->cluster_bits, &rc) < 0) {
		k->res->check_errors++;
		return;
	}
	if ((rc == 1) != copied) {
		problem(k, "ERROR OFLAG_COPIED %s: offset=0x%" PRIx64 " refcount=%" PRIu64, what, off,
			rc);
		k->res->corruptions++;
		k->refcount_errors++;
	}
}

static void walk_l2(struct ck *k, uint64_t l2off, bool active)
{
	struct qcow2 *q = k->q;
	uint64_t n = 1ull << q->l2_bits;
	uint8_t *l2;

	for (uint64_t i = 0; i < n; i++) {
		/* re-fetch: check_copied may not evict it, but be safe */
		if (qcache_get(q, &q->l2_cache, l2off, false, &l2) < 0) {
			problem(k, "cannot read L2 table at 0x%" PRIx64, l2off);
			k->res->check_errors++;
			return;
		}
		uint64_t e = get_be64(l2 + 8 * i);
		if (e == 0)
			continue;
		if (e & QCOW2_OFLAG_COMPRESSED) {
			uint64_t off, nbytes;
			if (e & QCOW2_OFLAG_COPIED) {
				problem(k, "ERROR compressed cluster with COPIED set: l2_entry=0x%"
					PRIx64, e);
				k->res->corruptions++;
			}
			qcow2_compressed_decode(e, q->cluster_bits, &off, &nbytes);
			ref_range(k, off & ~(uint64_t)(QCOW2_COMPRESSED_SECTOR_SIZE - 1),
				  nbytes + off % QCOW2_COMPRESSED_SECTOR_SIZE, "compressed cluster");
			if (active)
				k->res->allocated_clusters++;
			continue;
		}
		uint64_t off = e & QCOW2_L2E_OFFSET_MASK;
		if ((e & QCOW2_L2E_RESERVED_MASK) || ((e & QCOW2_OFLAG_ZERO) && q->version < 3)) {
			problem(k, "ERROR found L2 entry with reserved bits set: 0x%" PRIx64, e);
			k->res->corruptions++;
			continue;
		}
		if (off % q->cluster_size) {
			problem(k, "ERROR offset=0x%" PRIx64 ": Cluster is not properly aligned; "
				"L2 entry corrupted", off);
			k->res->corruptions++;
			continue;
		}
		if (off == 0) {
			if ((e & QCOW2_OFLAG_COPIED) && !(e & QCOW2_OFLAG_ZERO)) {
				problem(k, "ERROR L2 entry 0x%" PRIx64 " has offset 0 without a data "
					"file", e);
				k->res->corruptions++;
			}
			continue;
		}
		ref_range(k, off, q->cluster_size, "data cluster");
		if (active) {
			k->res->allocated_clusters++;
			check_copied(k, off, e & QCOW2_OFLAG_COPIED, "data cluster");
		}
	}
}

static void walk_l1(struct ck *k, const uint64_t *l1, uint64_t l1_size, bool active)
{
	struct qcow2 *q = k->q;

	for (uint64_t i = 0; i < l1_size; i++) {
		uint64_t e = l1[i], off = e & QCOW2_L1E_OFFSET_MASK;
		if (e == 0)
			continue;
		if (e & QCOW2_L1E_RESERVED_MASK) {
			problem(k, "ERROR found L1 entry with reserved bits set: 0x%" PRIx64, e);
			k->res->corruptions++;
			continue;
		}
		if (off == 0)
			continue;
		if (off % q->cluster_size || (off >> q->cluster_bits) >= k->nclusters) {
			problem(k, "ERROR L2 table offset 0x%" PRIx64 " is misaligned or past the end "
				"of the file", off);
			k->res->corruptions++;
			continue;
		}
		ref_range(k, off, q->cluster_size, "L2 table");
		if (active)
			check_copied(k, off, e & QCOW2_OFLAG_COPIED, "L2 table");
		walk_l2(k, off, active);
	}
}

static void walk_snapshots(struct ck *k)
{
	struct qcow2 *q = k->q;
	uint64_t pos = q->snapshots_offset, end = q->file_end;
	uint8_t h[QCOW2_SN_HDR_LEN];

	for (uint32_t s = 0; s < q->nb_snapshots; s++) {
		if (pos - q->snapshots_offset > QCOW2_MAX_SNAPSHOTS_BYTES ||
		    pos + QCOW2_SN_HDR_LEN > end ||
		    full_pread(q->fd, h, sizeof(h), pos) < 0) {
			problem(k, "ERROR snapshot table entry %u corrupted (outside the file)", s);
			k->res->corruptions++;
			return;
		}
		uint64_t l1off = get_be64(h + QCOW2_SN_L1_TABLE_OFFSET);
		uint32_t l1n = get_be32(h + QCOW2_SN_L1_SIZE);
		uint32_t extra = get_be32(h + QCOW2_SN_EXTRA_DATA_SIZE);
		uint64_t len = QCOW2_SN_HDR_LEN + (uint64_t)extra + get_be16(h + QCOW2_SN_ID_LEN) +
			       get_be16(h + QCOW2_SN_NAME_LEN);
		if (extra > QCOW2_MAX_SNAPSHOT_EXTRA || (uint64_t)l1n * 8 > QCOW2_MAX_L1_BYTES ||
		    l1off % q->cluster_size || l1off + (uint64_t)l1n * 8 > end ||
		    (l1off == 0 && l1n)) {
			problem(k, "ERROR snapshot table entry %u corrupted (L1 table offset 0x%"
				PRIx64 ", size %u)", s, l1off, l1n);
			k->res->corruptions++;
			return;
		}
		pos += (len + 7) & ~7ull;
		if (l1n == 0)
			continue;
		ref_range(k, l1off, (uint64_t)l1n * 8, "snapshot L1 table");
		uint64_t *l1 = malloc((size_t)l1n * 8);
		if (!l1 || full_pread(q->fd, l1, (size_t)l1n * 8, l1off) < 0) {
			free(l1);
			k->res->check_errors++;
			continue;
		}
		for (uint32_t i = 0; i < l1n; i++)
			l1[i] = get_be64(&l1[i]);
		walk_l1(k, l1, l1n, false);
		free(l1);
	}
	ref_range(k, q->snapshots_offset, pos - q->snapshots_offset, "snapshot table");
}

/* Persistent bitmaps: the directory, each bitmap table and its data
 * clusters.  Only while the autoclear bit says they are consistent (after
 * a writer without bitmap support, QEMU itself treats them as garbage). */
static void walk_bitmaps(struct ck *k)
{
	struct qcow2 *q = k->q;
	uint64_t dsize = q->bitmap_dir_size, doff = q->bitmap_dir_offset;

	if (q->nb_bitmaps > QCOW2_MAX_BITMAPS || dsize > QCOW2_MAX_BITMAP_DIR_BYTES ||
	    doff % q->cluster_size || doff >= QCOW2_MAX_HOST_OFFSET || dsize > q->file_end ||
	    doff > q->file_end - dsize) {
		problem(k, "ERROR bitmap directory (offset 0x%" PRIx64 ", size %" PRIu64
			") is invalid", doff, dsize);
		k->res->corruptions++;
		return;
	}
	ref_range(k, doff, dsize, "bitmap directory");
	uint8_t *dir = malloc(dsize ? dsize : 1);
	if (!dir || full_pread(q->fd, dir, dsize, doff) < 0) {
		free(dir);
		k->res->check_errors++;
		return;
	}
	uint64_t pos = 0;
	for (uint32_t b = 0; b < q->nb_bitmaps; b++) {
		if (pos + QCOW2_BM_HDR_LEN > dsize) {
			problem(k, "ERROR bitmap directory entry %u outside the directory", b);
			k->res->corruptions++;
			break;
		}
		const uint8_t *e = dir + pos;
		uint64_t toff = get_be64(e + QCOW2_BM_TABLE_OFFSET);
		uint64_t tsize = (uint64_t)get_be32(e + QCOW2_BM_TABLE_SIZE) * 8;
		pos += (QCOW2_BM_HDR_LEN + (uint64_t)get_be32(e + QCOW2_BM_EXTRA_SIZE) +
			get_be16(e + QCOW2_BM_NAME_SIZE) + 7) & ~7ull;
		if (tsize == 0)
			continue;
		if (toff % q->cluster_size || tsize > QCOW2_MAX_L1_BYTES || toff > q->file_end ||
		    tsize > q->file_end - toff) {
			problem(k, "ERROR bitmap %u table (offset 0x%" PRIx64 ") is invalid", b, toff);
			k->res->corruptions++;
			continue;
		}
		ref_range(k, toff, tsize, "bitmap table");
		uint8_t *t = malloc(tsize);
		if (!t || full_pread(q->fd, t, tsize, toff) < 0) {
			free(t);
			k->res->check_errors++;
			continue;
		}
		for (uint64_t i = 0; i < tsize / 8; i++) {
			uint64_t off = get_be64(t + 8 * i) & QCOW2_BMT_OFFSET_MASK;
			if (off)
				ref_range(k, off, q->cluster_size, "bitmap data");
		}
		free(t);
	}
	free(dir);
}

/* Compare stored refcounts with the counted references. */
static void compare(struct ck *k, bool fix)
{
	struct qcow2 *q = k->q;
	uint64_t rc;

	for (uint64_t c = 0; c < k->nclusters; c++) {
		if (q2_refcount_get(q, c, &rc) < 0) {
			k->res->check_errors++;
			continue;
		}
		uint64_t ref = k->refs[c];
		if (rc == ref)
			continue;
		if (rc < ref) {
			problem(k, "ERROR cluster %" PRIu64 " refcount=%" PRIu64 " reference=%" PRIu64,
				c, rc, ref);
			k->res->corruptions++;
			k->refcount_errors++;
			continue;
		}
		problem(k, "%s cluster %" PRIu64 " refcount=%" PRIu64 " reference=%" PRIu64,
			fix ? "Repairing" : "Leaked", c, rc, ref);
		k->res->leaks++;
		if (fix && q2_refcount_set(q, c, ref) == 0)
			k->res->leaks_fixed++;
	}
	/* refcounts for clusters past the end of the file are leaks too */
	for (uint64_t t = 0; t < q->reft_entries; t++) {
		if (!q->reft[t])
			continue;
		uint64_t lo = t << q->rb_bits, hi = (t + 1) << q->rb_bits;
		if (hi <= k->nclusters)
			continue;
		for (uint64_t c = lo > k->nclusters ? lo : k->nclusters; c < hi; c++) {
			if (q2_refcount_get(q, c, &rc) < 0 || rc == 0)
				continue;
			problem(k, "%s cluster %" PRIu64 " refcount=%" PRIu64 " reference=0",
				fix ? "Repairing" : "Leaked", c, rc);
			k->res->leaks++;
			if (fix && q2_refcount_set(q, c, 0) == 0)
				k->res->leaks_fixed++;
		}
	}
}

/* IMG_FIX_ERRORS: rebuild the refcounts if that repairs every problem
 * found (or just clear the dirty/corrupt bits if nothing was wrong). */
static int repair(struct ck *k)
{
	struct qcow2 *q = k->q;
	struct img_check_result *res = k->res;
	int r;

	if (res->check_errors || res->corruptions > k->refcount_errors) {
		problem(k, "cannot repair: %" PRIu64 " corruptions are not refcount errors%s",
			res->corruptions - k->refcount_errors,
			res->check_errors ? " (or the check itself failed)" : "");
		return 0;
	}
	if (!res->corruptions && !res->leaks)
		return q2_clear_repair_bits(q);
	r = q2_rebuild_refcounts(q, k->refs, k->nclusters);
	if (r == 0) {
		res->corruptions_fixed = res->corruptions;
		res->leaks_fixed = res->leaks;
	}
	return r;
}

int qcow2_check(struct img *img, unsigned fix, struct img_check_result *res)
{
	struct qcow2 *q = img->priv;
	struct ck k = { .q = q, .res = res };
	int r = 0;

	pthread_mutex_lock(&q->lock);
	/* apply deferred frees first so they do not show as leaks.  If that
	 * fails they stay queued for the next flush: repairing refcounts now
	 * would free those clusters a second time when it applies them (and
	 * before their references are durably gone), so look but do not fix. */
	if (!img->readonly && q2_flush_locked(q) < 0) {
		res->check_errors++;
		fix = 0;
	}
	k.nclusters = (q->file_end + q->cluster_size - 1) >> q->cluster_bits;
	if (k.nclusters > CHECK_MAX_CLUSTERS) {
		problem(&k, "image has %" PRIu64 " clusters; too many to check", k.nclusters);
		res->check_errors++;
		goto out;
	}
	k.refs = calloc(k.nclusters ? k.nclusters : 1, sizeof(uint16_t));
	if (!k.refs) {
		r = -ENOMEM;
		goto out;
	}
	res->total_clusters = (img->size + q->cluster_size - 1) >> q->cluster_bits;
	ref_range(&k, 0, q->cluster_size, "header");
	ref_range(&k, q->l1_offset, (uint64_t)q->l1_size * 8, "L1 table");
	ref_range(&k, q->reft_offset, (uint64_t)q->reft_clusters * q->cluster_size,
		  "refcount table");
	for (uint64_t t = 0; t < q->reft_entries; t++)
		if (q->reft[t])
			ref_range(&k, q->reft[t], q->cluster_size, "refcount block");
	walk_l1(&k, q->l1, q->l1_size, true);
	if (q->nb_snapshots)
		walk_snapshots(&k);
	if (q->nb_bitmaps && (q->autoclear & QCOW2_AUTOCLEAR_BITMAPS))
		walk_bitmaps(&k);
	if ((fix & IMG_FIX_ERRORS) && !img->readonly) {
		compare(&k, false);
		r = repair(&k);
		goto out;
	}
	compare(&k, (fix & IMG_FIX_LEAKS) && !img->readonly);
	if (res->leaks_fixed && q2_refcounts_durable(q) < 0)
		res->check_errors++;
out:
	free(k.refs);
	pthread_mutex_unlock(&q->lock);
	return r;
}
