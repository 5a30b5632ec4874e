/*
 * workload.c - command line values, the PRNG and the I/O generator.
 */
#include "front.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int vf_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (tolower((unsigned char)*end)) {
	case 'k': shift = 10; end++; break;
	case 'm': shift = 20; end++; break;
	case 'g': shift = 30; end++; break;
	case 't': shift = 40; end++; break;
	default: break;
	}
	if (shift && (strcasecmp(end, "ib") == 0 || strcasecmp(end, "b") == 0))
		end += strlen(end);
	else if (!shift && strcasecmp(end, "b") == 0)
		end++;
	if (*end)
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

int vf_parse_duration(const char *s, uint64_t *out_ns)
{
	char *end;
	unsigned long long v;
	uint64_t mult;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	if (!*end || strcmp(end, "s") == 0)
		mult = 1000000000ull;
	else if (strcmp(end, "ms") == 0)
		mult = 1000000ull;
	else if (strcmp(end, "us") == 0)
		mult = 1000ull;
	else if (strcmp(end, "m") == 0)
		mult = 60000000000ull;
	else if (strcmp(end, "h") == 0)
		mult = 3600000000000ull;
	else
		return -EINVAL;
	if (v > UINT64_MAX / mult)
		return -EINVAL;
	*out_ns = v * mult;
	return 0;
}

/* splitmix64 (Steele, Lea, Flood 2014): tiny state, good enough mixing for
 * workloads and patterns, and trivially reproducible from a seed. */
uint64_t vf_rng_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

uint64_t vf_rng_below(uint64_t *state, uint64_t n)
{
	/* Lemire's multiply-shift; the bias is below 2^-64 * n: irrelevant. */
	return (uint64_t)(((unsigned __int128)vf_rng_next(state) * n) >> 64);
}

uint64_t vf_mix(uint64_t a, uint64_t b)
{
	uint64_t st = a ^ (b * 0xd6e8feb86659fd93ull);
	return vf_rng_next(&st);
}

const char *vf_op_name(enum vf_op op)
{
	static const char *const names[] = { "read", "write", "flush", "discard" };
	return op < VF_NR_OPS ? names[op] : "?";
}

int vf_workload_init(struct vf_workload *w, uint64_t seed, char *err, size_t errlen)
{
	if (!w->align || w->align % VF_SECTOR) {
		snprintf(err, errlen, "alignment %llu is not a multiple of 512",
			 (unsigned long long)w->align);
		return -EINVAL;
	}
	if (!w->bs || w->bs % w->align) {
		snprintf(err, errlen, "block size %llu is not a multiple of %llu",
			 (unsigned long long)w->bs, (unsigned long long)w->align);
		return -EINVAL;
	}
	if (w->start % w->align || w->len % w->align || w->len < w->align) {
		snprintf(err, errlen, "region %llu+%llu is empty or not aligned to %llu",
			 (unsigned long long)w->start, (unsigned long long)w->len,
			 (unsigned long long)w->align);
		return -EINVAL;
	}
	if (w->read_pct > 100) {
		snprintf(err, errlen, "--mix must be 0..100");
		return -EINVAL;
	}
	if (!w->discard_align)
		w->discard_align = w->align;
	w->rng = vf_mix(seed, 0x76626466726f6e74ull); /* "vbdfront" */
	w->pos = 0;
	w->issued = 0;
	w->flush_due = false;
	return 0;
}

static enum vf_op pick_rw(struct vf_workload *w)
{
	switch (w->rw) {
	case VF_RW_READ:
		return VF_OP_READ;
	case VF_RW_WRITE:
		return VF_OP_WRITE;
	default:
		return vf_rng_below(&w->rng, 100) < w->read_pct ? VF_OP_READ : VF_OP_WRITE;
	}
}

/* Offset (relative to start) and length of the next data I/O. */
static void pick_range(struct vf_workload *w, uint64_t *rel, uint64_t *len)
{
	uint64_t bs = w->bs < w->len ? w->bs : w->len;

	if (w->pattern == VF_SEQ) {
		if (w->pos >= w->len)
			w->pos = 0;
		*rel = w->pos;
		*len = w->len - w->pos < bs ? w->len - w->pos : bs;
		w->pos += *len;
		return;
	}
	/* VF_RAND: a uniformly chosen bs-aligned block that fits. */
	*rel = vf_rng_below(&w->rng, w->len / bs) * bs;
	*len = bs;
}

/* Widen [off, off+len) to whole discard granules (as fstrim would send),
 * kept inside the region; len 0 if no whole granule fits there. */
static void align_discard(const struct vf_workload *w, uint64_t *off, uint64_t *len)
{
	uint64_t g = w->discard_align;
	uint64_t lo = (w->start + g - 1) / g * g, hi = (w->start + w->len) / g * g;
	uint64_t a = *off / g * g, b = (*off + *len + g - 1) / g * g;

	if (a < lo)
		a = lo;
	if (b > hi)
		b = hi;
	if (b <= a) {
		*len = 0;
		return;
	}
	*off = a;
	*len = b - a;
}

void vf_workload_next(struct vf_workload *w, struct vf_io_desc *io)
{
	uint64_t rel, len;

	if (w->flush_due) {
		w->flush_due = false;
		io->op = VF_OP_FLUSH;
		io->off = io->len = 0;
		return;
	}
	w->issued++;
	if (w->flush_every && w->issued % w->flush_every == 0)
		w->flush_due = true;
	pick_range(w, &rel, &len);
	io->off = w->start + rel;
	io->len = len;
	io->op = pick_rw(w);
	if (w->discard_every && w->issued % w->discard_every == 0) {
		uint64_t o = io->off, l = io->len;

		align_discard(w, &o, &l);
		if (l) {
			io->op = VF_OP_DISCARD;
			io->off = o;
			io->len = l;
		}
	}
}
