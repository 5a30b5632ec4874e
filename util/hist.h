/*
 * hist.h - a lock-free latency histogram with percentiles.
 *
 * Log-linear buckets: exact below 16 ns, then 8 buckets per power of two, so
 * any reported percentile is within 12.5% of the true value.  Recording is
 * a few relaxed atomic increments, cheap enough for every request; readers
 * (the FUSE stats file) take a consistent-enough snapshot without locking.
 */
#ifndef VBDFS_HIST_H
#define VBDFS_HIST_H

#include <stdatomic.h>
#include <stdint.h>

#define HIST_BUCKETS (16 + 44 * 8) /* up to 2^48 ns, about 78 hours */

struct hist {
	_Atomic uint64_t bucket[HIST_BUCKETS];
	_Atomic uint64_t count;
	_Atomic uint64_t sum;   /* of recorded values */
	_Atomic uint64_t max;
};

void hist_init(struct hist *h);
void hist_record(struct hist *h, uint64_t value);

/* The value at or below which a fraction p (0..1) of the records fall,
 * reported as the middle of its bucket and never above the maximum seen.
 * 0 for an empty histogram. */
uint64_t hist_percentile(const struct hist *h, double p);

uint64_t hist_count(const struct hist *h);
uint64_t hist_max(const struct hist *h);
uint64_t hist_mean(const struct hist *h);

/* Bucket arithmetic, exposed for tests. */
unsigned hist_bucket_of(uint64_t value);
uint64_t hist_bucket_low(unsigned bucket);
uint64_t hist_bucket_high(unsigned bucket); /* inclusive */

#endif
