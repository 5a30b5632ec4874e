/* text.c - growable text buffers for the generated files; see node.h. */
#include "node.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEXT_MAX (64u << 20) /* no generated file grows beyond this */

static bool text_reserve(struct text *t, size_t more)
{
	size_t want = t->len + more + 1, cap = t->cap ? t->cap : 1024;
	char *p;

	if (t->oom || want > TEXT_MAX) {
		t->oom = true;
		return false;
	}
	if (want <= t->cap)
		return true;
	while (cap < want)
		cap *= 2;
	p = realloc(t->buf, cap);
	if (!p) {
		t->oom = true;
		return false;
	}
	t->buf = p;
	t->cap = cap;
	return true;
}

void text_printf(struct text *t, const char *fmt, ...)
{
	va_list ap;
	char small[256];
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0 || !text_reserve(t, (size_t)n))
		return;
	if ((size_t)n < sizeof(small)) {
		memcpy(t->buf + t->len, small, (size_t)n + 1);
	} else {
		va_start(ap, fmt);
		vsnprintf(t->buf + t->len, (size_t)n + 1, fmt, ap);
		va_end(ap);
	}
	t->len += (size_t)n;
}

void text_json_str(struct text *t, const char *s)
{
	text_printf(t, "\"");
	for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
		if (*p == '"' || *p == '\\')
			text_printf(t, "\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			text_printf(t, "\\u%04x", *p);
		else
			text_printf(t, "%c", *p);
	}
	text_printf(t, "\"");
}

void text_free(struct text *t)
{
	free(t->buf);
	memset(t, 0, sizeof(*t));
}
