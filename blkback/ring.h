/*
 * ring.h - the backend half of one blkif shared ring, per ABI.
 *
 * xen/io/ring.h's macros index a native `union blkif_sring_entry` array, so
 * they cannot serve the packed x86_32 layout.  These helpers do the same
 * index arithmetic over abi.h's per-ABI slots and keep ring.h's memory
 * barrier discipline exactly (the comments name the macro each follows).
 *
 * Not thread-safe by itself: req_cons belongs to the one consumer thread,
 * rsp_prod_pvt and rsp_pushed to whoever holds the ring's lock (engine).
 */
#ifndef VBDFS_RING_H
#define VBDFS_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "abi.h"

typedef uint32_t ring_idx_t;

struct blk_ring {
	void *sring;             /* the mapped shared ring (header + slots) */
	enum blkif_abi abi;
	unsigned size;           /* slots, a power of two */
	ring_idx_t req_cons;     /* next request to take */
	ring_idx_t rsp_prod_pvt; /* next response slot to fill */
	ring_idx_t rsp_pushed;   /* rsp_prod as we last published it */
};

/* BACK_RING_INIT: attach to a ring the frontend initialised. */
void ring_init(struct blk_ring *r, void *sring, enum blkif_abi abi, size_t bytes);

/* Snapshot the frontend's req_prod once, then read barrier, so slot
 * contents are read after the index that published them (rule 2). */
ring_idx_t ring_req_prod(const struct blk_ring *r);

/* RING_REQUEST_PROD_OVERFLOW: more requests than the ring can hold; the
 * frontend is broken or hostile (rule 3). */
bool ring_prod_overflow(const struct blk_ring *r, ring_idx_t prod);

/* RING_REQUEST_CONS_OVERFLOW: taking another request would overrun
 * responses not yet produced (rule 4). */
bool ring_cons_overflow(const struct blk_ring *r, ring_idx_t cons);

/* RING_COPY_REQUEST of slot req_cons, then req_cons++ (rule 1). */
void ring_take_request(struct blk_ring *r, struct blkif_req *req);

/* Write one response at rsp_prod_pvt, field by field (rule 17). */
void ring_put_response(struct blk_ring *r, uint64_t id, uint8_t op, int16_t status);

/* RING_PUSH_RESPONSES_AND_CHECK_NOTIFY: publish rsp_prod_pvt; true if the
 * frontend asked to be notified within the pushed range (rule 18). */
bool ring_push_responses(struct blk_ring *r);

/* RING_HAS_UNCONSUMED_REQUESTS, bounded by the ring's free space. */
unsigned ring_unconsumed(const struct blk_ring *r);

/* RING_FINAL_CHECK_FOR_REQUESTS: if nothing is pending, re-arm req_event
 * so the next request notifies us, then look again.  True if there is
 * work; false means it is safe to sleep on the event channel (rule 18). */
bool ring_final_check(struct blk_ring *r);

#endif
