/*
 * pattern.c - deterministic data patterns for --verify.
 *
 * A 512-byte sector written at disk offset off in generation gen holds:
 *   bytes 0..7    "vbdfPAT1" magic
 *   bytes 8..15   off (little endian)
 *   bytes 16..19  gen
 *   bytes 20..23  low 32 bits of the seed
 *   bytes 24..511 a splitmix64 stream keyed by (off, gen, seed)
 * so a check can tell "stale data" (right offset, older generation) from
 * "misdirected write" (another offset's data) from "never written" (zeroes).
 */
#include "front.h"

#include <string.h>

#include "util/endian.h"

static const char magic[8] = { 'v', 'b', 'd', 'f', 'P', 'A', 'T', '1' };

static void fill_sector(unsigned char *s, uint64_t off, uint32_t gen, uint64_t seed)
{
	uint64_t st = vf_mix(vf_mix(off, gen), seed);

	memcpy(s, magic, 8);
	put_le64(s + 8, off);
	put_le32(s + 16, gen);
	put_le32(s + 20, (uint32_t)seed);
	for (unsigned i = 24; i < VF_SECTOR; i += 8)
		put_le64(s + i, vf_rng_next(&st));
}

void vf_pattern_fill(void *buf, uint64_t off, size_t len, uint32_t gen, uint64_t seed)
{
	unsigned char *p = buf;

	for (size_t i = 0; i + VF_SECTOR <= len; i += VF_SECTOR)
		fill_sector(p + i, off + i, gen, seed);
}

static bool all_zero(const unsigned char *s)
{
	for (unsigned i = 0; i < VF_SECTOR; i++)
		if (s[i])
			return false;
	return true;
}

static void describe(const unsigned char *s, uint64_t off, uint32_t want, struct vf_mismatch *mm)
{
	memset(mm, 0, sizeof(*mm));
	mm->off = off;
	mm->want_gen = want;
	mm->found_zero = all_zero(s);
	if (memcmp(s, magic, 8) == 0) {
		mm->found_pattern = true;
		mm->found_off = get_le64(s + 8);
		mm->found_gen = get_le32(s + 16);
	}
}

unsigned vf_pattern_check(const void *buf, uint64_t off, size_t len, const uint32_t *gens,
			  uint64_t seed, struct vf_mismatch *mm)
{
	const unsigned char *p = buf;
	unsigned char want[VF_SECTOR];
	unsigned bad = 0;

	for (size_t i = 0; i + VF_SECTOR <= len; i += VF_SECTOR) {
		uint32_t g = gens[i / VF_SECTOR];

		if (g == 0)
			continue;
		fill_sector(want, off + i, g, seed);
		if (memcmp(want, p + i, VF_SECTOR) == 0)
			continue;
		if (bad++ == 0 && mm)
			describe(p + i, off + i, g, mm);
	}
	return bad;
}
