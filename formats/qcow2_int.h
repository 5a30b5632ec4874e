/*
 * qcow2_int.h - the qcow2 driver's internal state, shared by its files:
 *   qcow2.c           open/validate, read, write, discard, zeroes, status, flush
 *   qcow2_cache.c     bounded set-associative cache of L2 tables / refcount blocks
 *   qcow2_refcount.c  refcounts, cluster allocation, deferred frees, table growth
 *   qcow2_check.c     consistency check (qemu-img check semantics)
 *
 * Locking: everything in struct qcow2 below `lock` is protected by it, except
 * the atomics.  Data I/O (guest data clusters) runs without the lock; see the
 * ordering and concurrency notes at the top of the write path in qcow2.c.
 */
#ifndef VBDFS_QCOW2_INT_H
#define VBDFS_QCOW2_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "formats/driver.h"
#include "formats/qcow2.h"

/* ---- metadata cache ---- */
#define QCACHE_WAYS 8

struct qcache_entry {
	uint64_t off;        /* host offset of the table; 0 = empty slot */
	uint8_t *buf;        /* cluster_size bytes, allocated on first use */
	uint64_t lru;        /* last use tick */
	bool dirty;
};

struct qcow2;
struct qcache {
	struct qcache_entry *e;
	unsigned nsets;      /* e has nsets * QCACHE_WAYS slots */
	uint64_t tick;
	uint64_t hits, misses;
	/* called before a dirty entry of this cache is written back */
	int (*before_writeback)(struct qcow2 *q);
};

/* ---- a run of guest clusters being allocated by one writer ---- */
struct q2_marker {
	uint64_t first, count;   /* guest cluster indices */
	struct q2_marker *next;
};

/* Recently inflated compressed clusters, keyed by their L2 descriptor, so
 * sequential small reads do not inflate the same cluster again and again.
 * (A descriptor names immutable data: we never write compressed clusters
 * into an open image, so a descriptor cannot come back with new data.) */
#define ZCACHE_N 4
struct q2_zcache {
	pthread_mutex_t lock;
	uint64_t desc[ZCACHE_N];     /* 0 = empty */
	uint64_t lru[ZCACHE_N];
	uint8_t *buf[ZCACHE_N];
	uint64_t tick;
};

struct q2_free {
	uint64_t off, len;       /* host byte range whose clusters lose one reference */
};

struct qcow2 {
	struct img *img;
	int fd;
	int dfd;                     /* O_DIRECT twin for aligned guest data I/O, or -1 */

	/* header, validated at open */
	int version;
	unsigned cluster_bits;
	uint64_t cluster_size;
	unsigned l2_bits;            /* log2(entries per L2 table) */
	unsigned refcount_order;
	unsigned rb_bits;            /* log2(entries per refcount block) */
	uint64_t incompat, compat, autoclear;
	uint32_t header_length;
	uint32_t nb_snapshots;
	uint64_t snapshots_offset;
	bool has_backing;
	/* bitmaps extension (counted by check while the autoclear bit says the
	 * bitmaps are consistent) */
	uint32_t nb_bitmaps;
	uint64_t bitmap_dir_size, bitmap_dir_offset;
	bool dirty_bit, corrupt_bit;

	uint64_t l1_offset;
	uint32_t l1_size;            /* entries */
	uint64_t *l1;                /* host order */
	uint32_t l1_dirty_lo, l1_dirty_hi; /* dirty entries [lo, hi); lo >= hi: none */

	uint64_t reft_offset;
	uint64_t reft_entries;       /* refcount_table_clusters * cs / 8 */
	uint32_t reft_clusters;
	uint64_t *reft;              /* host order */
	uint64_t reft_dirty_lo, reft_dirty_hi;

	pthread_mutex_t lock;
	pthread_cond_t cond;         /* markers released, epoch drained, flush done */
	struct qcache l2_cache;
	struct qcache rb_cache;

	uint64_t file_end;           /* bytes: max(file size at open, allocations) */
	uint64_t free_hint;          /* cluster index where the allocator scans first */

