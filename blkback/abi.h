/*
 * abi.h - the blkif wire ABIs, converted in one place.
 *
 * A blkif ring is a 64-byte header (req_prod, req_event, rsp_prod,
 * rsp_event, padding) followed by slots that hold either a request or a
 * response.  The slot layout depends on the guest's ABI ("protocol" key):
 * x86_64 (112-byte requests, 16-byte responses) or x86_32 (packed to 4:
 * 108-byte requests, 12-byte responses).  Nothing else in vbdfs knows the
 * byte offsets; everyone works with struct blkif_req.
 *
 * Backend side: blkif_copy_request() copies a slot out of shared memory
 * exactly once and decodes the private copy (XSA-155); the caller then
 * validates the copy.  blkif_put_response() writes id, operation and status
 * field by field into the slot and zeroes the rest of it, so no padding is
 * leaked (XSA-216).
 * Frontend side (vbd-front): blkif_put_request() and blkif_get_response().
 */
#ifndef VBDFS_ABI_H
#define VBDFS_ABI_H

#include <stddef.h>
#include <stdint.h>

#include <xen/xen.h>
#include <xen/grant_table.h>
#include <xen/io/blkif.h>

enum blkif_abi {
	BLKIF_ABI_X86_64,
	BLKIF_ABI_X86_32,
};

/* The protocol string for an ABI: "x86_64-abi" / "x86_32-abi". */
const char *blkif_abi_name(enum blkif_abi abi);
/* Parse a frontend's protocol key; NULL means "not written" and selects the
 * native ABI.  Returns -EINVAL for an unknown string (fatal per blkif.h). */
int blkif_abi_parse(const char *protocol, enum blkif_abi *abi);

/* A request, independent of ABI.  Fields beyond what the operation uses are
 * zero.  nr_segments counts seg[] (direct, at most 11) or the segments in
 * the indirect pages (INDIRECT). */
struct blkif_req {
	uint8_t operation;     /* BLKIF_OP_* */
	uint8_t indirect_op;   /* INDIRECT only: READ or WRITE */
	uint8_t discard_flag;  /* DISCARD only: BLKIF_DISCARD_SECURE */
	uint16_t nr_segments;
	uint16_t handle;
	uint64_t id;
	uint64_t sector_number;
	uint64_t nr_sectors;   /* DISCARD only */
	struct blkif_request_segment seg[BLKIF_MAX_SEGMENTS_PER_REQUEST];
	grant_ref_t indirect_grefs[BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST];
};

#define BLKIF_RING_HEADER 64u

/* Bytes of one ring slot, and the number of slots in ring_bytes. */
size_t blkif_slot_size(enum blkif_abi abi);
unsigned blkif_ring_slots(enum blkif_abi abi, size_t ring_bytes);

/* Address of slot idx (already masked by the caller) in a ring. */
static inline void *blkif_slot(enum blkif_abi abi, void *sring, unsigned idx)
{
	return (char *)sring + BLKIF_RING_HEADER + (size_t)idx * blkif_slot_size(abi);
}

/* Backend: copy slot (shared memory) once and decode the copy. */
void blkif_copy_request(enum blkif_abi abi, const volatile void *slot, struct blkif_req *req);
/* Backend: write a response into slot, field by field, padding zeroed. */
void blkif_put_response(enum blkif_abi abi, volatile void *slot, uint64_t id, uint8_t operation,
			int16_t status);

/* Frontend: encode req into slot; decode a response from slot. */
void blkif_put_request(enum blkif_abi abi, volatile void *slot, const struct blkif_req *req);
void blkif_get_response(enum blkif_abi abi, const volatile void *slot, uint64_t *id,
			uint8_t *operation, int16_t *status);

/* Segments held by one indirect page. */
#define BLKIF_SEGS_PER_INDIRECT_PAGE (4096 / sizeof(struct blkif_request_segment))

#endif
