/* Unit tests: blkif ABI conversion (blkback/abi.c). */
#include <stddef.h>

#include "blkback/abi.h"
#include "util/endian.h"
#include "util/tap.h"

static int roundtrip(enum blkif_abi abi, const struct blkif_req *in, struct blkif_req *out)
{
	unsigned char slot[128];
	memset(slot, 0xaa, sizeof(slot));
	blkif_put_request(abi, slot, in);
	blkif_copy_request(abi, slot, out);
	return memcmp(in, out, sizeof(*in)) == 0;
}

int main(void)
{
	struct blkif_req rq = { 0 }, back;
	unsigned char slot[128];

	plan(17);
	/* Our x86_64 layout must match the compiler's native struct on x86_64. */
	is_int(blkif_slot_size(BLKIF_ABI_X86_64), sizeof(union blkif_sring_entry),
	       "x86_64 slot size = native sring entry");
	is_int(blkif_slot_size(BLKIF_ABI_X86_32), 108, "x86_32 slot size 108");
	is_int(blkif_ring_slots(BLKIF_ABI_X86_64, 4096), 32, "32 slots per page (x86_64)");
	is_int(blkif_ring_slots(BLKIF_ABI_X86_32, 4096), 32, "32 slots per page (x86_32)");
	is_int(blkif_ring_slots(BLKIF_ABI_X86_64, 16 * 4096), 512, "512 slots at order 4");

	rq.operation = BLKIF_OP_WRITE;
	rq.nr_segments = 11;
	rq.handle = 51712;
	rq.id = 0x1122334455667788ull;
	rq.sector_number = 0xdeadbeef00ull;
	for (int i = 0; i < 11; i++) {
		rq.seg[i].gref = 1000 + i;
		rq.seg[i].first_sect = i % 8;
		rq.seg[i].last_sect = 7;
	}
	ok(roundtrip(BLKIF_ABI_X86_64, &rq, &back), "READ/WRITE round trip x86_64");
	ok(roundtrip(BLKIF_ABI_X86_32, &rq, &back), "READ/WRITE round trip x86_32");

	/* Native struct offsets agree with what we wrote. */
	blkif_put_request(BLKIF_ABI_X86_64, slot, &rq);
	struct blkif_request native;
	memcpy(&native, slot, sizeof(native));
	ok(native.id == rq.id && native.sector_number == rq.sector_number &&
	   native.seg[10].gref == 1010 && native.nr_segments == 11,
	   "x86_64 encoding matches the native struct blkif_request");
	/* x86_32: id at 4, sector at 12, segments at 20 */
	blkif_put_request(BLKIF_ABI_X86_32, slot, &rq);
	ok(get_le64(slot + 4) == rq.id && get_le64(slot + 12) == rq.sector_number &&
	   get_le32(slot + 20) == 1000, "x86_32 packed offsets");

	memset(&rq, 0, sizeof(rq));
	rq.operation = BLKIF_OP_DISCARD;
	rq.discard_flag = BLKIF_DISCARD_SECURE;
	rq.id = 7;
	rq.sector_number = 2048;
	rq.nr_sectors = 1ull << 40;
	ok(roundtrip(BLKIF_ABI_X86_64, &rq, &back), "DISCARD round trip x86_64");
	ok(roundtrip(BLKIF_ABI_X86_32, &rq, &back), "DISCARD round trip x86_32");

	memset(&rq, 0, sizeof(rq));
	rq.operation = BLKIF_OP_INDIRECT;
	rq.indirect_op = BLKIF_OP_READ;
	rq.nr_segments = 300;
	rq.id = 9;
	rq.sector_number = 8;
	rq.handle = 3;
	for (int i = 0; i < 8; i++)
		rq.indirect_grefs[i] = 50 + i;
	ok(roundtrip(BLKIF_ABI_X86_64, &rq, &back), "INDIRECT round trip x86_64");
	ok(roundtrip(BLKIF_ABI_X86_32, &rq, &back), "INDIRECT round trip x86_32");
	blkif_put_request(BLKIF_ABI_X86_64, slot, &rq);
	struct blkif_request_indirect nind;
	memcpy(&nind, slot, sizeof(nind));
	ok(nind.nr_segments == 300 && nind.indirect_grefs[7] == 57 && nind.handle == 3,
	   "x86_64 indirect matches the native struct");

	/* Responses: padding zeroed, fields where the native struct has them. */
	memset(slot, 0xff, sizeof(slot));
	blkif_put_response(BLKIF_ABI_X86_64, slot, 42, BLKIF_OP_READ, BLKIF_RSP_ERROR);
	struct blkif_response nr;
	memcpy(&nr, slot, sizeof(nr));
	ok(nr.id == 42 && nr.operation == BLKIF_OP_READ && nr.status == BLKIF_RSP_ERROR,
	   "response fields at native offsets");
	ok(slot[9] == 0 && slot[12] == 0 && slot[15] == 0, "response padding zeroed");

	enum blkif_abi abi;
	ok(blkif_abi_parse("x86_32-abi", &abi) == 0 && abi == BLKIF_ABI_X86_32 &&
	   blkif_abi_parse(NULL, &abi) == 0 && abi == BLKIF_ABI_X86_64 &&
	   blkif_abi_parse("arm-abi", &abi) < 0,
	   "protocol strings parsed; unknown refused");
	return done_testing();
}
