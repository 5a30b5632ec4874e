/* abi.c - blkif request/response layouts for the x86_64 and x86_32 ABIs. */
#include "abi.h"

#include <errno.h>
#include <string.h>

#include "util/endian.h"

/* Byte offsets of each field, per ABI (x86_32 is packed to 4 bytes). */
struct layout {
	size_t req_size, rsp_size;
	size_t id, sector, seg;             /* READ/WRITE/BARRIER/FLUSH */
	size_t discard_nr_sectors;          /* DISCARD (id, sector as above) */
	size_t ind_handle, ind_grefs;       /* INDIRECT */
};

static const struct layout layouts[] = {
	[BLKIF_ABI_X86_64] = { .req_size = 112, .rsp_size = 16, .id = 8, .sector = 16,
			       .seg = 24, .discard_nr_sectors = 24, .ind_handle = 24,
			       .ind_grefs = 28 },
	[BLKIF_ABI_X86_32] = { .req_size = 108, .rsp_size = 12, .id = 4, .sector = 12,
			       .seg = 20, .discard_nr_sectors = 20, .ind_handle = 20,
			       .ind_grefs = 24 },
};

#define RSP_OFF_OP 8
#define RSP_OFF_STATUS 10
#define MAX_SLOT 112

const char *blkif_abi_name(enum blkif_abi abi)
{
	return abi == BLKIF_ABI_X86_32 ? "x86_32-abi" : "x86_64-abi";
}

int blkif_abi_parse(const char *protocol, enum blkif_abi *abi)
{
	if (!protocol || strcmp(protocol, "x86_64-abi") == 0) {
		*abi = BLKIF_ABI_X86_64;
		return 0;
	}
	if (strcmp(protocol, "x86_32-abi") == 0) {
		*abi = BLKIF_ABI_X86_32;
		return 0;
	}
	return -EINVAL;
}

size_t blkif_slot_size(enum blkif_abi abi)
{
	const struct layout *l = &layouts[abi];
	return l->req_size > l->rsp_size ? l->req_size : l->rsp_size;
}

unsigned blkif_ring_slots(enum blkif_abi abi, size_t ring_bytes)
{
	size_t n = (ring_bytes - BLKIF_RING_HEADER) / blkif_slot_size(abi);
	unsigned p = 1;

	/* ring.h: the largest power of two that fits */
	while ((size_t)p * 2 <= n)
		p *= 2;
	return p;
}

void blkif_copy_request(enum blkif_abi abi, const volatile void *slot, struct blkif_req *req)
{
	const struct layout *l = &layouts[abi];
	unsigned char b[MAX_SLOT];

	/* The one and only read of the shared slot.  The barrier keeps the
	 * compiler from re-reading shared memory instead of b[] below. */
	memcpy(b, (const void *)slot, l->req_size);
	__asm__ __volatile__("" ::: "memory");

	memset(req, 0, sizeof(*req));
	req->operation = b[0];
	req->id = get_le64(b + l->id);
	req->sector_number = get_le64(b + l->sector);
	switch (req->operation) {
	case BLKIF_OP_DISCARD:
		req->discard_flag = b[1];
		req->handle = get_le16(b + 2);
		req->nr_sectors = get_le64(b + l->discard_nr_sectors);
		break;
	case BLKIF_OP_INDIRECT:
		req->indirect_op = b[1];
		req->nr_segments = get_le16(b + 2);
		req->handle = get_le16(b + l->ind_handle);
		for (unsigned i = 0; i < BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST; i++)
			req->indirect_grefs[i] = get_le32(b + l->ind_grefs + 4 * i);
		break;
	default:
		req->nr_segments = b[1];
		req->handle = get_le16(b + 2);
		/* Decode all 11 slots; the validator checks nr_segments. */
		for (unsigned i = 0; i < BLKIF_MAX_SEGMENTS_PER_REQUEST; i++) {
			const unsigned char *s = b + l->seg + 8 * i;
			req->seg[i].gref = get_le32(s);
			req->seg[i].first_sect = s[4];
			req->seg[i].last_sect = s[5];
		}
		break;
	}
}

void blkif_put_response(enum blkif_abi abi, volatile void *slot, uint64_t id, uint8_t operation,
			int16_t status)
{
	const struct layout *l = &layouts[abi];
	unsigned char b[MAX_SLOT];

	/* Build the whole slot privately (zero padding), then store it. */
	memset(b, 0, l->rsp_size);
	put_le64(b, id);
	b[RSP_OFF_OP] = operation;
	put_le16(b + RSP_OFF_STATUS, (uint16_t)status);
	memcpy((void *)slot, b, l->rsp_size);
}

void blkif_put_request(enum blkif_abi abi, volatile void *slot, const struct blkif_req *req)
{
	const struct layout *l = &layouts[abi];
	unsigned char b[MAX_SLOT];

	memset(b, 0, l->req_size);
	b[0] = req->operation;
	put_le64(b + l->id, req->id);
	put_le64(b + l->sector, req->sector_number);
	switch (req->operation) {
	case BLKIF_OP_DISCARD:
		b[1] = req->discard_flag;
		put_le16(b + 2, req->handle);
		put_le64(b + l->discard_nr_sectors, req->nr_sectors);
		break;
	case BLKIF_OP_INDIRECT:
		b[1] = req->indirect_op;
		put_le16(b + 2, req->nr_segments);
		put_le16(b + l->ind_handle, req->handle);
		for (unsigned i = 0; i < BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST; i++)
			put_le32(b + l->ind_grefs + 4 * i, req->indirect_grefs[i]);
		break;
	default:
		b[1] = (uint8_t)req->nr_segments;
		put_le16(b + 2, req->handle);
		for (unsigned i = 0; i < BLKIF_MAX_SEGMENTS_PER_REQUEST; i++) {
			unsigned char *s = b + l->seg + 8 * i;
			put_le32(s, req->seg[i].gref);
			s[4] = req->seg[i].first_sect;
			s[5] = req->seg[i].last_sect;
		}
		break;
	}
	memcpy((void *)slot, b, l->req_size);
}

void blkif_get_response(enum blkif_abi abi, const volatile void *slot, uint64_t *id,
			uint8_t *operation, int16_t *status)
{
	const struct layout *l = &layouts[abi];
	unsigned char b[MAX_SLOT];

	memcpy(b, (const void *)slot, l->rsp_size);
	__asm__ __volatile__("" ::: "memory");
	*id = get_le64(b);
	*operation = b[RSP_OFF_OP];
	*status = (int16_t)get_le16(b + RSP_OFF_STATUS);
}
