/* log.c - stderr/syslog logging with rate limiting; see log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

static const char *log_prog = "vbdfs";
static enum log_level log_max = VLOG_INFO;
static bool log_syslog;

static const char *const level_names[] = { "error", "warning", "info", "debug" };
static const int syslog_prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };

void log_init(const char *progname, enum log_level max_level, bool use_syslog)
{
	const char *slash = strrchr(progname, '/');
	log_prog = slash ? slash + 1 : progname;
	log_max = max_level;
	log_syslog = use_syslog;
	if (use_syslog)
		openlog(log_prog, LOG_PID, LOG_DAEMON);
}

void log_set_level(enum log_level max_level)
{
	log_max = max_level;
}

bool log_enabled(enum log_level level)
{
	return level <= log_max;
}

static void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	char line[1024];

	if (!log_enabled(level))
		return;
	vsnprintf(line, sizeof(line), fmt, ap);
	if (log_syslog) {
		syslog(syslog_prio[level], "%s", line);
		return;
	}
	/* One fprintf per message so lines from different threads don't mix. */
	fprintf(stderr, "%s: %s%s%s\n", log_prog,
		level == VLOG_INFO ? "" : level_names[level],
		level == VLOG_INFO ? "" : ": ", line);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void ratelimit_init(struct ratelimit *rl, unsigned burst, unsigned seconds)
{
	memset(rl, 0, sizeof(*rl));
	pthread_mutex_init(&rl->lock, NULL);
	rl->burst = burst;
	rl->interval_ns = (uint64_t)seconds * 1000000000ull;
}

bool ratelimit_allow(struct ratelimit *rl, uint64_t *suppressed)
{
	uint64_t now = now_ns();
	bool allow;

	pthread_mutex_lock(&rl->lock);
	if (rl->window_start_ns == 0 || now - rl->window_start_ns >= rl->interval_ns) {
		rl->window_start_ns = now;
		rl->printed = 0;
	}
	allow = rl->printed < rl->burst;
	if (allow) {
		rl->printed++;
		*suppressed = rl->suppressed;
		rl->suppressed = 0;
	} else {
		rl->suppressed++;
	}
	pthread_mutex_unlock(&rl->lock);
	return allow;
}

void log_limited(struct ratelimit *rl, enum log_level level, const char *fmt, ...)
{
	uint64_t suppressed;
	va_list ap;

	if (!log_enabled(level) || !ratelimit_allow(rl, &suppressed))
		return;
	if (suppressed)
		log_msg(level, "(%llu similar messages suppressed)",
			(unsigned long long)suppressed);
	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}
