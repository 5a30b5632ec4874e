/* hist.c - log-linear latency histogram; see hist.h. */
#include "hist.h"

#include <string.h>

void hist_init(struct hist *h)
{
	memset(h, 0, sizeof(*h));
}

unsigned hist_bucket_of(uint64_t v)
{
	unsigned k;

	if (v < 16)
		return (unsigned)v;
	k = 63 - (unsigned)__builtin_clzll(v); /* floor(log2 v), >= 4 */
	if (k >= 48)
		return HIST_BUCKETS - 1;
	return 16 + (k - 4) * 8 + (unsigned)((v >> (k - 3)) & 7);
}

uint64_t hist_bucket_low(unsigned b)
{
	unsigned k, sub;

	if (b < 16)
		return b;
	k = (b - 16) / 8 + 4;
	sub = (b - 16) % 8;
	return (uint64_t)(8 + sub) << (k - 3);
}

uint64_t hist_bucket_high(unsigned b)
{
	if (b < 16)
		return b;
	if (b >= HIST_BUCKETS - 1)
		return UINT64_MAX;
	return hist_bucket_low(b + 1) - 1;
}

void hist_record(struct hist *h, uint64_t v)
{
	uint64_t m = atomic_load_explicit(&h->max, memory_order_relaxed);

	atomic_fetch_add_explicit(&h->bucket[hist_bucket_of(v)], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum, v, memory_order_relaxed);
	while (v > m && !atomic_compare_exchange_weak_explicit(&h->max, &m, v,
			memory_order_relaxed, memory_order_relaxed))
		;
}

uint64_t hist_count(const struct hist *h)
{
	return atomic_load_explicit(&h->count, memory_order_relaxed);
}

uint64_t hist_max(const struct hist *h)
{
	return atomic_load_explicit(&h->max, memory_order_relaxed);
}

uint64_t hist_mean(const struct hist *h)
{
	uint64_t n = hist_count(h);
	return n ? atomic_load_explicit(&h->sum, memory_order_relaxed) / n : 0;
}

uint64_t hist_percentile(const struct hist *h, double p)
{
	uint64_t total = 0, seen = 0, rank, max = hist_max(h), mid;
	uint64_t snap[HIST_BUCKETS];

	/* Sum the buckets themselves: count may be ahead of them mid-record. */
	for (unsigned b = 0; b < HIST_BUCKETS; b++) {
		snap[b] = atomic_load_explicit(&h->bucket[b], memory_order_relaxed);
		total += snap[b];
	}
	if (total == 0)
		return 0;
	if (p < 0)
		p = 0;
	if (p > 1)
		p = 1;
	rank = (uint64_t)(p * (double)total + 0.999999);
	if (rank == 0)
		rank = 1;
	for (unsigned b = 0; b < HIST_BUCKETS; b++) {
		seen += snap[b];
		if (seen >= rank) {
			uint64_t lo = hist_bucket_low(b), hi = hist_bucket_high(b);
			mid = lo + (hi - lo) / 2;
			return mid > max ? max : mid;
		}
	}
	return max;
}
