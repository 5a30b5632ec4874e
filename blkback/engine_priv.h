/*
 * engine_priv.h - the request engine's private structures, shared by
 * engine.c (lifecycle), queue.c (ring intake, completion, threads) and
 * io.c (running one validated request against the image).
 *
 * Per queue (= per ring): one consumer thread takes requests off the ring
 * in order, validates them and hands them to up to ENGINE_WORKERS threads
 * that run the image I/O, so requests of one ring are in flight together.
 * Small reads that hit the page cache the consumer answers itself
 * (io_read_cached): that saves two thread wake-ups per request.
 * Completions write responses under the queue lock and one of them at a
 * time publishes and notifies for everything written so far (batching).
 */
#ifndef VBDFS_ENGINE_PRIV_H
#define VBDFS_ENGINE_PRIV_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/uio.h>

#include "engine.h"
#include "pgrant.h"
#include "request.h"
#include "ring.h"
#include "util/log.h"
#include "util/stats.h"

#define ENGINE_WORKERS 4          /* image I/O threads per queue, at most */
#define ENGINE_REQS_PER_PAGE 32u  /* rule 5: request pool = 32 x ring pages */
/* READs up to this size are tried on the consumer thread first when their
 * data is in the page cache (io_read_cached): for them a hand-off to a
 * worker costs more than the read itself.  Larger ones go to the workers,
 * which run them in parallel. */
#define ENGINE_INLINE_MAX (64u * 1024)
#define ENGINE_MAX_SEGS ((unsigned)(BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST * BLKIF_SEGS_PER_INDIRECT_PAGE))

struct eng_queue;

/* One segment's persistent grant, if it has one. */
struct seg_grant {
	struct pgrant *pg; /* NULL: move this segment with grant copy */
	void *addr;        /* the mapped guest page */
};

/* A request slot: preallocated per ring slot, nothing is malloc'ed per
 * request. */
struct blkreq {
	struct blkif_req wire;        /* the private copy of the ring slot */
	struct eng_queue *q;
	const struct blkif_request_segment *seg; /* wire.seg or iseg */
	unsigned nseg;
	uint64_t sectors;             /* 512-byte sectors of data (or discarded) */
	uint64_t start_ns;
	bool counted;                 /* stats_start() was called */
	bool inflight;                /* counted in queue->inflight */
	enum stat_op sop;
	uint8_t trace_op, trace_flags;
	char *buf;                    /* bounce buffer: max_segs pages */
	struct blkif_request_segment *iseg; /* INDIRECT segments, max_segs */
	struct hv_copy_seg *copy;     /* max_segs */
	struct iovec *iov;            /* max_segs, persistent mode only */
	struct seg_grant *grant;      /* max_segs, persistent mode only */
	unsigned held;                /* grant[0..held) are held */
	size_t touched;               /* bytes of buf maybe resident (consumer only) */
	size_t fetched;               /* bytes of buf io_fetch_indirect() wrote */
	struct blkreq *next;          /* free list / work queue */
};

struct eng_queue {
	struct engine *e;
	unsigned index;
	void *sring;                  /* mapped ring pages */
	unsigned ring_pages;
	struct blk_ring ring;
	struct hv_evtchn *ch;
	int ch_fd;

	pthread_mutex_t lock;         /* everything below, and ring responses */
	pthread_cond_t cond;          /* consumer: a slot was freed / drained */
	pthread_cond_t work_cond;     /* workers: work queued / exit */
	bool sync_init;
	struct blkreq *reqs;
	unsigned nreqs;
	struct blkreq *free_list;
	struct blkreq *work_head, *work_tail;
	struct blkreq *batch_head, *batch_tail; /* consumer only: not yet handed over */
	unsigned batch_n;
	unsigned inflight;            /* handed to workers, not yet answered */
	bool consumer_waiting;
	bool pushing;                 /* some thread is publishing responses */
	bool workers_exit;
	bool broken;

