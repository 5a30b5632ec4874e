/*
 * queue.c - the threads of one blkif ring: the consumer that takes
 * requests off the ring, the workers that run them, and the completion
 * path that answers them.  See engine_priv.h for the model.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "engine_priv.h"
#include "util/trace.h"

#define SPURIOUS_MAX_DELAY_MS 1000 /* XSA-332 backoff ceiling */
#define PGRANT_IDLE_NS (60ull * 1000000000ull)
#define PGRANT_PURGE_EVERY_NS 100000000ull /* 100 ms, as Linux */
#define IDLE_CHECK_MS 100 /* while bounce memory waits for the queue to idle */

static bool stopping(const struct engine *e)
{
	return atomic_load_explicit(&e->stopping, memory_order_acquire);
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- completion ---- */

static void notify_guest(struct eng_queue *q)
{
	struct engine *e = q->e;

	if (e->p.hv->ops->evtchn_notify(q->ch) < 0) {
		if (!q->notify_failed)
			log_warn("dom%u dev %u queue %u: cannot notify the frontend",
				 e->p.domid, e->p.devid, q->index);
		q->notify_failed = true;
		return;
	}
	STAT_ADD(e, notify_out, 1);
}

/*
 * Publish every response written so far and notify if the frontend asked
 * (rule 18).  Called with q->lock held; returns with it released.  Only
 * one thread publishes at a time: the others just leave their responses
 * for it, so a burst of completions costs one push and at most a few
 * notifications.
 */
static void push_and_unlock(struct eng_queue *q)
{
	if (q->pushing) {
		pthread_mutex_unlock(&q->lock);
		return;
	}
	q->pushing = true;
	while (q->ring.rsp_pushed != q->ring.rsp_prod_pvt) {
		bool notify = ring_push_responses(&q->ring);

		pthread_mutex_unlock(&q->lock);
		if (notify)
			notify_guest(q);
		pthread_mutex_lock(&q->lock);
	}
	q->pushing = false;
	pthread_mutex_unlock(&q->lock);
}

static void trace_request(struct eng_queue *q, struct blkreq *rq, int16_t status, uint64_t now)
{
	struct engine *e = q->e;
	struct trace_rec t;

	if (!e->p.trace)
		return;
	memset(&t, 0, sizeof(t));
	t.start_ns = rq->start_ns;
	t.done_ns = now;
	t.sector = rq->wire.sector_number;
	t.nr_sectors = rq->sectors > UINT32_MAX ? UINT32_MAX : (uint32_t)rq->sectors;
	t.domid = e->p.domid;
	t.queue = (uint16_t)q->index;
	t.op = rq->trace_op;
	t.flags = rq->trace_flags;
	t.status = status;
	trace_add(e->p.trace, &t);
}

/* Statistics, trace, the response in its ring slot and the slot back to
 * the pool; returns with q->lock held, the response not yet published. */
static void answer_locked(struct eng_queue *q, struct blkreq *rq, int16_t status)
{
	struct engine *e = q->e;
	uint64_t now = e->p.trace || rq->held ? now_ns() : 0; /* one clock read for both */

	if (rq->held)
		io_release_grants(q, rq, now);
	if (rq->counted && e->p.stats)
		stats_end(e->p.stats, rq->sop, rq->start_ns, rq->sectors,
			  status == BLKIF_RSP_OKAY);
	trace_request(q, rq, status, now);

	pthread_mutex_lock(&q->lock);
	ring_put_response(&q->ring, rq->wire.id, req_response_op(&rq->wire), status);
	if (rq->inflight)
		q->inflight--;
	rq->next = q->free_list;
	q->free_list = rq;
	if (q->consumer_waiting) {
		q->consumer_waiting = false;
		pthread_cond_signal(&q->cond);
	}
}

/* Answer a request and publish (any thread). */
static void complete(struct eng_queue *q, struct blkreq *rq, int16_t status)
{
	answer_locked(q, rq, status);
	push_and_unlock(q);
}

/*
 * Answer a request the consumer served itself (io_read_cached) without
 * publishing yet: drain() publishes every INLINE_PUSH_BATCH of them and at
 * its end (before it could wait for anything), so the frontend gets one
 * notification and one wake-up for a batch instead of one per request.
 * Measured with bench/engine.sh: publishing every 1 or 8 answers made
 * both sides sleep and wake several times per batch (each wake-up waits
 * for a CPU on a busy machine); 32 (a whole single-page ring) halved the
 * backend's CPU per request.  A worker's completion publishes them too.
 */
#define INLINE_PUSH_BATCH 32u

static void complete_inline(struct eng_queue *q, struct blkreq *rq, int16_t status)
{
	answer_locked(q, rq, status);
	pthread_mutex_unlock(&q->lock);
	q->unpushed++;
}

static void push_inline(struct eng_queue *q)
{
	if (!q->unpushed)
		return;
	q->unpushed = 0;
	pthread_mutex_lock(&q->lock);
	push_and_unlock(q);
}

/* ---- workers ---- */

/* Take the oldest queued request and run it to completion; false if the
 * work queue is empty.  Called and returns with q->lock held. */
static bool work_one(struct eng_queue *q)
{
	struct blkreq *rq = q->work_head;

	if (!rq)
		return false;
	q->work_head = rq->next;
	if (!q->work_head)
		q->work_tail = NULL;
	pthread_mutex_unlock(&q->lock);
	complete(q, rq, io_execute(q, rq));
	pthread_mutex_lock(&q->lock);
	return true;
}

void *queue_worker_main(void *arg)
{
	struct eng_queue *q = arg;

	pthread_mutex_lock(&q->lock);
	for (;;) {
		while (!q->work_head && !q->workers_exit)
			pthread_cond_wait(&q->work_cond, &q->lock);
		if (!work_one(q))
			break; /* exit only once the queue is empty */
	}
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

/* Hand the requests collected by dispatch() to the workers: one lock and
 * one wake-up for several requests. */
static void flush_batch(struct eng_queue *q)
{
	unsigned n = q->batch_n;

	if (!n)
		return;
	pthread_mutex_lock(&q->lock);
	q->inflight += n;
	if (q->work_tail)
		q->work_tail->next = q->batch_head;
	else
		q->work_head = q->batch_head;
	q->work_tail = q->batch_tail;
	if (n == 1)
		pthread_cond_signal(&q->work_cond);
	else
		pthread_cond_broadcast(&q->work_cond);
	pthread_mutex_unlock(&q->lock);
	q->batch_head = q->batch_tail = NULL;
	q->batch_n = 0;
	if (!q->e->workers) {
		/* a synchronous engine (engine_start_sync): no worker
		 * threads, the consumer's caller runs the work itself */
		pthread_mutex_lock(&q->lock);
		while (work_one(q))
			;
		pthread_mutex_unlock(&q->lock);
	}
}

/* Queue a validated request for the workers (consumer thread only). */
static void dispatch(struct eng_queue *q, struct blkreq *rq)
{
	rq->inflight = true;
	rq->next = NULL;
	if (q->batch_tail)
		q->batch_tail->next = rq;
	else
		q->batch_head = rq;
	q->batch_tail = rq;
	if (++q->batch_n >= q->e->workers)
		flush_batch(q);
}

/* rule 23: wait until nothing taken before the barrier is in flight. */
static void wait_drained(struct eng_queue *q)
{
	flush_batch(q);
	pthread_mutex_lock(&q->lock);
	while (q->inflight) {
		q->consumer_waiting = true;
		pthread_cond_wait(&q->cond, &q->lock);
	}
	pthread_mutex_unlock(&q->lock);
}

/* ---- bounce memory (ENGINE_BOUNCE_BUDGET, issue 6) ---- */

/*
 * Give the touched bounce pages back to the system: one madvise over
 * bounce[0..hwm).  Consumer thread only, and only with nothing in flight
 * (no worker uses a bounce buffer then, and the consumer itself is between
 * requests or holds one whose buffer has no live data yet).  The free list
 * is a stack, so the slots in use tend to be the first ones and hwm stays
 * small for a steady load.
 */
static void bounce_release(struct eng_queue *q)
{
	struct engine *e = q->e;

	if (!q->bounce_hwm)
		return;
	if (madvise(q->bounce, q->bounce_hwm, MADV_DONTNEED) < 0)
		log_limited(&e->rl, VLOG_WARN, "dom%u dev %u queue %u: cannot release bounce memory: %s",
			    e->p.domid, e->p.devid, q->index, strerror(errno));
	for (unsigned i = 0; i < q->nreqs; i++)
		q->reqs[i].touched = 0;
	q->bounce_resident = 0;
	q->bounce_hwm = 0;
}

/*
 * Account for the need bytes of bounce memory (from rq->buf on) a request
 * is about to touch or, if rejected, has touched reading indirect pages.
 * If that would take the queue over its budget, wait until everything in
 * flight completed (like waiting for a free slot: counted in out_of_reqs),
 * release, and let the request go on alone: so a request larger than the
 * budget still runs, and the resident bounce memory stays under
 * max(budget, one request).  Consumer thread only.
 */
static void bounce_charge(struct eng_queue *q, struct blkreq *rq, size_t need)
{
	size_t end;

	if (need <= rq->touched)
		return; /* pages this slot already has: nothing new */
	if (q->bounce_resident + (need - rq->touched) > ENGINE_BOUNCE_BUDGET) {
		STAT_ADD(q->e, out_of_reqs, 1);
		wait_drained(q);
		bounce_release(q);
	}
	q->bounce_resident += need - rq->touched;
	rq->touched = need;
	end = (size_t)(rq->buf - q->bounce) + need;
	if (end > q->bounce_hwm)
		q->bounce_hwm = end;
}

/* Between requests, when nothing is in flight any more and the ring is
 * empty: the queue is idle, give its bounce memory back. */
static void bounce_release_if_idle(struct eng_queue *q)
{
	bool idle;

	if (!q->bounce_hwm)
		return;
	pthread_mutex_lock(&q->lock);
	idle = !q->inflight && !q->batch_n;
	pthread_mutex_unlock(&q->lock);
	if (idle)
		bounce_release(q);
}

/* ---- intake ---- */

/* What the request is, for statistics and the trace. */
static void classify(struct blkreq *rq)
{
	const struct blkif_req *w = &rq->wire;

	rq->counted = true;
	rq->trace_flags = 0;
	switch (w->operation) {
	case BLKIF_OP_READ:
		rq->sop = STAT_READ;
		rq->trace_op = TRACE_READ;
		break;
	case BLKIF_OP_WRITE:
		rq->sop = STAT_WRITE;
		rq->trace_op = TRACE_WRITE;
		break;
	case BLKIF_OP_INDIRECT:
		rq->trace_flags = TRACE_F_INDIRECT;
		if (w->indirect_op == BLKIF_OP_READ || w->indirect_op == BLKIF_OP_WRITE) {
			bool rd = w->indirect_op == BLKIF_OP_READ;
			rq->sop = rd ? STAT_READ : STAT_WRITE;
			rq->trace_op = rd ? TRACE_READ : TRACE_WRITE;
		} else {
			rq->counted = false;
			rq->trace_op = TRACE_OTHER;
		}
		break;
	case BLKIF_OP_DISCARD:
		rq->sop = STAT_DISCARD;
		rq->trace_op = TRACE_DISCARD;
		if (w->discard_flag & BLKIF_DISCARD_SECURE)
			rq->trace_flags = TRACE_F_SECURE;
		break;
	case BLKIF_OP_FLUSH_DISKCACHE:
	case BLKIF_OP_WRITE_BARRIER:
		rq->sop = w->nr_segments ? STAT_WRITE : STAT_FLUSH;
		rq->trace_op = w->operation == BLKIF_OP_FLUSH_DISKCACHE ? TRACE_FLUSH
									  : TRACE_BARRIER;
		break;
	default:
		rq->counted = false;
		rq->trace_op = TRACE_OTHER;
		break;
	}
}

static struct req_verdict validate(struct eng_queue *q, struct blkreq *rq)
{
	struct engine *e = q->e;
	const struct blkif_req *w = &rq->wire;
	uint64_t live = atomic_load_explicit(&e->sectors, memory_order_acquire);
	struct req_verdict v = req_check_header(w, &e->lim, live);

	if (v.status != BLKIF_RSP_OKAY)
		return v;
	if (w->operation == BLKIF_OP_DISCARD) {
		rq->sectors = w->nr_sectors;
		return v;
	}
	if (w->operation == BLKIF_OP_INDIRECT) {
		v = io_fetch_indirect(q, rq);
		if (v.status != BLKIF_RSP_OKAY)
			return v;
	} else {
		rq->seg = w->seg; /* nr_segments <= 11 was checked (rule 8) */
		rq->nseg = w->nr_segments;
	}
	if (!rq->nseg)
		return v; /* a pure flush or barrier */
	v = req_check_segments(rq->seg, rq->nseg, w->sector_number, &e->lim, live, &rq->sectors);
	if (v.status == BLKIF_RSP_OKAY && q->pg)
		v = io_hold_grants(q, rq); /* rule 16 */
	return v;
}

/* A request that fails validation: error response, counted, logged at a
 * limited rate, and a short pause so a hostile frontend cannot make us
 * spin on garbage (rule 19). */
static void reject(struct eng_queue *q, struct blkreq *rq, struct req_verdict v)
{
	struct engine *e = q->e;

	STAT_ADD(e, bad_requests, 1);
	log_limited(&e->rl, VLOG_WARN, "dom%u dev %u queue %u: %s (op %u, id %llu, sector %llu)",
		    e->p.domid, e->p.devid, q->index, v.reason, rq->wire.operation,
		    (unsigned long long)rq->wire.id, (unsigned long long)rq->wire.sector_number);
	complete(q, rq, v.status);
	flush_batch(q); /* good requests taken before it need not wait */
	if (e->workers)
		sleep_ms(1); /* (a synchronous engine's caller is a fuzzer) */
}

/* One request just copied off the ring. */
static void handle(struct eng_queue *q, struct blkreq *rq)
{
	struct engine *e = q->e;
	struct req_verdict v;

	rq->sectors = 0;
	rq->nseg = 0;
	rq->held = 0;
	rq->fetched = 0;
	rq->inflight = false;
	classify(rq);
	if (rq->counted && e->p.stats)
		rq->start_ns = stats_start(e->p.stats);
	else
		rq->start_ns = now_ns();

	v = validate(q, rq);
	if (v.status != BLKIF_RSP_OKAY) {
		bounce_charge(q, rq, rq->fetched);
		reject(q, rq, v);
		return;
	}
	bounce_charge(q, rq, io_bounce_bytes(q, rq));
	if (rq->wire.operation == BLKIF_OP_WRITE_BARRIER) {
		/* rule 23: drain, then run it here on the consumer thread so
		 * nothing newer starts before it completes. */
		wait_drained(q);
		complete(q, rq, io_execute(q, rq));
		return;
	}
	int16_t st;
	if (io_read_cached(q, rq, &st)) {
		complete_inline(q, rq, st);
		if (q->unpushed >= INLINE_PUSH_BATCH)
			push_inline(q);
		return;
	}
	dispatch(q, rq);
}

static void mark_broken(struct eng_queue *q)
{
	struct engine *e = q->e;

	q->broken = true;
	atomic_store(&e->broken, true);
	/* rule 3: log once, then serve this ring no more */
	log_err("dom%u dev %u queue %u: frontend provided bogus ring requests; "
		"not serving this ring until it disconnects",
		e->p.domid, e->p.devid, q->index);
}

/* Take every request the frontend published (as of one snapshot). */
static enum drain_result drain(struct eng_queue *q)
{
	struct engine *e = q->e;
	ring_idx_t rp = ring_req_prod(&q->ring); /* rule 2 */
	enum drain_result res = DRAIN_IDLE;
	unsigned n = 0, occupancy;

	pthread_mutex_lock(&q->lock);
	if (ring_prod_overflow(&q->ring, rp)) { /* rule 3 */
		pthread_mutex_unlock(&q->lock);
		mark_broken(q);
		return DRAIN_BROKEN;
	}
	occupancy = rp - q->ring.rsp_prod_pvt;
	while (q->ring.req_cons != rp && !stopping(e)) {
		struct blkreq *rq;

		/* rules 4 and 5: never overrun unanswered responses, and
		 * only take a request when a preallocated slot is free */
		if (ring_cons_overflow(&q->ring, q->ring.req_cons) || !q->free_list) {
			STAT_ADD(e, out_of_reqs, 1);
			res = DRAIN_FULL;
			break;
		}
		rq = q->free_list;
		q->free_list = rq->next;
		pthread_mutex_unlock(&q->lock);

		ring_take_request(&q->ring, &rq->wire); /* rules 1 and 6 */
		handle(q, rq);
		n++;
		pthread_mutex_lock(&q->lock);
	}
	pthread_mutex_unlock(&q->lock);
	flush_batch(q);
	push_inline(q);
	if (n) {
		q->spurious_run = 0;
		if (e->p.stats)
			stats_batch(e->p.stats, n, occupancy);
		if (res == DRAIN_IDLE)
			res = DRAIN_MORE;
	}
	return res;
}

/* Ring full of requests we have not answered yet: wait for a slot. */
static void wait_slot(struct eng_queue *q)
{
	pthread_mutex_lock(&q->lock);
	while ((ring_cons_overflow(&q->ring, q->ring.req_cons) || !q->free_list) &&
	       !stopping(q->e)) {
		q->consumer_waiting = true;
		pthread_cond_wait(&q->cond, &q->lock);
	}
	pthread_mutex_unlock(&q->lock);
}

/* Sleep until stop, or up to timeout_ms (-1: forever). */
static void wait_stop(struct engine *e, int timeout_ms)
{
	struct pollfd pfd = { .fd = e->stop_fd, .events = POLLIN };

	while (poll(&pfd, 1, timeout_ms) < 0 && errno == EINTR)
		;
}

/*
 * A kick that found no request (or an event channel that misbehaves):
 * after two in a row, wait 1, 2, 4 ... ms up to 1 s before looking at the
 * channel again, so an event storm cannot hold a CPU (rule 18, XSA-332).
 * Real work resets the run (drain()).
 */
static void spurious(struct eng_queue *q)
{
	unsigned run = ++q->spurious_run;

	STAT_ADD(q->e, spurious_in, 1);
	if (run >= 2) {
		unsigned shift = run - 2;
		int ms = shift >= 10 ? SPURIOUS_MAX_DELAY_MS : 1 << shift;
		if (ms > SPURIOUS_MAX_DELAY_MS)
			ms = SPURIOUS_MAX_DELAY_MS;
		wait_stop(q->e, ms);
	}
}

/*
 * Sleep on the event channel; false once the engine stops.  We do not spin
 * on req_prod first: measured with bench/engine.sh (4 KiB reads, QD32),
 * 20-100 us of spinning gained nothing on a quiet machine and lost up to a
 * third under load, where the frontend often waits for the very CPU we
 * would spin on.  (The same for vbd-front spinning on rsp_prod.)
 */
static bool wait_event(struct eng_queue *q)
{
	struct engine *e = q->e;
	struct pollfd pfd[2] = {
		{ .fd = e->stop_fd, .events = POLLIN },
		{ .fd = q->ch_fd, .events = POLLIN },
	};
	int r, k;

	/* With bounce memory to give back, look again now and then for the
	 * moment the queue goes idle (the last completion does not wake us). */
	r = poll(pfd, 2, q->bounce_hwm ? IDLE_CHECK_MS : -1);
	if (r < 0)
		return errno == EINTR || errno == EAGAIN;
	if (pfd[0].revents || stopping(e))
		return false;
	if (!pfd[1].revents)
		return true;
	k = e->p.hv->ops->evtchn_ack(q->ch);
	if (k > 0)
		STAT_ADD(e, notify_in, 1);
	if (k <= 0 || ring_req_prod(&q->ring) == q->ring.req_cons)
		spurious(q);
	return true;
}

enum drain_result queue_serve_once(struct eng_queue *q)
{
	enum drain_result r = drain(q);
	bool work;

	if (r == DRAIN_BROKEN)
		return r;
	if (q->pg && now_ns() - q->last_purge_ns > PGRANT_PURGE_EVERY_NS) {
		q->last_purge_ns = now_ns();
		pgrant_purge(q->pg, PGRANT_IDLE_NS); /* rule 16 */
	}
	if (r == DRAIN_FULL)
		return r;
	pthread_mutex_lock(&q->lock);
	work = ring_final_check(&q->ring); /* rule 18: re-arm req_event */
	pthread_mutex_unlock(&q->lock);
	return work ? DRAIN_MORE : DRAIN_IDLE;
}

void *queue_consumer_main(void *arg)
{
	struct eng_queue *q = arg;
	struct engine *e = q->e;

	while (!stopping(e)) {
		enum drain_result r = queue_serve_once(q);

		if (r == DRAIN_BROKEN) {
			wait_stop(e, -1); /* rule 3: never spin on a broken ring */
			break;
		}
		if (r == DRAIN_FULL) {
			wait_slot(q);
			continue;
		}
		if (r == DRAIN_MORE)
			continue;
		bounce_release_if_idle(q);
		if (!wait_event(q))
			break;
	}
	return NULL;
}
