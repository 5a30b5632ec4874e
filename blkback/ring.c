/* ring.c - blkif shared-ring indexes per ABI; see ring.h. */
#include "ring.h"

/* The 64-byte sring header, as in DEFINE_RING_TYPES. */
#define HDR_REQ_PROD 0
#define HDR_REQ_EVENT 1
#define HDR_RSP_PROD 2
#define HDR_RSP_EVENT 3

/* ring.h's xen_rmb/xen_wmb/xen_mb for user space.  On x86 the first two
 * are compiler barriers, the full one an mfence. */
#define ring_rmb() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define ring_wmb() __atomic_thread_fence(__ATOMIC_RELEASE)
#define ring_mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)

static volatile uint32_t *hdr(const struct blk_ring *r)
{
	return (volatile uint32_t *)r->sring;
}

void ring_init(struct blk_ring *r, void *sring, enum blkif_abi abi, size_t bytes)
{
	r->sring = sring;
	r->abi = abi;
	r->size = blkif_ring_slots(abi, bytes);
	r->req_cons = 0;
	r->rsp_prod_pvt = 0;
	r->rsp_pushed = 0;
}

ring_idx_t ring_req_prod(const struct blk_ring *r)
{
	ring_idx_t rp = hdr(r)[HDR_REQ_PROD];

	ring_rmb(); /* rule 2: see requests only after req_prod */
	return rp;
}

bool ring_prod_overflow(const struct blk_ring *r, ring_idx_t prod)
{
	return (ring_idx_t)(prod - r->rsp_prod_pvt) > r->size;
}

bool ring_cons_overflow(const struct blk_ring *r, ring_idx_t cons)
{
	return (ring_idx_t)(cons - r->rsp_prod_pvt) >= r->size;
}

void ring_take_request(struct blk_ring *r, struct blkif_req *req)
{
	void *slot = blkif_slot(r->abi, r->sring, r->req_cons & (r->size - 1));

	/* rule 1: one copy of the slot; abi.c puts a compiler barrier
	 * between the copy and the decoding of the private bytes. */
	blkif_copy_request(r->abi, slot, req);
	r->req_cons++;
}

void ring_put_response(struct blk_ring *r, uint64_t id, uint8_t op, int16_t status)
{
	void *slot = blkif_slot(r->abi, r->sring, r->rsp_prod_pvt & (r->size - 1));

	blkif_put_response(r->abi, slot, id, op, status); /* rule 17 */
	r->rsp_prod_pvt++;
}

bool ring_push_responses(struct blk_ring *r)
{
	/* The old index is our own record, not the shared rsp_prod a guest
	 * could rewrite; otherwise exactly RING_PUSH_RESPONSES_AND_CHECK_NOTIFY. */
	ring_idx_t old = r->rsp_pushed, new = r->rsp_prod_pvt;

	ring_wmb(); /* front sees responses before the new producer index */
	hdr(r)[HDR_RSP_PROD] = new;
	r->rsp_pushed = new;
	ring_mb(); /* front sees new responses before we check rsp_event */
	return (ring_idx_t)(new - hdr(r)[HDR_RSP_EVENT]) < (ring_idx_t)(new - old);
}

unsigned ring_unconsumed(const struct blk_ring *r)
{
	ring_idx_t req = hdr(r)[HDR_REQ_PROD] - r->req_cons;
	ring_idx_t rsp = r->size - (r->req_cons - r->rsp_prod_pvt);

	return req < rsp ? req : rsp;
}

bool ring_final_check(struct blk_ring *r)
{
	if (ring_unconsumed(r))
		return true;
	hdr(r)[HDR_REQ_EVENT] = r->req_cons + 1;
	ring_mb(); /* publish req_event before looking at req_prod again */
	return ring_unconsumed(r) != 0;
}
