/*
 * engine.c - lifecycle of the blkif request engine of one device: map the
 * rings, bind the event channels, preallocate the request pools, start and
 * stop the queue threads.  The per-ring work is in queue.c, the image I/O
 * in io.c, the validation rules in request.c.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine_priv.h"
#include "formats/image.h"

static void errmsg(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void errmsg(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/*
 * rule 20: what xenbus.c negotiated is checked once more here and refused,
 * never clamped.  (Rules 21 and 24 are xenbus.c's: watches and publishing
 * the limits before InitWait; the limits it publishes are the ENGINE_*
 * constants of engine.h.)
 */
static int check_params(const struct engine_params *p, char *err, size_t errlen)
{
	if (!p->hv || !p->img) {
		errmsg(err, errlen, "engine: no transport or no image");
		return -EINVAL;
	}
	if (p->nr_queues < 1 || p->nr_queues > ENGINE_MAX_QUEUES) {
		errmsg(err, errlen, "engine: %u queues (allowed 1..%u)", p->nr_queues,
		       ENGINE_MAX_QUEUES);
		return -EINVAL;
	}
	if (p->ring_order > ENGINE_MAX_RING_ORDER) {
		errmsg(err, errlen, "engine: ring-page-order %u (allowed 0..%u)", p->ring_order,
		       ENGINE_MAX_RING_ORDER);
		return -EINVAL;
	}
	if (p->abi != BLKIF_ABI_X86_64 && p->abi != BLKIF_ABI_X86_32) {
		errmsg(err, errlen, "engine: unknown ABI %d", (int)p->abi);
		return -EINVAL;
	}
	if (p->max_indirect_segs > ENGINE_MAX_SEGS) {
		errmsg(err, errlen, "engine: %u indirect segments (at most %u)",
		       p->max_indirect_segs, ENGINE_MAX_SEGS);
		return -EINVAL;
	}
	if (p->sector_size < 512 || p->sector_size > HV_PAGE_SIZE ||
	    (p->sector_size & (p->sector_size - 1))) {
		errmsg(err, errlen, "engine: sector size %u (512..4096, a power of two)",
		       p->sector_size);
		return -EINVAL;
	}
	return 0;
}

/* Request pool and its per-slot buffers: nothing is allocated later. */
static int alloc_pool(struct engine *e, struct eng_queue *q)
{
	size_t n = q->nreqs, segs = e->max_segs;

	q->reqs = calloc(n, sizeof(*q->reqs));
	q->iseg_mem = calloc(n * segs, sizeof(*q->iseg_mem));
	q->copy_mem = calloc(n * segs, sizeof(*q->copy_mem));
	q->grant_mem = e->p.persistent ? calloc(n * segs, sizeof(*q->grant_mem)) : NULL;
	q->iov_mem = calloc(e->p.persistent ? n * segs : n, sizeof(*q->iov_mem));
	/* Bounce buffers: reserved address space, backed by memory only as
	 * requests of that size actually arrive. */
	q->bounce_bytes = n * segs * HV_PAGE_SIZE;
	q->bounce = mmap(NULL, q->bounce_bytes, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (q->bounce == MAP_FAILED)
		q->bounce = NULL;
	if (!q->reqs || !q->iseg_mem || !q->copy_mem || !q->bounce || !q->iov_mem ||
	    (e->p.persistent && !q->grant_mem))
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		struct blkreq *rq = &q->reqs[i];

		rq->q = q;
		rq->buf = q->bounce + i * segs * HV_PAGE_SIZE;
		rq->iseg = q->iseg_mem + i * segs;
		rq->copy = q->copy_mem + i * segs;
		rq->grant = q->grant_mem ? q->grant_mem + i * segs : NULL;
		rq->iov = q->iov_mem + (e->p.persistent ? i * segs : i);
		rq->next = i + 1 < n ? &q->reqs[i + 1] : NULL;
	}
	q->free_list = &q->reqs[0];
	return 0;
}

static int queue_setup(struct engine *e, unsigned i, char *err, size_t errlen)
{
	struct eng_queue *q = &e->q[i];
	struct hv *hv = e->p.hv;
	int r = 0;

	q->e = e;
	q->index = i;
	q->ch_fd = -1;
	q->ring_pages = 1u << e->p.ring_order;
	q->sring = hv->ops->map(hv, e->p.domid, e->p.queue[i].ring_ref, q->ring_pages, true, &r);
	if (!q->sring) {
		errmsg(err, errlen, "queue %u: cannot map the ring (%u pages): %s", i,
		       q->ring_pages, strerror(r < 0 ? -r : r > 0 ? r : EIO));
		return r < 0 ? r : -EIO;
	}
	ring_init(&q->ring, q->sring, e->p.abi, (size_t)q->ring_pages * HV_PAGE_SIZE);

	q->ch = hv->ops->evtchn_bind(hv, e->p.domid, e->p.queue[i].evtchn, &r);
	if (!q->ch) {
		errmsg(err, errlen, "queue %u: cannot bind event channel %u: %s", i,
		       e->p.queue[i].evtchn, strerror(r < 0 ? -r : r > 0 ? r : EIO));
		return r < 0 ? r : -EIO;
	}
	q->ch_fd = hv->ops->evtchn_fd(q->ch);

	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->cond, NULL);
	pthread_cond_init(&q->work_cond, NULL);
	q->sync_init = true;

	/* rule 5 and 22: a fresh pool per connection, 32 x ring pages */
	q->nreqs = ENGINE_REQS_PER_PAGE * q->ring_pages;
	if (alloc_pool(e, q) < 0) {
		errmsg(err, errlen, "queue %u: out of memory for %u requests", i, q->nreqs);
		return -ENOMEM;
	}
	if (e->p.persistent) {
		q->pg = pgrant_new(hv, e->p.domid, PGRANT_MAX);
		if (!q->pg) {
			errmsg(err, errlen, "queue %u: out of memory for persistent grants", i);
			return -ENOMEM;
		}
	}
	return 0;
}

