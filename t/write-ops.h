/*
 * t/write-ops.h - the deterministic random writes of the qcow2 crash and
 * power-failure tests (t/105, t/108): op j of a seed is a write (or, one
 * time in 8, write-zeroes) of up to MAX_OP bytes inside the DISK-byte
 * disk, mostly sector-aligned, whose bytes tell which op wrote them.
 * Define DISK and MAX_OP before including.
 */
#ifndef VBDFS_T_WRITE_OPS_H
#define VBDFS_T_WRITE_OPS_H

#include <stdbool.h>
#include <stdint.h>

struct op {
	uint64_t off, len;
	uint8_t v;
	bool zero;
};

/* splitmix64: a good spread from consecutive inputs */
static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static struct op op_of(uint64_t seed, uint64_t j)
{
	uint64_t r = mix(seed * 1000003 + j);
	struct op o;

	o.len = 1 + (r % MAX_OP);
	o.off = mix(r) % DISK;
	if (mix(r + 1) % 4) { /* mostly sector-aligned */
		o.off &= ~511ull;
		o.len = (o.len + 511) & ~511ull;
	}
	if (o.len > DISK - o.off)
		o.len = DISK - o.off;
	o.v = (uint8_t)(mix(r + 2) | 1);
	o.zero = mix(r + 3) % 8 == 0;
	return o;
}

/* The byte op o leaves at disk offset p. */
static uint8_t op_byte(const struct op *o, uint64_t p)
{
	return o->zero ? 0 : (uint8_t)(o->v + (p >> 9));
}

#endif
