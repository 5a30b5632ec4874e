/* Unit tests: the multi-reader request trace. */
#include <pthread.h>

#include "util/tap.h"
#include "util/trace.h"

static struct trace_rec rec(uint64_t sector)
{
	struct trace_rec r = { .sector = sector, .nr_sectors = 8, .op = TRACE_WRITE };
	return r;
}

static void *late_writer(void *arg)
{
	struct trace_rec r = rec(777);
	struct timespec ts = { 0, 50 * 1000 * 1000 };
	nanosleep(&ts, NULL);
	trace_add(arg, &r);
	return NULL;
}

int main(void)
{
	struct trace_rec out[64], r;
	uint64_t missed, c1, c2;
	size_t n;

	plan(14);
	struct trace *t = trace_new(10);
	ok(t != NULL, "trace_new");

	r = rec(1);
	trace_add(t, &r);          /* before any reader: nobody sees it */
	c1 = trace_cursor_now(t);
	c2 = trace_cursor_now(t);
	for (uint64_t i = 0; i < 5; i++) {
		r = rec(100 + i);
		trace_add(t, &r);
	}
	n = trace_read(t, &c1, out, 64, &missed, 0);
	is_int(n, 5, "reader 1 sees the 5 records added after it opened");
	ok(out[0].sector == 100 && out[4].sector == 104, "in order");
	is_int(missed, 0, "none missed");
	n = trace_read(t, &c2, out, 3, &missed, 0);
	is_int(n, 3, "reader 2 reads at its own pace (3)");
	n = trace_read(t, &c2, out, 64, &missed, 0);
	ok(n == 2 && out[1].sector == 104, "reader 2 gets the other 2");
	ok(out[1].seq == out[0].seq + 1, "sequence numbers increase by one");

	n = trace_read(t, &c1, out, 64, &missed, 0);
	is_int(n, 0, "non-blocking read with nothing new returns 0");
	ok(!trace_ready(t, c1), "not ready");

	/* Overrun: capacity is 16 (10 rounded up); add 40. */
	for (uint64_t i = 0; i < 40; i++) {
		r = rec(1000 + i);
		trace_add(t, &r);
	}
	ok(trace_ready(t, c1), "ready after adds");
	n = trace_read(t, &c1, out, 64, &missed, 0);
	is_int(missed, 24, "slow reader told it missed 24");
	ok(n == 16 && out[0].sector == 1024 && out[15].sector == 1039,
	   "and gets the newest 16");

	pthread_t th;
	pthread_create(&th, NULL, late_writer, t);
	n = trace_read(t, &c1, out, 64, &missed, 5000);
	ok(n == 1 && out[0].sector == 777, "blocking read wakes for a new record");
	pthread_join(th, NULL);

	trace_shutdown(t);
	n = trace_read(t, &c1, out, 64, &missed, -1);
	is_int(n, 0, "shutdown releases a blocked reader");
	trace_free(t);
	return done_testing();
}
