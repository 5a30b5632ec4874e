/*
 * ring.c - the frontend half of a blkif shared ring, and validation of the
 * responses a (possibly hostile) backend puts on it.
 *
 * The shared header is req_prod@0, req_event@4, rsp_prod@8, rsp_event@12.
 * The backend can write any of it at any time, so every shared index is
 * read once into a local and sanity-checked before use.
 */
#include "front.h"

#include <errno.h>
#include <string.h>

#define OFF_REQ_PROD 0
#define OFF_REQ_EVENT 4
#define OFF_RSP_PROD 8
#define OFF_RSP_EVENT 12

static uint32_t *hdr(const struct vf_ring *r, size_t off)
{
	return (uint32_t *)((char *)r->sring + off);
}

void vf_ring_init(struct vf_ring *r, void *sring, unsigned nr_pages, enum blkif_abi abi)
{
	r->sring = sring;
	r->abi = abi;
	r->size = blkif_ring_slots(abi, (size_t)nr_pages * VF_PAGE);
	r->req_prod_pvt = 0;
	r->rsp_cons = 0;
	/* SHARED_RING_INIT: indexes 0, both events 1, padding zeroed. */
	memset(sring, 0, BLKIF_RING_HEADER);
	__atomic_store_n(hdr(r, OFF_REQ_EVENT), 1, __ATOMIC_RELAXED);
	__atomic_store_n(hdr(r, OFF_RSP_EVENT), 1, __ATOMIC_RELEASE);
}

unsigned vf_ring_free(const struct vf_ring *r)
{
	return r->size - (r->req_prod_pvt - r->rsp_cons);
}

void vf_ring_put(struct vf_ring *r, const struct blkif_req *req)
{
	void *slot = blkif_slot(r->abi, r->sring, r->req_prod_pvt & (r->size - 1));

	blkif_put_request(r->abi, slot, req);
	r->req_prod_pvt++;
}

bool vf_ring_push(struct vf_ring *r)
{
	uint32_t old = __atomic_load_n(hdr(r, OFF_REQ_PROD), __ATOMIC_RELAXED);
	uint32_t new = r->req_prod_pvt, ev;

	/* xen_wmb(): the slots before the index; xen_mb(): the index before
	 * req_event is sampled. */
	__atomic_store_n(hdr(r, OFF_REQ_PROD), new, __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	ev = __atomic_load_n(hdr(r, OFF_REQ_EVENT), __ATOMIC_RELAXED);
	return (uint32_t)(new - ev) < (uint32_t)(new - old);
}

int vf_ring_take(struct vf_ring *r, struct vf_rsp *out, unsigned max)
{
	uint32_t rp = __atomic_load_n(hdr(r, OFF_RSP_PROD), __ATOMIC_ACQUIRE);
	unsigned n = 0;

	/* More responses than requests outstanding: the backend is broken
	 * (Linux: "illegal number of responses"). */
	if ((uint32_t)(rp - r->rsp_cons) > (uint32_t)(r->req_prod_pvt - r->rsp_cons))
		return -EPROTO;
	while (r->rsp_cons != rp && n < max) {
		const void *slot = blkif_slot(r->abi, r->sring, r->rsp_cons & (r->size - 1));

		blkif_get_response(r->abi, slot, &out[n].id, &out[n].operation, &out[n].status);
		r->rsp_cons++;
		n++;
	}
	return (int)n;
}

bool vf_ring_final_check(struct vf_ring *r)
{
	if (__atomic_load_n(hdr(r, OFF_RSP_PROD), __ATOMIC_ACQUIRE) != r->rsp_cons)
		return true;
	__atomic_store_n(hdr(r, OFF_RSP_EVENT), r->rsp_cons + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return __atomic_load_n(hdr(r, OFF_RSP_PROD), __ATOMIC_ACQUIRE) != r->rsp_cons;
}

void vf_ring_set_req_prod(struct vf_ring *r, uint32_t v)
{
	__atomic_store_n(hdr(r, OFF_REQ_PROD), v, __ATOMIC_RELEASE);
}

uint32_t vf_ring_rsp_prod(const struct vf_ring *r)
{
	return __atomic_load_n(hdr(r, OFF_RSP_PROD), __ATOMIC_ACQUIRE);
}

enum vf_rsp_check vf_rsp_validate(const struct vf_shadow_state *shadows, unsigned n,
				  const struct vf_rsp *rsp)
{
	if (rsp->id >= n)
		return VF_RSP_BAD_ID;
	if (!shadows[rsp->id].pending)
		return VF_RSP_NOT_PENDING;
	if (rsp->operation != shadows[rsp->id].operation)
		return VF_RSP_BAD_OP;
	return VF_RSP_OK;
}

const char *vf_rsp_check_name(enum vf_rsp_check c)
{
	switch (c) {
	case VF_RSP_OK: return "ok";
	case VF_RSP_BAD_ID: return "response has an unknown id";
	case VF_RSP_NOT_PENDING: return "response for a request not outstanding";
	case VF_RSP_BAD_OP: return "response has the wrong operation";
	}
	return "?";
}
