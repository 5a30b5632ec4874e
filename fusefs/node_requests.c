/*
 * node_requests.c - /vbd/<dev>/requests, the live request stream.
 *
 * Each open() takes a trace cursor at "now"; read() returns the text of
 * the requests completed since, one line each (format below), and waits for
 * the next one when there is none: the read is parked (no FUSE thread
 * blocks) and answered by the waker thread when the device's trace calls
 * back.  O_NONBLOCK reads get EAGAIN instead, poll() and select() work, a
 * signal interrupts a waiting read (EINTR), and the stream ends (EOF) when
 * the device goes away.
 *
 * A trace has a single notify callback, so it only kicks the one waker
 * thread, which serves every parked read and poller of every device; the
 * callback costs an atomic load when nobody waits.
 *
 * Line format (blkparse's default header, action C, documented in vbdfs(8)):
 *   "%3u,%-3u %2u %8llu %5llu.%09llu %5u  C %3s %llu + %u [%d] %llu.%03lluus"
 *   major,minor queue sequence seconds.nanoseconds domid C RWBS
 *   sector + sectors [status] latency
 * seconds are since the device appeared in the tree; status is the blkif
 * status (0 OK, -1 error, -2 not supported); latency from taking the
 * request off the ring to its completion.  A reader that fell more than the
 * trace capacity behind gets "# missed N requests" where records were lost.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blkback/vbd.h"
#include "node.h"
#include "util/log.h"
#include "util/trace.h"

#define RECS_PER_FILL 64
#define LINE_MAX_LEN 192
#define STREAM_BUF (RECS_PER_FILL * LINE_MAX_LEN + 64)

struct pending {
	struct pending *next;
	fuse_req_t req;
	size_t size;
};

struct stream {
	struct fh h;
	struct stream *snext, *sprev;   /* all open streams */
	struct vbd *v;                  /* referenced */
	struct trace *tr;
	unsigned major, minor;
	uint64_t cursor;
	uint64_t t0;
	char buf[STREAM_BUF];           /* formatted, not yet read: [pos, len) */
	size_t pos, len;
	bool eof;
	struct pending *pend;           /* parked reads, oldest first */
	struct fuse_pollhandle *ph;
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static struct stream g_streams = { .snext = &g_streams, .sprev = &g_streams };
static atomic_uint nwaiting;       /* parked reads + poll handles */

static pthread_mutex_t wk_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wk_cond;
static bool wk_kicked, wk_stop, wk_started;
static pthread_t wk_thread;

void requests_kick(void)
{
	pthread_mutex_lock(&wk_lock);
	wk_kicked = true;
	pthread_cond_signal(&wk_cond);
	pthread_mutex_unlock(&wk_lock);
}

/* The trace's notify callback: on the engine's completion path. */
static void trace_kick(void *arg)
{
	if (atomic_load(&nwaiting))
		requests_kick();
}

void requests_attach(struct vbd *v)
{
	trace_set_notify(vbd_trace(v), trace_kick, NULL);
}

static void format_rec(struct stream *s, const struct trace_rec *r)
{
	uint64_t t = r->done_ns > s->t0 ? r->done_ns - s->t0 : 0;
	uint64_t lat = r->done_ns > r->start_ns ? r->done_ns - r->start_ns : 0;
	int n = snprintf(s->buf + s->len, STREAM_BUF - s->len,
			 "%3u,%-3u %2u %8" PRIu64 " %5" PRIu64 ".%09" PRIu64 " %5u  C %3s %" PRIu64
			 " + %" PRIu32 " [%d] %" PRIu64 ".%03" PRIu64 "us\n",
			 s->major, s->minor, (unsigned)r->queue, r->seq, t / UINT64_C(1000000000),
			 t % UINT64_C(1000000000), (unsigned)r->domid, trace_rwbs(r), r->sector,
			 r->nr_sectors, (int)r->status, lat / 1000, lat % 1000);

	if (n > 0 && (size_t)n < STREAM_BUF - s->len)
		s->len += (size_t)n;
}

/* Make text available without waiting; true if there is some.  Sets eof
 * when the device's trace was shut down and everything was read.  Caller
 * holds g_lock. */
