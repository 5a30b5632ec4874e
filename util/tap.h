/*
 * tap.h - a tiny Test Anything Protocol producer for C unit tests.
 *
 * Header only, so a test is one .c file.  Usage:
 *
 *     plan(3);
 *     ok(x == 1, "x is one");
 *     is_int(f(2), 4, "f doubles");
 *     is_str(name, "raw", "format name");
 *     return done_testing();
 *
 * plan_skip_all("no FUSE") skips a whole test with a reason; skip(n, why)
 * skips n numbered tests; bail_out() stops the whole run; diag() writes a
 * '#' comment to stderr.  done_testing() returns the exit status: non-zero
 * if any test failed or the count does not match the plan.
 */
#ifndef VBDFS_TAP_H
#define VBDFS_TAP_H

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_planned = -1;
static int tap_run;
static int tap_failed;

static inline void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void diag(const char *fmt, ...)
{
	va_list ap;
	fflush(stdout);
	fputs("# ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static inline void plan(int n)
{
	tap_planned = n;
	printf("1..%d\n", n);
	fflush(stdout);
}

static inline void plan_skip_all(const char *why)
{
	printf("1..0 # SKIP %s\n", why);
	fflush(stdout);
	exit(0);
}

static inline void bail_out(const char *why)
{
	printf("Bail out! %s\n", why);
	fflush(stdout);
	exit(255);
}

static inline int tap_result(int pass, const char *file, int line, const char *name)
{
	tap_run++;
	printf("%sok %d - %s\n", pass ? "" : "not ", tap_run, name);
	fflush(stdout);
	if (!pass) {
		tap_failed++;
		diag("  Failed test '%s' at %s line %d.", name, file, line);
	}
	return pass;
}

#define ok(cond, name) tap_result(!!(cond), __FILE__, __LINE__, (name))

#define is_int(got, want, name)                                                  \
	do {                                                                     \
		long long g_ = (long long)(got), w_ = (long long)(want);         \
		if (!tap_result(g_ == w_, __FILE__, __LINE__, (name)))           \
			diag("         got: %lld\n#     expected: %lld", g_, w_); \
	} while (0)

#define is_str(got, want, name)                                                  \
	do {                                                                     \
		const char *g_ = (got), *w_ = (want);                            \
		int p_ = g_ && w_ && strcmp(g_, w_) == 0;                        \
		if (!tap_result(p_, __FILE__, __LINE__, (name)))                 \
			diag("         got: '%s'\n#     expected: '%s'",          \
			     g_ ? g_ : "(null)", w_ ? w_ : "(null)");           \
	} while (0)

static inline void skip(int n, const char *why)
{
	for (int i = 0; i < n; i++) {
		tap_run++;
		printf("ok %d # skip %s\n", tap_run, why);
	}
	fflush(stdout);
}

static inline int done_testing(void)
{
	if (tap_planned < 0)
		plan(tap_run);
	else if (tap_planned != tap_run)
		diag("Looks like you planned %d tests but ran %d.", tap_planned, tap_run);
	if (tap_failed)
		diag("Looks like you failed %d test%s of %d.", tap_failed,
		     tap_failed == 1 ? "" : "s", tap_run);
	return tap_failed || (tap_planned >= 0 && tap_planned != tap_run);
}

#endif