static int queue_start_threads(struct eng_queue *q, char *err, size_t errlen)
{
	int r;

	for (unsigned w = 0; w < q->e->workers; w++) {
		r = pthread_create(&q->worker[w], NULL, queue_worker_main, q);
		if (r) {
			errmsg(err, errlen, "queue %u: cannot start a worker: %s", q->index,
			       strerror(r));
			return -r;
		}
		q->nworkers++;
	}
	r = pthread_create(&q->consumer, NULL, queue_consumer_main, q);
	if (r) {
		errmsg(err, errlen, "queue %u: cannot start its thread: %s", q->index, strerror(r));
		return -r;
	}
	q->consumer_started = true;
	return 0;
}

/* Stop the threads of every queue: intake first, then let the workers
 * finish what was taken (their responses are still published). */
static void stop_threads(struct engine *e)
{
	uint64_t one = 1;

	atomic_store(&e->stopping, true);
	if (write(e->stop_fd, &one, sizeof(one)) < 0)
		log_warn("engine: cannot signal stop: %s", strerror(errno));
	for (unsigned i = 0; i < e->p.nr_queues; i++) {
		struct eng_queue *q = &e->q[i];

		if (!q->sync_init)
			continue;
		pthread_mutex_lock(&q->lock);
		pthread_cond_broadcast(&q->cond);
		pthread_mutex_unlock(&q->lock);
	}
	for (unsigned i = 0; i < e->p.nr_queues; i++) {
		struct eng_queue *q = &e->q[i];

		if (q->consumer_started)
			pthread_join(q->consumer, NULL);
		q->consumer_started = false;
	}
	for (unsigned i = 0; i < e->p.nr_queues; i++) {
		struct eng_queue *q = &e->q[i];

		if (!q->sync_init)
			continue;
		pthread_mutex_lock(&q->lock);
		q->workers_exit = true;
		pthread_cond_broadcast(&q->work_cond);
		pthread_mutex_unlock(&q->lock);
		for (unsigned w = 0; w < q->nworkers; w++)
			pthread_join(q->worker[w], NULL);
		q->nworkers = 0;
	}
}

static void queue_teardown(struct engine *e, struct eng_queue *q)
{
	struct hv *hv = e->p.hv;

	pgrant_free(q->pg);
	q->pg = NULL;
	if (q->ch)
		hv->ops->evtchn_unbind(q->ch);
	q->ch = NULL;
	if (q->sring && hv->ops->unmap(hv, q->sring, q->ring_pages) < 0)
		log_warn("dom%u dev %u queue %u: cannot unmap the ring", e->p.domid, e->p.devid,
			 q->index);
	q->sring = NULL;
	if (q->bounce)
		munmap(q->bounce, q->bounce_bytes);
	q->bounce = NULL;
	free(q->reqs);
	free(q->iseg_mem);
	free(q->copy_mem);
	free(q->grant_mem);
	free(q->iov_mem);
	q->iov_mem = NULL;
	q->reqs = NULL;
	q->iseg_mem = NULL;
	q->copy_mem = NULL;
	q->grant_mem = NULL;
	if (q->sync_init) {
		pthread_cond_destroy(&q->work_cond);
		pthread_cond_destroy(&q->cond);
		pthread_mutex_destroy(&q->lock);
		q->sync_init = false;
	}
}

static void engine_free(struct engine *e)
{
	for (unsigned i = 0; i < e->p.nr_queues; i++)
		queue_teardown(e, &e->q[i]);
	if (e->stop_fd >= 0)
		close(e->stop_fd);
	pthread_mutex_destroy(&e->rl.lock);
	free(e);
}

/* The engine and its queues, ready to serve, with no thread started yet
 * (sync: none ever will, see engine_start_sync). */
