/*
 * log.h - logging for every vbdfs program.
 *
 * Messages go to stderr (prefixed with the program name) or to syslog when a
 * daemon asks for it.  Anything a guest or an image can trigger repeatedly
 * must go through a struct ratelimit, so a hostile guest cannot flood the log:
 *
 *     static struct ratelimit rl = RATELIMIT_INIT(10, 5);  // 10 per 5 s
 *     log_limited(&rl, VLOG_WARN, "dom%u: bad segment count %u", d, n);
 *
 * When a burst ends, the next allowed message is preceded by a line saying
 * how many were suppressed.
 */
#ifndef VBDFS_LOG_H
#define VBDFS_LOG_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

enum log_level { VLOG_NONE = -1, VLOG_ERR, VLOG_WARN, VLOG_INFO, VLOG_DEBUG };

void log_init(const char *progname, enum log_level max_level, bool use_syslog);
void log_set_level(enum log_level max_level);
bool log_enabled(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...) log_msg(VLOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(VLOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(VLOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(VLOG_DEBUG, __VA_ARGS__)

struct ratelimit {
	pthread_mutex_t lock;
	unsigned burst;       /* messages allowed per interval */
	uint64_t interval_ns;
	uint64_t window_start_ns;
	unsigned printed;     /* in the current window */
	uint64_t suppressed;  /* since the last printed message */
};

#define RATELIMIT_INIT(burst_, seconds_)                                          \
	{ .lock = PTHREAD_MUTEX_INITIALIZER, .burst = (burst_),                   \
	  .interval_ns = (uint64_t)(seconds_) * 1000000000ull }

void ratelimit_init(struct ratelimit *rl, unsigned burst, unsigned seconds);

/* True if a message may be printed now; *suppressed gets the count skipped
 * since the last allowed one. */
bool ratelimit_allow(struct ratelimit *rl, uint64_t *suppressed);

void log_limited(struct ratelimit *rl, enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Monotonic clock in nanoseconds. */
uint64_t now_ns(void);

#endif
