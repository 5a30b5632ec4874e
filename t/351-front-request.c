/* Unit tests: vbd-front request splitting, segments, indirect pages, the
 * frontend ring and response validation (blkback/front/request.c, ring.c),
 * checked by decoding with the backend's own abi.h functions. */
#include <errno.h>
#include <stdlib.h>

#include "blkback/front/front.h"
#include "util/endian.h"
#include "util/tap.h"

static void test_split(void)
{
	is_int(vf_split_count(8, 11, 0), 1, "4k I/O: one request");
	is_int(vf_split_count(88, 11, 0), 1, "44k I/O: one direct request");
	is_int(vf_split_count(89, 11, 0), 2, "44k+512: two direct requests");
	is_int(vf_split_count(88, 11, 1), 2, "44k starting 512 into a page: two requests");
	is_int(vf_split_count(256, 32, 0), 1, "128k with 32 indirect segments: one");
	is_int(vf_split_count(2048, 32, 0), 8, "1M with 32 indirect segments: eight");
	is_int(vf_split_count(2048, 256, 0), 1, "1M with 256 indirect segments: one");
}

static void test_segments(void)
{
	struct blkif_request_segment segs[16];
	grant_ref_t grefs[16];
	unsigned n, total = 0, good = 1;

	for (unsigned i = 0; i < 16; i++)
		grefs[i] = 100 + i;
	n = vf_build_segments(segs, 0, 8, grefs);
	ok(n == 1 && segs[0].first_sect == 0 && segs[0].last_sect == 7 && segs[0].gref == 100,
	   "one full page");
	n = vf_build_segments(segs, 0, 1, grefs);
	ok(n == 1 && segs[0].first_sect == 0 && segs[0].last_sect == 0, "one sector");
	n = vf_build_segments(segs, 3, 12, grefs);
	ok(n == 2 && segs[0].first_sect == 3 && segs[0].last_sect == 7 && segs[1].first_sect == 0 &&
	   segs[1].last_sect == 6 && segs[1].gref == 101, "unaligned start spans two pages");
	n = vf_build_segments(segs, 5, 88 - 5, grefs);
	for (unsigned i = 0; i < n; i++) {
		good &= segs[i].first_sect <= segs[i].last_sect && segs[i].last_sect <= 7;
		total += segs[i].last_sect - segs[i].first_sect + 1u;
	}
	ok(n == 11 && total == 83 && good, "capacity with pgoff 5 fills 11 segments exactly");
}

static void test_indirect(void)
{
	static unsigned char page[4096], slot[128];
	struct blkif_request_segment segs[512];
	grant_ref_t grefs[512];
	struct blkif_req rq = { 0 }, back;
	unsigned n;
	int good = 1;

	for (unsigned i = 0; i < 512; i++)
		grefs[i] = 7000 + i;
	n = vf_build_segments(segs, 0, 32 * 8, grefs);
	is_int(n, 32, "32 segments for 128k");
	is_int(vf_indirect_pages(n), 1, "one indirect page");
	is_int(vf_indirect_pages(513), 2, "513 segments need two pages");
	memset(page, 0xee, sizeof(page));
	vf_put_indirect(page, segs, n);
	for (unsigned i = 0; i < n; i++) {
		const struct blkif_request_segment *s = (const void *)(page + 8 * i);
		good &= s->gref == 7000 + i && s->first_sect == 0 && s->last_sect == 7;
		good &= page[8 * i + 6] == 0 && page[8 * i + 7] == 0;
	}
	ok(good, "indirect entries match the native struct, padding zeroed");

	rq.operation = BLKIF_OP_INDIRECT;
	rq.indirect_op = BLKIF_OP_WRITE;
	rq.nr_segments = (uint16_t)n;
	rq.handle = 51712;
	rq.id = 17;
	rq.sector_number = 123456;
	rq.indirect_grefs[0] = 99;
	for (int abi = 0; abi < 2; abi++) {
		blkif_put_request((enum blkif_abi)abi, slot, &rq);
		blkif_copy_request((enum blkif_abi)abi, slot, &back);
		ok(back.operation == BLKIF_OP_INDIRECT && back.indirect_op == BLKIF_OP_WRITE &&
		   back.nr_segments == 32 && back.indirect_grefs[0] == 99 && back.id == 17 &&
		   back.sector_number == 123456 && back.handle == 51712,
		   abi ? "indirect request decodes (x86_32)" : "indirect request decodes (x86_64)");
	}
}