static struct engine *engine_new(const struct engine_params *p, bool sync, char *err,
				 size_t errlen)
{
	struct engine *e;

	if (check_params(p, err, errlen) < 0)
		return NULL;
	e = calloc(1, sizeof(*e));
	if (!e) {
		errmsg(err, errlen, "engine: out of memory");
		return NULL;
	}
	e->p = *p;
	e->lim = (struct req_limits){
		.flush = p->feature_flush, .barrier = p->feature_barrier,
		.discard = p->feature_discard, .discard_secure = p->discard_secure,
		.readonly = p->readonly, .max_indirect_segs = p->max_indirect_segs,
		.sector_size = p->sector_size, .discard_granularity = p->discard_granularity,
	};
	atomic_store(&e->sectors, img_size(p->img) / 512);
	e->max_segs = p->max_indirect_segs > BLKIF_MAX_SEGMENTS_PER_REQUEST
			      ? p->max_indirect_segs : BLKIF_MAX_SEGMENTS_PER_REQUEST;
	/* More I/O threads than CPUs only adds context switches for cached
	 * data; fewer than two would serialize behind one slow request. */
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	e->workers = cpus < 2 ? 2 : cpus > ENGINE_WORKERS ? ENGINE_WORKERS : (unsigned)cpus;
	if (sync)
		e->workers = 0;
	ratelimit_init(&e->rl, 10, 5);
	e->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (e->stop_fd < 0) {
		errmsg(err, errlen, "engine: eventfd: %s", strerror(errno));
		engine_free(e);
		return NULL;
	}
	for (unsigned i = 0; i < p->nr_queues; i++) {
		if (queue_setup(e, i, err, errlen) < 0) {
			engine_free(e);
			return NULL;
		}
	}
	return e;
}

struct engine *engine_start_sync(const struct engine_params *p, char *err, size_t errlen)
{
	return engine_new(p, true, err, errlen);
}

struct engine *engine_start(const struct engine_params *p, char *err, size_t errlen)
{
	struct engine *e = engine_new(p, false, err, errlen);

	if (!e)
		return NULL;
	for (unsigned i = 0; i < p->nr_queues; i++) {
		if (queue_start_threads(&e->q[i], err, errlen) < 0) {
			stop_threads(e);
			engine_free(e);
			return NULL;
		}
	}
	return e;
}

/* rule 22: after this nothing of the connection is left; a new connection
 * gets a new engine with new pools. */
void engine_stop(struct engine *e)
{
	int r;

	if (!e)
		return;
	stop_threads(e);
	if (!e->p.readonly && (r = img_flush(e->p.img)) < 0)
		log_warn("dom%u dev %u: flush at disconnect failed: %s", e->p.domid, e->p.devid,
			 strerror(-r));
	engine_free(e);
}

void engine_set_sectors(struct engine *e, uint64_t sectors)
{
	atomic_store_explicit(&e->sectors, sectors, memory_order_release);
}

bool engine_broken(struct engine *e)
{
	return atomic_load(&e->broken);
}

/* Append to buf at *off, never past len (snprintf truncation). */
static void put(char *buf, size_t len, size_t *off, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void put(char *buf, size_t len, size_t *off, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*off >= len)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf + *off, len - *off, fmt, ap);
	va_end(ap);
	if (n > 0)
		*off = *off + (size_t)n < len ? *off + (size_t)n : len - 1;
}

size_t engine_format_info(struct engine *e, char *buf, size_t len, bool json)
{
	const struct engine_params *p = &e->p;
	char feat[96];
	size_t off = 0, f = 0;

	if (!buf || !len)
		return 0;
	buf[0] = '\0';
	feat[0] = '\0';
	put(feat, sizeof(feat), &f, "%s%s%s%s%s%s", p->feature_flush ? " flush" : "",
	    p->feature_barrier ? " barrier" : "", p->feature_discard ? " discard" : "",
	    p->discard_secure ? " discard-secure" : "", p->max_indirect_segs ? " indirect" : "",
	    p->persistent ? " persistent" : "");
	const char *features = feat[0] ? feat + 1 : "";
	unsigned long long sectors = (unsigned long long)atomic_load(&e->sectors);
	unsigned slots = e->q[0].ring.size;

	if (json) {
		put(buf, len, &off,
		    "{\"abi\":\"%s\",\"ring_page_order\":%u,\"ring_pages\":%u,\"ring_slots\":%u,"
		    "\"queues\":%u,\"persistent\":%s,\"max_indirect_segments\":%u,"
		    "\"features\":\"%s\",\"sector_size\":%u,\"sectors\":%llu,"
		    "\"readonly\":%s,\"broken\":%s}\n",
		    blkif_abi_name(p->abi), p->ring_order, 1u << p->ring_order, slots,
		    p->nr_queues, p->persistent ? "true" : "false", p->max_indirect_segs,
		    features, p->sector_size, sectors, p->readonly ? "true" : "false",
		    engine_broken(e) ? "true" : "false");
	} else {
		put(buf, len, &off,
		    "abi: %s\nring-page-order: %u\nring-pages: %u\nring-slots: %u\nqueues: %u\n"
		    "persistent: %d\nmax-indirect-segments: %u\nfeatures: %s\nsector-size: %u\n"
		    "sectors: %llu\nreadonly: %d\nbroken: %d\n",
		    blkif_abi_name(p->abi), p->ring_order, 1u << p->ring_order, slots,
		    p->nr_queues, p->persistent, p->max_indirect_segs, features, p->sector_size,
		    sectors, p->readonly, engine_broken(e));
	}
	return off;
}
