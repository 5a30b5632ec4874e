/* Unit tests: rate-limited logging and the /sys/block stat line. */
#include <unistd.h>

#include "util/log.h"
#include "util/stats.h"
#include "util/tap.h"

static void test_ratelimit(void)
{
	struct ratelimit rl;
	uint64_t sup = 0;
	int allowed = 0;

	ratelimit_init(&rl, 3, 1);
	for (int i = 0; i < 10; i++)
		allowed += ratelimit_allow(&rl, &sup);
	is_int(allowed, 3, "burst of 3 allowed, rest suppressed");
	rl.window_start_ns -= 2000000000ull; /* pretend the window passed */
	ok(ratelimit_allow(&rl, &sup), "allowed again after the interval");
	is_int(sup, 7, "reports the 7 suppressed messages");
}

static void parse_stat(const char *line, unsigned long long f[17], int *n)
{
	*n = sscanf(line,
		    "%llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
		    &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6], &f[7], &f[8], &f[9],
		    &f[10], &f[11], &f[12], &f[13], &f[14], &f[15], &f[16]);
}

static void test_stat_line(void)
{
	static struct dev_stats s;
	char line[512];
	unsigned long long f[17];
	int n;

	stats_init(&s);
	uint64_t t1 = stats_start(&s);
	uint64_t t2 = stats_start(&s);
	stats_format_stat(&s, line, sizeof(line));
	parse_stat(line, f, &n);
	is_int(f[8], 2, "two requests in flight");
	usleep(20000);
	stats_end(&s, STAT_READ, t1, 8, 1);
	stats_end(&s, STAT_WRITE, t2, 16, 1);
	uint64_t t3 = stats_start(&s);
	stats_end(&s, STAT_WRITE, t3, 8, 0);   /* an error */
	uint64_t t4 = stats_start(&s);
	stats_end(&s, STAT_FLUSH, t4, 0, 1);
	uint64_t t5 = stats_start(&s);
	stats_end(&s, STAT_DISCARD, t5, 2048, 1);

	size_t len = stats_format_stat(&s, line, sizeof(line));
	ok(len > 0 && line[len - 1] == '\n', "stat line ends with a newline");
	parse_stat(line, f, &n);
	is_int(n, 17, "17 fields");
	is_int(f[0], 1, "reads completed");
	is_int(f[2], 8, "sectors read");
	ok(f[3] >= 19, "read ticks count the 20 ms");
	is_int(f[4], 1, "writes completed (the failed one is not)");
	is_int(f[6], 16, "sectors written");
	is_int(f[8], 0, "nothing in flight");
	ok(f[9] >= 19 && f[9] < 1000, "io_ticks ~ busy time");
	ok(f[10] >= 2 * 19, "time_in_queue weights by depth");
	is_int(f[11], 1, "discards completed");
	is_int(f[13], 2048, "sectors discarded");
	is_int(f[15], 1, "flushes completed");
	is_int(s.op[STAT_WRITE].errors, 1, "write error counted");
	is_int(hist_count(&s.op[STAT_READ].latency), 1, "read latency recorded");
	is_str(stat_op_name(STAT_DISCARD), "discard", "op names");
	stats_destroy(&s);
}

int main(void)
{
	log_init("t", VLOG_ERR, false);
	plan(20);
	test_ratelimit();
	test_stat_line();
	return done_testing();
}
