/* trace.c - bounded multi-reader request trace; see trace.h. */
#include "trace.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct trace {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct trace_rec *ring;
	size_t mask;
	uint64_t next_seq;   /* seq of the next record added; first is 1 */
	bool shutdown;
	void (*notify)(void *);
	void *notify_arg;
};

struct trace *trace_new(size_t capacity)
{
	struct trace *t = calloc(1, sizeof(*t));
	size_t cap = 1;

	if (!t)
		return NULL;
	while (cap < capacity && cap < ((size_t)1 << 30))
		cap <<= 1;
	t->ring = calloc(cap, sizeof(*t->ring));
	if (!t->ring) {
		free(t);
		return NULL;
	}
	t->mask = cap - 1;
	t->next_seq = 1;
	pthread_mutex_init(&t->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&t->cond, &ca);
	pthread_condattr_destroy(&ca);
	return t;
}

void trace_free(struct trace *t)
{
	if (!t)
		return;
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->lock);
	free(t->ring);
	free(t);
}

void trace_set_notify(struct trace *t, void (*fn)(void *), void *arg)
{
	pthread_mutex_lock(&t->lock);
	t->notify = fn;
	t->notify_arg = arg;
	pthread_mutex_unlock(&t->lock);
}

void trace_add(struct trace *t, const struct trace_rec *r)
{
	void (*fn)(void *);
	void *arg;

	pthread_mutex_lock(&t->lock);
	struct trace_rec *slot = &t->ring[t->next_seq & t->mask];
	*slot = *r;
	slot->seq = t->next_seq++;
	fn = t->notify;
	arg = t->notify_arg;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
	if (fn)
		fn(arg);
}

uint64_t trace_cursor_now(struct trace *t)
{
	uint64_t c;

	pthread_mutex_lock(&t->lock);
	c = t->next_seq;
	pthread_mutex_unlock(&t->lock);
	return c;
}

bool trace_ready(struct trace *t, uint64_t cursor)
{
	bool r;

	pthread_mutex_lock(&t->lock);
	r = t->next_seq > cursor || t->shutdown;
	pthread_mutex_unlock(&t->lock);
	return r;
}

static void deadline_after(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

size_t trace_read(struct trace *t, uint64_t *cursor, struct trace_rec *out, size_t max,
		  uint64_t *missed, int timeout_ms)
{
	struct timespec deadline;
	size_t n = 0;
	uint64_t oldest;

	*missed = 0;
	if (timeout_ms > 0)
		deadline_after(&deadline, timeout_ms);
	pthread_mutex_lock(&t->lock);
	while (t->next_seq <= *cursor && !t->shutdown && timeout_ms != 0) {
		int rc = timeout_ms < 0 ? pthread_cond_wait(&t->cond, &t->lock)
				       : pthread_cond_timedwait(&t->cond, &t->lock, &deadline);
		if (rc == ETIMEDOUT)
			break;
	}
	/* Records older than next_seq - capacity have been overwritten. */
	oldest = t->next_seq > t->mask + 1 ? t->next_seq - (t->mask + 1) : 1;
	if (*cursor < oldest) {
		*missed = oldest - *cursor;
		*cursor = oldest;
	}
	while (n < max && *cursor < t->next_seq) {
		out[n++] = t->ring[*cursor & t->mask];
		(*cursor)++;
	}
	pthread_mutex_unlock(&t->lock);
	return n;
}

void trace_shutdown(struct trace *t)
{
	pthread_mutex_lock(&t->lock);
	t->shutdown = true;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
}

const char *trace_rwbs(const struct trace_rec *r)
{
	switch (r->op) {
	case TRACE_READ:
		return "R";
	case TRACE_WRITE:
		return "W";
	case TRACE_DISCARD:
		return (r->flags & TRACE_F_SECURE) ? "DS" : "D";
	case TRACE_FLUSH:
		return "FN";
	case TRACE_BARRIER:
		return "FWF";
	default:
		return "N";
	}
}
