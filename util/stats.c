/* stats.c - per-device statistics; see stats.h. */
#include "stats.h"

#include <stdio.h>
#include <string.h>

#include "log.h"

void stats_init(struct dev_stats *s)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->busy_lock, NULL);
	for (int i = 0; i < STAT_NR_OPS; i++)
		hist_init(&s->op[i].latency);
	s->busy_since_ns = now_ns();
}

void stats_destroy(struct dev_stats *s)
{
	pthread_mutex_destroy(&s->busy_lock);
}

/* Integrate in_flight up to now; caller holds busy_lock. */
static void busy_advance(struct dev_stats *s, uint64_t now)
{
	uint64_t dt = now > s->busy_since_ns ? now - s->busy_since_ns : 0;

	if (s->in_flight) {
		s->io_ticks_ns += dt;
		s->time_in_queue_ns += dt * s->in_flight;
	}
	s->busy_since_ns = now;
}

uint64_t stats_start(struct dev_stats *s)
{
	uint64_t now = now_ns();

	pthread_mutex_lock(&s->busy_lock);
	busy_advance(s, now);
	s->in_flight++;
	pthread_mutex_unlock(&s->busy_lock);
	return now;
}

void stats_end(struct dev_stats *s, enum stat_op op, uint64_t start_ns,
	       uint64_t sectors, int ok)
{
	uint64_t now = now_ns();
	uint64_t lat = now > start_ns ? now - start_ns : 0;
	struct op_stats *o = &s->op[op];

	pthread_mutex_lock(&s->busy_lock);
	busy_advance(s, now);
	if (s->in_flight)
		s->in_flight--;
	pthread_mutex_unlock(&s->busy_lock);

	if (!ok) {
		atomic_fetch_add_explicit(&o->errors, 1, memory_order_relaxed);
		return;
	}
	atomic_fetch_add_explicit(&o->ios, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&o->sectors, sectors, memory_order_relaxed);
	atomic_fetch_add_explicit(&o->ticks_ns, lat, memory_order_relaxed);
	hist_record(&o->latency, lat);
}

void stats_batch(struct dev_stats *s, unsigned n, unsigned occupancy)
{
	uint64_t m = atomic_load_explicit(&s->ring_occupancy_max, memory_order_relaxed);

	if (n) {
		atomic_fetch_add_explicit(&s->batches, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&s->batched_reqs, n, memory_order_relaxed);
	}
	while (occupancy > m && !atomic_compare_exchange_weak_explicit(
			&s->ring_occupancy_max, &m, occupancy,
			memory_order_relaxed, memory_order_relaxed))
		;
}

void stats_busy(struct dev_stats *s, struct busy_snapshot *out)
{
	pthread_mutex_lock(&s->busy_lock);
	busy_advance(s, now_ns());
	out->in_flight = s->in_flight;
	out->io_ticks_ns = s->io_ticks_ns;
	out->time_in_queue_ns = s->time_in_queue_ns;
	pthread_mutex_unlock(&s->busy_lock);
}

static unsigned long long ld(_Atomic uint64_t *v)
{
	return (unsigned long long)atomic_load_explicit(v, memory_order_relaxed);
}

size_t stats_format_stat(struct dev_stats *s, char *buf, size_t len)
{
	struct busy_snapshot b;
	struct op_stats *r = &s->op[STAT_READ], *w = &s->op[STAT_WRITE];
	struct op_stats *d = &s->op[STAT_DISCARD], *f = &s->op[STAT_FLUSH];
	const unsigned long long ms = 1000000ull;
	int n;

	stats_busy(s, &b);
	/* Field order of Documentation/block/stat.rst; times in ms. */
	n = snprintf(buf, len,
		"%8llu %8llu %8llu %8llu %8llu %8llu %8llu %8llu %8llu %8llu %8llu "
		"%8llu %8llu %8llu %8llu %8llu %8llu\n",
		ld(&r->ios), ld(&r->merges), ld(&r->sectors), ld(&r->ticks_ns) / ms,
		ld(&w->ios), ld(&w->merges), ld(&w->sectors), ld(&w->ticks_ns) / ms,
		(unsigned long long)b.in_flight,
		(unsigned long long)(b.io_ticks_ns / ms),
		(unsigned long long)(b.time_in_queue_ns / ms),
		ld(&d->ios), ld(&d->merges), ld(&d->sectors), ld(&d->ticks_ns) / ms,
		ld(&f->ios), ld(&f->ticks_ns) / ms);
	if (n < 0)
		return 0;
	return (size_t)n < len ? (size_t)n : len - 1;
}

const char *stat_op_name(enum stat_op op)
{
	static const char *const names[] = { "read", "write", "discard", "flush" };
	return op < STAT_NR_OPS ? names[op] : "?";
}
