/*
 * pgrant.h - the persistent grants of one ring (blkif "feature-persistent").
 *
 * With persistent grants the frontend reuses a fixed set of granted pages,
 * so the backend maps each new grant reference once and keeps the mapping:
 * data then moves through the mapping instead of a grant operation per
 * segment.  Rule 16, as Linux blkback: the cache holds at most `max` grants
 * (1056); when it is full new grants are copied instead, and a periodic
 * purge drops grants idle for long and, after such an overflow, 5 % of the
 * least recently used idle ones; a grant another in-flight request is
 * using is refused.  Thread-safe (one mutex).
 */
#ifndef VBDFS_PGRANT_H
#define VBDFS_PGRANT_H

#include <stdbool.h>
#include <stdint.h>

#include "hv.h"

#define PGRANT_MAX 1056u
#define PGRANT_PURGE_PERCENT 5u

struct pgrant_cache;
struct pgrant;

struct pgrant_cache *pgrant_new(struct hv *hv, uint16_t domid, unsigned max);
/* Unmap everything.  No grant may still be held. */
void pgrant_free(struct pgrant_cache *c);

/* What pgrant_get did, for the statistics. */
struct pgrant_use {
	bool hit;      /* the grant was already mapped (or reserved by owner) */
	unsigned maps; /* map operations performed (0..2) */
};

/*
 * Hold gref for the request `owner`; writable when the backend will write
 * into the page (a READ).  On success *addr is the page.  A request may
 * hold the same grant for several segments; pgrant_put once per get.
 * Errors: -EBUSY another request holds it (rule 16); -ENOSPC the cache is
 * full (the caller copies this segment instead); others: the map failed
 * (bad grant), the request must fail.  Maps without holding the lock.
 */
int pgrant_get(struct pgrant_cache *c, hv_gref_t gref, bool writable, const void *owner,
	       struct pgrant **pg, void **addr, struct pgrant_use *use);
void pgrant_put(struct pgrant_cache *c, struct pgrant *pg);

/*
 * The many segments of one request (a 1 MiB request has 256) in three
 * steps, so that no grant is mapped while the cache is locked:
 *
 *  1. pgrant_begin(), pgrant_get_locked() per segment, pgrant_end().
 *     A hit is held at once.  A miss *reserves* an entry for owner and
 *     chains it into the batch b: it is held (pgrant_put it as any other)
 *     but *addr is NULL, for now.  To every other request a reserved
 *     entry is a grant in use (-EBUSY, rule 16), so none ever waits for
 *     the mapping; purge and eviction never touch it (it is not idle).
 *  2. pgrant_map_reserved(), without the lock: maps every reserved entry
 *     of b, each with its own status.  Returns 0, or the first map error:
 *     the request must fail (the entries that did map stay, as cached
 *     grants: their grants are good).  A request that fails before this
 *     step (-EBUSY) just skips it.
 *  3. pgrant_addr() of each held entry is now its page (NULL only if its
 *     map failed); the request runs; then pgrant_put_locked() per get.
 *
 * A reserved entry left unmapped (failed, or step 2 skipped) goes back to
 * the free list when its owner puts its last hold: nothing is undone
 * separately.  now is now_ns(), read once for the batch.
 */
struct pgrant_batch {
	uint32_t head;  /* first reserved entry (index), UINT32_MAX: none */
	unsigned n;     /* reserved entries */
};
#define PGRANT_BATCH_INIT { UINT32_MAX, 0 }

void pgrant_begin(struct pgrant_cache *c);
void pgrant_end(struct pgrant_cache *c);
int pgrant_get_locked(struct pgrant_cache *c, hv_gref_t gref, bool writable, const void *owner,
		      struct pgrant_batch *b, struct pgrant **pg, void **addr,
		      struct pgrant_use *use);
/* *maps: map operations performed (for the statistics). */
int pgrant_map_reserved(struct pgrant_cache *c, struct pgrant_batch *b, unsigned *maps);
/* The page of an entry its caller holds (see above). */
void *pgrant_addr(const struct pgrant *pg);
void pgrant_put_locked(struct pgrant_cache *c, struct pgrant *pg, uint64_t now);

/* Unmap grants unused for idle_ns (Linux: 60 s) and, if the cache
 * overflowed since the last call, 5 % more from the least recently used
 * end.  Call periodically (Linux: every 100 ms).  Returns how many. */
unsigned pgrant_purge(struct pgrant_cache *c, uint64_t idle_ns);

unsigned pgrant_count(struct pgrant_cache *c);

#endif