static bool fill(struct stream *s)
{
	struct trace_rec recs[RECS_PER_FILL];
	uint64_t missed = 0;
	size_t n;

	if (s->pos < s->len)
		return true;
	s->pos = s->len = 0;
	if (s->eof)
		return false;
	n = trace_read(s->tr, &s->cursor, recs, RECS_PER_FILL, &missed, 0);
	if (missed) {
		int k = snprintf(s->buf, STREAM_BUF, "# missed %" PRIu64 " requests\n", missed);
		s->len = k > 0 ? (size_t)k : 0;
	}
	for (size_t i = 0; i < n; i++)
		format_rec(s, &recs[i]);
	if (s->len == 0 && trace_ready(s->tr, s->cursor))
		s->eof = true; /* ready with nothing to read: shut down */
	return s->len > 0;
}

/* Answer a read from what fill() made available (or EOF). */
static void answer(struct stream *s, fuse_req_t req, size_t size)
{
	size_t n = s->len - s->pos;

	if (n > size)
		n = size;
	fuse_reply_buf(req, n ? s->buf + s->pos : NULL, n);
	s->pos += n;
}

static void stream_destroy(struct fh *h)
{
	struct stream *s = (struct stream *)h;

	fs_fh_untrack(h);
	pthread_mutex_lock(&g_lock);
	s->sprev->snext = s->snext;
	s->snext->sprev = s->sprev;
	while (s->pend) {
		struct pending *p = s->pend;
		s->pend = p->next;
		atomic_fetch_sub(&nwaiting, 1);
		fuse_reply_buf(p->req, NULL, 0);
		free(p);
	}
	if (s->ph) {
		atomic_fetch_sub(&nwaiting, 1);
		fuse_pollhandle_destroy(s->ph);
		s->ph = NULL;
	}
	pthread_mutex_unlock(&g_lock);
	vbd_put(s->v);
	free(s);
}

void requests_open(fuse_req_t req, struct vbd *v, struct fuse_file_info *fi)
{
	struct stream *s = calloc(1, sizeof(*s));

	if (!s)
		return (void)fuse_reply_err(req, ENOMEM);
	s->h.destroy = stream_destroy;
	vbd_get(v);
	s->v = v;
	s->tr = vbd_trace(v);
	s->t0 = fs_dev_t0(v);
	node_devnum(v, &s->major, &s->minor);
	s->cursor = trace_cursor_now(s->tr);
	pthread_mutex_lock(&g_lock);
	s->snext = g_streams.snext;
	s->sprev = &g_streams;
	g_streams.snext->sprev = s;
	g_streams.snext = s;
	pthread_mutex_unlock(&g_lock);
	fs_fh_track(&s->h);
	fi->fh = (uintptr_t)s;
	fi->direct_io = 1;
	/* Seekable, though offsets mean nothing here: head(1) seeks back to
	 * just after the last line it printed and must not get ESPIPE. */
	fi->nonseekable = 0;
	if (fuse_reply_open(req, fi) != 0)
		stream_destroy(&s->h);
}

/* A parked read was interrupted (the reader got a signal).  libfuse keeps
 * req alive during this call; we look it up instead of trusting a data
 * pointer, since it may have been answered (and its record freed) already. */
static void read_interrupted(fuse_req_t req, void *data)
{
	pthread_mutex_lock(&g_lock);
	for (struct stream *s = g_streams.snext; s != &g_streams; s = s->snext) {
		for (struct pending **pp = &s->pend; *pp; pp = &(*pp)->next) {
			struct pending *p = *pp;
			if (p->req != req)
				continue;
			*pp = p->next;
			atomic_fetch_sub(&nwaiting, 1);
			fuse_reply_err(req, EINTR);
			free(p);
			pthread_mutex_unlock(&g_lock);
			return;
		}
	}
	pthread_mutex_unlock(&g_lock);
}

void requests_read(fuse_req_t req, size_t size, struct fuse_file_info *fi)
{
	struct stream *s = (struct stream *)(uintptr_t)fi->fh;
	struct pending *p, **tail;

	pthread_mutex_lock(&g_lock);
	if (!s->pend && (fill(s) || s->eof)) {
		answer(s, req, size);
		pthread_mutex_unlock(&g_lock);
		return;
	}
	pthread_mutex_unlock(&g_lock);
	if (fi->flags & O_NONBLOCK)
		return (void)fuse_reply_err(req, EAGAIN);
	p = calloc(1, sizeof(*p));
	if (!p)
		return (void)fuse_reply_err(req, ENOMEM);
	p->req = req;
	p->size = size;
	/* Register before parking: an interrupt that came earlier shows in
	 * fuse_req_interrupted() below, a later one finds the parked read. */
	fuse_req_interrupt_func(req, read_interrupted, NULL);
	pthread_mutex_lock(&g_lock);
	if (fuse_req_interrupted(req)) {
		pthread_mutex_unlock(&g_lock);
		free(p);
		return (void)fuse_reply_err(req, EINTR);
	}
	for (tail = &s->pend; *tail; tail = &(*tail)->next)
		;
	*tail = p;
	atomic_fetch_add(&nwaiting, 1);
	pthread_mutex_unlock(&g_lock);
	/* A record may have arrived before nwaiting counted us. */
	requests_kick();
}

