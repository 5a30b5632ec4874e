/* Unit tests: vbd-front command line values, PRNG, verify patterns and the
 * workload generator (blkback/front/pattern.c, workload.c). */
#include <stdlib.h>

#include "blkback/front/front.h"
#include "util/tap.h"

static void test_parse(void)
{
	uint64_t v = 0;

	ok(vf_parse_size("4k", &v) == 0 && v == 4096, "4k = 4096");
	ok(vf_parse_size("1G", &v) == 0 && v == 1ull << 30, "1G");
	ok(vf_parse_size("2MiB", &v) == 0 && v == 2ull << 20, "2MiB");
	ok(vf_parse_size("512", &v) == 0 && v == 512, "plain number");
	ok(vf_parse_size("4x", &v) < 0, "junk suffix refused");
	ok(vf_parse_size("", &v) < 0 && vf_parse_size("-1", &v) < 0, "empty and negative refused");
	ok(vf_parse_size("99999999999T", &v) < 0, "overflow refused");
	ok(vf_parse_duration("5s", &v) == 0 && v == 5000000000ull, "5s");
	ok(vf_parse_duration("100ms", &v) == 0 && v == 100000000ull, "100ms");
	ok(vf_parse_duration("3", &v) == 0 && v == 3000000000ull, "bare seconds");
	ok(vf_parse_duration("1x", &v) < 0, "bad duration refused");
}

static void test_rng(void)
{
	uint64_t a = 42, b = 42, c = 43;
	uint64_t x = vf_rng_next(&a);
	int inrange = 1, hit0 = 0, hit9 = 0;

	ok(x == vf_rng_next(&b) && x != vf_rng_next(&c), "rng deterministic per seed");
	for (int i = 0; i < 10000; i++) {
		uint64_t r = vf_rng_below(&a, 10);
		inrange &= r < 10;
		hit0 |= r == 0;
		hit9 |= r == 9;
	}
	ok(inrange && hit0 && hit9, "rng_below covers [0,n) and stays inside");
}

static void test_pattern(void)
{
	unsigned char buf[4096], other[4096];
	uint32_t gens[8] = { 3, 3, 3, 3, 3, 3, 3, 3 };
	struct vf_mismatch mm;

	vf_pattern_fill(buf, 8192, sizeof(buf), 3, 7);
	is_int(vf_pattern_check(buf, 8192, sizeof(buf), gens, 7, &mm), 0, "pattern verifies");
	vf_pattern_fill(other, 8192, sizeof(other), 4, 7);
	ok(memcmp(buf, other, 512) != 0, "generation changes the data");
	vf_pattern_fill(other, 8192, sizeof(other), 3, 8);
	ok(memcmp(buf, other, 512) != 0, "seed changes the data");

	/* A stale sector (older generation) is found and described. */
	vf_pattern_fill(buf + 1024, 8192 + 1024, 512, 2, 7);
	is_int(vf_pattern_check(buf, 8192, sizeof(buf), gens, 7, &mm), 1, "one stale sector");
	ok(mm.off == 8192 + 1024 && mm.found_pattern && mm.found_gen == 2 &&
	   mm.found_off == 8192 + 1024 && mm.want_gen == 3, "stale sector described");

	/* A misdirected write names its origin. */
	vf_pattern_fill(buf + 1024, 65536, 512, 3, 7);
	vf_pattern_check(buf, 8192, sizeof(buf), gens, 7, &mm);
	ok(mm.found_pattern && mm.found_off == 65536, "misdirected sector names its offset");

	/* Zeroes, a flipped bit, and unknown generations. */
	memset(buf + 512, 0, 512);
	buf[4095] ^= 1;
	is_int(vf_pattern_check(buf, 8192, sizeof(buf), gens, 7, &mm), 3, "three bad sectors");
	ok(mm.off == 8192 + 512 && mm.found_zero && !mm.found_pattern, "first bad sector is zeroes");
	memset(gens, 0, sizeof(gens));
	is_int(vf_pattern_check(buf, 8192, sizeof(buf), gens, 7, NULL), 0,
	       "generation 0 (unknown) is not checked");
}

static void test_workload(void)
{
	struct vf_workload w = { .pattern = VF_SEQ, .rw = VF_RW_WRITE, .bs = 4096, .start = 1 << 20,
				 .len = 10240, .align = 512 };
	struct vf_io_desc io;
	char err[128];
	int good = 1, reads = 0, rw = 0, flushes = 0, discards = 0;

	ok(vf_workload_init(&w, 1, err, sizeof(err)) == 0, "seq workload init");
	vf_workload_next(&w, &io);
	ok(io.op == VF_OP_WRITE && io.off == 1 << 20 && io.len == 4096, "seq first I/O");
	vf_workload_next(&w, &io);
	ok(io.off == (1 << 20) + 4096 && io.len == 4096, "seq second I/O");
	vf_workload_next(&w, &io);
	ok(io.off == (1 << 20) + 8192 && io.len == 2048, "seq tail I/O is clamped to the region");
	vf_workload_next(&w, &io);
	ok(io.off == 1 << 20 && io.len == 4096, "seq wraps around");

	w = (struct vf_workload){ .pattern = VF_RAND, .rw = VF_RW_MIX, .read_pct = 70, .bs = 8192,
				  .start = 4096, .len = 1 << 20, .align = 512, .flush_every = 10,
				  .discard_every = 7, .discard_align = 65536 };
	ok(vf_workload_init(&w, 5, err, sizeof(err)) == 0, "rand workload init");
	for (int i = 0; i < 10000; i++) {
		vf_workload_next(&w, &io);
		if (io.op == VF_OP_FLUSH) {
			flushes++;
			continue;
		}
		good &= io.off >= 4096 && io.off + io.len <= 4096 + (1 << 20);
		if (io.op == VF_OP_DISCARD) {
			discards++;
			good &= io.off % 65536 == 0 && io.len % 65536 == 0 && io.len > 0;
		} else {
			good &= (io.off - 4096) % 8192 == 0 && io.len == 8192;
			reads += io.op == VF_OP_READ;
			rw++;
		}
	}
	ok(good, "rand I/Os inside the region, aligned, discards on granules");
	ok(reads * 100 > rw * 66 && reads * 100 < rw * 74, "about 70% reads");
	ok(flushes > 800 && flushes < 1000, "a flush every 10 I/Os");
	ok(discards > 1100 && discards < 1500, "every 7th data I/O is a discard, widened to 64k");

	w.bs = 100;
	ok(vf_workload_init(&w, 5, err, sizeof(err)) < 0, "bs not a multiple of 512 refused");
	w.bs = 4096;
	w.align = 4096;
	ok(vf_workload_init(&w, 5, err, sizeof(err)) == 0, "4k sectors, 4k blocks");
	w.bs = 2048;
	ok(vf_workload_init(&w, 5, err, sizeof(err)) < 0, "bs below the sector size refused");
}

int main(void)
{
	plan(35);
	test_parse();
	test_rng();
	test_pattern();
	test_workload();
	return done_testing();
}
