/*
 * pgrant.h - the persistent grants of one ring (blkif "feature-persistent").
 *
 * With persistent grants the frontend reuses a fixed set of granted pages,
 * so the backend maps each new grant reference once and keeps the mapping:
 * data then moves with memcpy through the mapping instead of a grant
 * operation per segment.  Rule 16: the cache holds at most `max` grants
 * (1056, as Linux), evicts the least recently used idle one to make room,
 * drops grants idle for a while, and refuses a grant that another in-flight
 * request is using.  Thread-safe (one mutex).
 */
#ifndef VBDFS_PGRANT_H
#define VBDFS_PGRANT_H

#include <stdbool.h>
#include <stdint.h>

#include "hv.h"

#define PGRANT_MAX 1056u

struct pgrant_cache;
struct pgrant;

struct pgrant_cache *pgrant_new(struct hv *hv, uint16_t domid, unsigned max);
/* Unmap everything.  No grant may still be held. */
void pgrant_free(struct pgrant_cache *c);

/* What pgrant_get did, for the statistics. */
struct pgrant_use {
	bool hit;      /* the grant was already mapped */
	unsigned maps; /* map operations performed (0..2) */
};

/*
 * Hold gref for the request `owner`; writable when the backend will write
 * into the page (a READ).  On success *addr is the page.  A request may
 * hold the same grant for several segments; pgrant_put once per get.
 * Errors: -EBUSY another request holds it (rule 16); -ENOSPC every cached
 * grant is in use (the caller copies this segment instead); others: the
 * map failed (bad grant), the request must fail.
 */
int pgrant_get(struct pgrant_cache *c, hv_gref_t gref, bool writable, const void *owner,
	       struct pgrant **pg, void **addr, struct pgrant_use *use);
void pgrant_put(struct pgrant_cache *c, struct pgrant *pg);

/* Unmap grants unused for idle_ns (Linux: 60 s). Returns how many. */
unsigned pgrant_purge_idle(struct pgrant_cache *c, uint64_t idle_ns);

unsigned pgrant_count(struct pgrant_cache *c);

#endif