void requests_poll(fuse_req_t req, struct fuse_file_info *fi, struct fuse_pollhandle *ph)
{
	struct stream *s = (struct stream *)(uintptr_t)fi->fh;
	unsigned revents = 0;

	pthread_mutex_lock(&g_lock);
	if (fill(s) || s->eof)
		revents = POLLIN;
	if (ph) {
		if (s->ph)
			fuse_pollhandle_destroy(s->ph);
		else
			atomic_fetch_add(&nwaiting, 1);
		s->ph = ph;
	}
	pthread_mutex_unlock(&g_lock);
	fuse_reply_poll(req, revents);
	if (ph && !revents)
		requests_kick();
}

void requests_release(fuse_req_t req, struct fuse_file_info *fi)
{
	stream_destroy((struct fh *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

/* Serve every parked read and poller that has something now. */
static void serve_all(void)
{
	pthread_mutex_lock(&g_lock);
	for (struct stream *s = g_streams.snext; s != &g_streams; s = s->snext) {
		if (!s->pend && !s->ph)
			continue;
		while (s->pend && (fill(s) || s->eof)) {
			struct pending *p = s->pend;
			s->pend = p->next;
			atomic_fetch_sub(&nwaiting, 1);
			answer(s, p->req, p->size);
			free(p);
		}
		if (s->ph && (fill(s) || s->eof)) {
			fuse_lowlevel_notify_poll(s->ph);
			fuse_pollhandle_destroy(s->ph);
			s->ph = NULL;
			atomic_fetch_sub(&nwaiting, 1);
		}
	}
	pthread_mutex_unlock(&g_lock);
}

static void *waker_main(void *arg)
{
	pthread_mutex_lock(&wk_lock);
	while (!wk_stop) {
		if (!wk_kicked) {
			/* The timeout is a safety net only: kicks do the work. */
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_nsec += 250 * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&wk_cond, &wk_lock, &ts);
		}
		if (wk_stop)
			break;
		wk_kicked = false;
		pthread_mutex_unlock(&wk_lock);
		if (atomic_load(&nwaiting))
			serve_all();
		pthread_mutex_lock(&wk_lock);
	}
	pthread_mutex_unlock(&wk_lock);
	return NULL;
}

int requests_init(void)
{
	pthread_condattr_t ca;
	int rc;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&wk_cond, &ca);
	pthread_condattr_destroy(&ca);
	wk_stop = false;
	wk_kicked = false;
	rc = pthread_create(&wk_thread, NULL, waker_main, NULL);
	if (rc) {
		pthread_cond_destroy(&wk_cond);
		return -rc;
	}
	wk_started = true;
	return 0;
}

void requests_shutdown(void)
{
	if (wk_started) {
		pthread_mutex_lock(&wk_lock);
		wk_stop = true;
		pthread_cond_signal(&wk_cond);
		pthread_mutex_unlock(&wk_lock);
		pthread_join(wk_thread, NULL);
		pthread_cond_destroy(&wk_cond);
		wk_started = false;
	}
	/* End every parked read (EOF) and forget pollers. */
	pthread_mutex_lock(&g_lock);
	for (struct stream *s = g_streams.snext; s != &g_streams; s = s->snext) {
		while (s->pend) {
			struct pending *p = s->pend;
			s->pend = p->next;
			atomic_fetch_sub(&nwaiting, 1);
			fuse_reply_buf(p->req, NULL, 0);
			free(p);
		}
		if (s->ph) {
			fuse_pollhandle_destroy(s->ph);
			s->ph = NULL;
			atomic_fetch_sub(&nwaiting, 1);
		}
	}
	pthread_mutex_unlock(&g_lock);
}