	struct q2_marker *markers;   /* allocating writes in flight */

	/* deferred frees, applied by flush once the references are durably gone
	 * and every request that might still use the old mapping has finished */
	struct q2_free *frees;
	size_t nfrees, frees_cap;
	_Atomic bool frees_pressure;  /* nfrees >= Q2_FREES_SOFT_MAX: flush soon */

	/* request epochs: see "Concurrency" in qcow2.c */
	unsigned epoch;
	_Atomic uint64_t inflight[2];
	_Atomic int drain_waiters;
	bool flushing;

	struct q2_zcache zc;         /* own lock; never taken with q->lock held */
};

/* Maximum frees queued before a writer forces a flush to apply them. */
#define Q2_FREES_SOFT_MAX 4096

/* qcow2_cache.c */
int qcache_init(struct qcache *c, uint64_t cluster_size, size_t bytes, unsigned min_entries,
		unsigned max_entries);
void qcache_destroy(struct qcache *c);
/* Look up the table at host offset off.  fresh: do not read the disk, start
 * from zeros (a newly allocated table).  *buf stays valid until the next
 * qcache call on this cache.  Must hold q->lock. */
int qcache_get(struct qcow2 *q, struct qcache *c, uint64_t off, bool fresh, uint8_t **buf);
void qcache_mark_dirty(struct qcow2 *q, struct qcache *c, uint64_t off);
/* Write back every dirty entry (no fdatasync).  Returns 1 if any was written. */
int qcache_writeback(struct qcow2 *q, struct qcache *c);
/* Forget an entry (its cluster was freed). */
void qcache_drop(struct qcache *c, uint64_t off);

/* qcow2_refcount.c */
int q2_refcount_get(struct qcow2 *q, uint64_t cluster, uint64_t *val);
int q2_refcount_set(struct qcow2 *q, uint64_t cluster, uint64_t val);
/* Allocate up to n contiguous free clusters (refcount 1 each): *got >= 1
 * clusters at byte offset *host. */
int q2_alloc_clusters(struct qcow2 *q, uint64_t n, uint64_t *host, uint64_t *got);
/* Allocate exactly n contiguous free clusters (a table), skipping shorter
 * holes: a discard may have left one before the end of the file. */
int q2_alloc_contiguous(struct qcow2 *q, uint64_t n, uint64_t *host);
/* Undo q2_alloc_clusters for clusters never referenced (error paths). */
void q2_free_now(struct qcow2 *q, uint64_t host, uint64_t n);
/* Queue the release of the reference an L2 entry held (any kind). */
void q2_queue_free_l2e(struct qcow2 *q, uint64_t l2e);
/* Apply frees[0..n) (refcount decrements, hole punching). */
void q2_apply_frees(struct qcow2 *q, struct q2_free *f, size_t n);
/* Write dirty refcount blocks and table entries and make them durable
 * (always ends with an fdatasync, which also covers guest data). */
int q2_refcounts_durable(struct qcow2 *q);
bool q2_is_fixed_meta(const struct qcow2 *q, uint64_t cluster);

/* qcow2_check.c */
int qcow2_check(struct img *img, unsigned fix, struct img_check_result *res);
/* qcow2_repair.c: write a new refcount table and blocks holding refs[c]
 * for every cluster c < nclusters (refs: every reference qcow2_check
 * counted, the current refcount table and blocks included; their counts
 * are taken off, as the new structure replaces them), switch the header
 * to them and clear the dirty and corrupt bits.  Needs q->lock. */
int q2_rebuild_refcounts(struct qcow2 *q, uint16_t *refs, uint64_t nclusters);
/* Clear the dirty and corrupt bits (the refcounts were found right). */
int q2_clear_repair_bits(struct qcow2 *q);

/* qcow2.c, for the above */
/* img_flush with q->lock held (waits on q->cond, releasing it). */
int q2_flush_locked(struct qcow2 *q);
int q2_write_header_field(struct qcow2 *q, unsigned off, const void *val, size_t len);

#endif