	char *bounce;                 /* nreqs * max_segs pages, mmap'ed */
	size_t bounce_bytes;
	/* consumer thread only (see ENGINE_BOUNCE_BUDGET): */
	size_t bounce_resident;       /* sum of reqs[].touched */
	size_t bounce_hwm;            /* bounce[0..hwm) holds every touched page */
	struct blkif_request_segment *iseg_mem;
	struct hv_copy_seg *copy_mem;
	struct seg_grant *grant_mem;
	struct iovec *iov_mem;
	struct pgrant_cache *pg;      /* persistent mode only */

	unsigned unpushed;            /* consumer only: inline answers not yet published */
	unsigned spurious_run;        /* consecutive kicks that found nothing */
	uint64_t last_purge_ns;
	bool notify_failed;
	pthread_t consumer;
	bool consumer_started;
	pthread_t worker[ENGINE_WORKERS];
	unsigned nworkers;
};

struct engine {
	struct engine_params p;
	struct req_limits lim;
	_Atomic uint64_t sectors;     /* live size, 512-byte sectors */
	atomic_bool stopping;
	atomic_bool broken;
	int stop_fd;                  /* eventfd, readable once stopping */
	unsigned max_segs;            /* per request: max(11, indirect) */
	unsigned workers;             /* per queue: online CPUs, 2..ENGINE_WORKERS;
				       * 0: a synchronous engine (engine_start_sync) */
	struct ratelimit rl;          /* guest-triggered messages */
	struct eng_queue q[ENGINE_MAX_QUEUES];
};

/* engine.c: engine_start() without any thread.  Its queues are served
 * only by queue_serve_once() on the caller's thread, every request run to
 * completion before the next is taken.  The fuzz target
 * t/fuzz/fuzz_blkif_req.c drives the production intake, validation, I/O
 * and completion code deterministically this way.  engine_stop() ends it. */
struct engine *engine_start_sync(const struct engine_params *p, char *err, size_t errlen);

/* queue.c */
void *queue_consumer_main(void *arg);
void *queue_worker_main(void *arg);

enum drain_result {
	DRAIN_IDLE,   /* nothing more to take: wait for an event */
	DRAIN_MORE,   /* requests are waiting to be taken */
	DRAIN_FULL,   /* no free slot (rules 4, 5): wait for a completion */
	DRAIN_BROKEN, /* the frontend broke the ring protocol (rule 3) */
};
/* One round of the consumer thread's loop: take every request published
 * (as of one snapshot of req_prod), purge persistent grants when due, and
 * re-arm req_event if the ring is empty.  The consumer thread calls it in
 * its loop; so does the caller of a synchronous engine (without workers
 * it returns only once every request taken was answered and published). */
enum drain_result queue_serve_once(struct eng_queue *q);

/* io.c: the image I/O (and guest data movement) of a validated request;
 * returns its BLKIF_RSP_* status. */
int16_t io_execute(struct eng_queue *q, struct blkreq *rq);
/* A validated READ of at most ENGINE_INLINE_MAX bytes whose data is all
 * in the page cache: run it now (true, *status set).  false: nothing was
 * done, hand it to the workers. */
bool io_read_cached(struct eng_queue *q, struct blkreq *rq, int16_t *status);
/* Read the segments of an INDIRECT request from its indirect pages
 * (grant copy into the bounce buffer, each entry decoded once). */
struct req_verdict io_fetch_indirect(struct eng_queue *q, struct blkreq *rq);
/* The bytes of rq->buf (from its start, whole pages) that running the
 * validated request touches, including its indirect pages. */
size_t io_bounce_bytes(const struct eng_queue *q, const struct blkreq *rq);
/* Persistent mode: hold the grants of every segment (rule 16). */
struct req_verdict io_hold_grants(struct eng_queue *q, struct blkreq *rq);
/* now: now_ns(), the grants' last use (for the idle purge). */
void io_release_grants(struct eng_queue *q, struct blkreq *rq, uint64_t now);

static inline void stat_add(struct dev_stats *s, _Atomic uint64_t *field, uint64_t n)
{
	if (s)
		atomic_fetch_add_explicit(field, n, memory_order_relaxed);
}
#define STAT_ADD(e, field, n) \
	stat_add((e)->p.stats, (e)->p.stats ? &(e)->p.stats->field : NULL, (n))

#endif
