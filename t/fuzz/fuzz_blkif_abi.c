/* Fuzz target: decoding arbitrary ring slots in both ABIs, and encoding
 * the result back; decoding must be total (no input is out of bounds). */
#include <string.h>

#include "blkback/abi.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t slot[128] = { 0 }, again[128];
	struct blkif_req a, b;

	memcpy(slot, data, size < sizeof(slot) ? size : sizeof(slot));
	for (int abi = BLKIF_ABI_X86_64; abi <= BLKIF_ABI_X86_32; abi++) {
		blkif_copy_request(abi, slot, &a);
		memset(again, 0, sizeof(again));
		blkif_put_request(abi, again, &a);
		blkif_copy_request(abi, again, &b);
		/* what was decoded survives a round trip */
		if (memcmp(&a, &b, sizeof(a)) != 0)
			__builtin_trap();
	}
	return 0;
}
