/*
 * stats.h - per-device I/O statistics, shared by the request engine (which
 * updates them) and the FUSE tree (which prints them).
 *
 * The counters are those of Linux /sys/block/<dev>/stat (see
 * Documentation/admin-guide/iostats.rst) plus what a Xen backend needs:
 * errors, ring occupancy, batching, notifications, grant operations.
 * Updates are relaxed atomics; io_ticks/time_in_queue use a tiny lock
 * because they integrate "requests in flight" over time, as Linux does.
 */
#ifndef VBDFS_STATS_H
#define VBDFS_STATS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "hist.h"

enum stat_op { STAT_READ, STAT_WRITE, STAT_DISCARD, STAT_FLUSH, STAT_NR_OPS };

struct op_stats {
	_Atomic uint64_t ios;       /* completed requests */
	_Atomic uint64_t merges;    /* always 0 today: the engine does not merge */
	_Atomic uint64_t sectors;   /* 512-byte sectors transferred */
	_Atomic uint64_t ticks_ns;  /* sum of request latencies */
	_Atomic uint64_t errors;    /* completed with BLKIF_RSP_ERROR/EOPNOTSUPP */
	struct hist latency;        /* ns */
};

struct dev_stats {
	struct op_stats op[STAT_NR_OPS];

	/* in-flight accounting (Linux fields 9, 10, 11) */
	pthread_mutex_t busy_lock;
	uint64_t in_flight;
	uint64_t busy_since_ns;     /* last change of in_flight */
	uint64_t io_ticks_ns;       /* time with in_flight > 0 */
	uint64_t time_in_queue_ns;  /* integral of in_flight over time */

	/* ring and protocol */
	_Atomic uint64_t bad_requests;    /* rejected before reaching the image */
	_Atomic uint64_t notify_in;       /* event channel kicks from the guest */
	_Atomic uint64_t spurious_in;     /* kicks that found no request */
	_Atomic uint64_t notify_out;      /* kicks sent to the guest */
	_Atomic uint64_t batches;         /* ring drains that found >= 1 request */
	_Atomic uint64_t batched_reqs;    /* requests taken in those drains */
	_Atomic uint64_t ring_occupancy_max;
	_Atomic uint64_t out_of_reqs;     /* ring had requests but no free slot (oo_req) */
	_Atomic uint64_t grant_ops;       /* grant copies or maps performed */
	_Atomic uint64_t persistent_hits; /* persistent-grant cache hits */
};

void stats_init(struct dev_stats *s);
void stats_destroy(struct dev_stats *s);

/* A request enters service; returns its start time for stats_end(). */
uint64_t stats_start(struct dev_stats *s);

/* A request completes.  sectors counts 512-byte units; ok = status OKAY. */
void stats_end(struct dev_stats *s, enum stat_op op, uint64_t start_ns,
	       uint64_t sectors, int ok);

/* One ring drain took n requests; occupancy = requests pending on the ring. */
void stats_batch(struct dev_stats *s, unsigned n, unsigned occupancy);

/* A consistent copy of the in-flight fields, brought up to now. */
struct busy_snapshot {
	uint64_t in_flight, io_ticks_ns, time_in_queue_ns;
};
void stats_busy(struct dev_stats *s, struct busy_snapshot *out);

/* Format the 17 fields of /sys/block/<dev>/stat, "%8llu" separated by
 * spaces and ended by a newline.  Returns the length (always < len). */
size_t stats_format_stat(struct dev_stats *s, char *buf, size_t len);

/* Name of an op ("read", "write", "discard", "flush"). */
const char *stat_op_name(enum stat_op op);

#endif
