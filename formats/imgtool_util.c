/* imgtool_util.c - helpers shared by the vbd-img subcommands; see imgtool.h. */
#include "imgtool.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void tool_err(const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fflush(stdout);
	fprintf(stderr, "%s: %s\n", TOOL_NAME, line);
}

int usage_err(const char *cmd, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s %s: %s\nTry '%s %s --help' for more information.\n", TOOL_NAME,
		cmd, line, TOOL_NAME, cmd);
	return EXIT_USAGE;
}

int parse_output(const char *cmd, const char *arg, bool *json)
{
	if (strcmp(arg, "json") && strcmp(arg, "human"))
		return usage_err(cmd, "--output must be json or human");
	*json = !strcmp(arg, "json");
	return 0;
}

int check_file_operand(const char *cmd, int argc, const char *fmt)
{
	if (optind != argc - 1)
		return usage_err(cmd, optind >= argc ? "missing FILE" : "too many arguments");
	if (fmt && !format_known(fmt))
		return usage_err(cmd, "unknown format '%s' (raw, qcow2 or qcow)", fmt);
	return 0;
}

int parse_uint(const char *s, uint64_t *out)
{
	char *end;

	if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned shift = 0;

	if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case '\0': case 'b': case 'B': shift = 0; break;
	case 'k': case 'K': shift = 10; break;
	case 'm': case 'M': shift = 20; break;
	case 'g': case 'G': shift = 30; break;
	case 't': case 'T': shift = 40; break;
	case 'p': case 'P': shift = 50; break;
	case 'e': case 'E': shift = 60; break;
	default: return -EINVAL;
	}
	/* after a unit letter allow nothing, "B" or "iB" (64K, 64KB, 64KiB) */
	if (*end && end[1] && (shift == 0 || (strcmp(end + 1, "B") && strcmp(end + 1, "iB"))))
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

int parse_kv_list(char *list, int (*fn)(const char *key, const char *val, void *arg),
		  void *arg, const char *cmd)
{
	char *save = NULL;
	for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		if (!eq)
			return usage_err(cmd, "option '%s' needs a value (key=value)", tok);
		*eq = '\0';
		int r = fn(tok, eq + 1, arg);
		if (r)
			return r;
	}
	return 0;
}

bool format_known(const char *fmt)
{
	return !strcmp(fmt, "raw") || !strcmp(fmt, "qcow2") || !strcmp(fmt, "qcow");
}

int tool_open(const char *path, const char *fmt, unsigned flags, struct img **out)
{
	char err[512] = "";
	int r = img_open(path, fmt, flags, out, err, sizeof(err));
	if (r < 0) {
		if (err[0])
			tool_err("%s", err);
		else
			tool_err("%s: cannot open: %s", path, strerror(-r));
		if (r == -EBUSY && (flags & IMG_RDONLY) && !(flags & IMG_FORCE_SHARE))
			fprintf(stderr, "%s: to read it anyway, pass -U (--force-share); what "
				"is read may change or be inconsistent meanwhile\n", TOOL_NAME);
	}
	return r;
}

void human_size(uint64_t v, char *buf, size_t len)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	unsigned u = 0;
	double d = (double)v;

	while (d >= 1024 && u < 6) {
		d /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%" PRIu64 " B", v);
	else if (d == (double)(uint64_t)d)
		snprintf(buf, len, "%" PRIu64 " %s", (uint64_t)d, units[u]);
	else
		snprintf(buf, len, "%.3g %s", d, units[u]);
}

void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"': fputs("\\\"", f); break;
		case '\\': fputs("\\\\", f); break;
		case '\n': fputs("\\n", f); break;
		case '\t': fputs("\\t", f); break;
		case '\r': fputs("\\r", f); break;
		default:
			if (*p < 0x20)
				fprintf(f, "\\u%04x", *p);
			else
				fputc(*p, f);
		}
	}
	fputc('"', f);
}

const char *qcow2_compat_name(int version)
{
	return version == 2 ? "0.10" : version == 3 ? "1.1" : NULL;
}

int read_full(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;
	while (len) {
		ssize_t n = read(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EPIPE; /* short input */
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int write_full(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

bool buf_is_zero(const void *p, size_t len)
{
	const uint8_t *b = p;

	/* check the first 16 bytes, then compare the buffer with itself
	 * shifted by 16: all equal to the (zero) prefix means all zero */
	size_t head = len < 16 ? len : 16;
	for (size_t i = 0; i < head; i++)
		if (b[i])
			return false;
	return len <= 16 || memcmp(b, b + 16, len - 16) == 0;
}

unsigned cpu_count(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}