/* Backend side of the ring, by hand: take requests, answer them. */
static void backend_answer(void *sring, enum blkif_abi abi, unsigned size, uint64_t id, uint8_t op,
			   int16_t status)
{
	uint32_t *rsp_prod = (uint32_t *)((char *)sring + 8);
	uint32_t p = *rsp_prod;

	blkif_put_response(abi, blkif_slot(abi, sring, p & (size - 1)), id, op, status);
	__atomic_store_n(rsp_prod, p + 1, __ATOMIC_RELEASE);
}

static void test_ring(void)
{
	static unsigned char mem[4 * 4096] __attribute__((aligned(4096)));
	struct vf_ring r;
	struct blkif_req rq = { 0 }, back;
	struct vf_rsp rsp[64];
	uint32_t *hdr = (uint32_t *)mem;

	memset(mem, 0xcc, sizeof(mem));
	vf_ring_init(&r, mem, 4, BLKIF_ABI_X86_32);
	is_int(r.size, 128, "4 pages = 128 slots");
	ok(hdr[0] == 0 && hdr[1] == 1 && hdr[2] == 0 && hdr[3] == 1 && mem[63] == 0,
	   "SHARED_RING_INIT header");
	is_int(vf_ring_free(&r), 128, "all slots free");

	rq.operation = BLKIF_OP_READ;
	rq.nr_segments = 1;
	rq.id = 5;
	rq.sector_number = 40;
	rq.seg[0].gref = 9;
	rq.seg[0].last_sect = 7;
	vf_ring_put(&r, &rq);
	is_int(hdr[0], 0, "put is private until push");
	ok(vf_ring_push(&r), "first push notifies (req_event 1)");
	is_int(hdr[0], 1, "push published req_prod");
	blkif_copy_request(BLKIF_ABI_X86_32, blkif_slot(BLKIF_ABI_X86_32, mem, 0), &back);
	ok(back.id == 5 && back.sector_number == 40 && back.seg[0].gref == 9, "backend sees request");

	/* Backend moves req_event far ahead: no notification needed. */
	hdr[1] = 100;
	vf_ring_put(&r, &rq);
	ok(!vf_ring_push(&r), "no notify when req_event is beyond the new requests");
	is_int(vf_ring_free(&r), 126, "two slots in use");

	is_int(vf_ring_take(&r, rsp, 64), 0, "no responses yet");
	ok(!vf_ring_final_check(&r), "final check: nothing");
	is_int(hdr[3], 1, "rsp_event re-armed at rsp_cons + 1");
	backend_answer(mem, BLKIF_ABI_X86_32, r.size, 5, BLKIF_OP_READ, -2);
	is_int(vf_ring_take(&r, rsp, 64), 1, "one response");
	ok(rsp[0].id == 5 && rsp[0].operation == BLKIF_OP_READ && rsp[0].status == -2,
	   "response decoded");
	is_int(vf_ring_free(&r), 127, "slot freed");

	/* A bogus rsp_prod (more responses than requests) is refused. */
	hdr[2] = 50;
	is_int(vf_ring_take(&r, rsp, 64), -EPROTO, "rsp_prod beyond outstanding requests refused");
}

static void test_validate(void)
{
	struct vf_shadow_state sh[4] = { { true, BLKIF_OP_READ }, { false, 0 },
					 { true, BLKIF_OP_WRITE }, { true, BLKIF_OP_FLUSH_DISKCACHE } };
	struct vf_rsp r = { .id = 0, .operation = BLKIF_OP_READ };

	is_int(vf_rsp_validate(sh, 4, &r), VF_RSP_OK, "good response");
	r.id = 4;
	is_int(vf_rsp_validate(sh, 4, &r), VF_RSP_BAD_ID, "id out of range");
	r.id = UINT64_MAX;
	is_int(vf_rsp_validate(sh, 4, &r), VF_RSP_BAD_ID, "huge id");
	r.id = 1;
	is_int(vf_rsp_validate(sh, 4, &r), VF_RSP_NOT_PENDING, "id not pending");
	r.id = 2;
	is_int(vf_rsp_validate(sh, 4, &r), VF_RSP_BAD_OP, "wrong operation");
	ok(strlen(vf_rsp_check_name(VF_RSP_BAD_OP)) > 5, "check has a name");
}

int main(void)
{
	plan(39);
	test_split();
	test_segments();
	test_indirect();
	test_ring();
	test_validate();
	return done_testing();
}
