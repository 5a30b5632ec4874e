/*
 * xenbus_keys.c - parsing and checking of the xenstore values xenbus.c
 * reads; pure functions (no xenstore), so each rule is unit-tested.
 */
#include "xenbus.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "abi.h"

static const char *const state_names[] = {
	"Unknown", "Initialising", "InitWait", "Initialised", "Connected",
	"Closing", "Closed", "Reconfiguring", "Reconfigured",
};

const char *xb_state_name(int state)
{
	if (state < 0 || state >= (int)(sizeof(state_names) / sizeof(state_names[0])))
		return "Invalid";
	return state_names[state];
}

int xb_parse_uint(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (!s || !*s)
		return -EINVAL;
	if (s[0] == '0' && s[1])
		return -EINVAL; /* "007" is not what anyone meant */
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		if (v > (UINT64_MAX - 9) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	if (v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int xb_parse_mode(const char *s, bool *readonly)
{
	if (!s)
		return -EINVAL;
	if (strcmp(s, "r") == 0 || strcmp(s, "ro") == 0) {
		*readonly = true;
		return 0;
	}
	if (strcmp(s, "w") == 0 || strcmp(s, "rw") == 0) {
		*readonly = false;
		return 0;
	}
	return -EINVAL;
}

const char *xb_format_name(const char *s)
{
	if (!s)
		return NULL;
	if (strcmp(s, "raw") == 0 || strcmp(s, "aio") == 0)
		return "raw";
	if (strcmp(s, "qcow2") == 0)
		return "qcow2";
	if (strcmp(s, "qcow") == 0)
		return "qcow";
	return NULL;
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

int xb_image_spec(const char *params, const char *format, bool readonly,
		  const char *default_fmt, const char **fmt, char *path, size_t pathlen,
		  char *err, size_t errlen)
{
	const char *p = params, *colon;
	char prefix[16];

	if (!params || !*params)
		return fail(err, errlen, "no image path (backend key 'params' is empty)");
	*fmt = NULL;
	if (format) {
		*fmt = xb_format_name(format);
		if (!*fmt)
			return fail(err, errlen, "unknown image format '%.32s' (use raw, qcow2 or qcow)",
				    format);
	} else if ((colon = strchr(params, ':')) && (size_t)(colon - params) < sizeof(prefix)) {
		/* "qcow2:/images/x.qcow2", as libxl writes for tap disks */
		memcpy(prefix, params, (size_t)(colon - params));
		prefix[colon - params] = '\0';
		*fmt = xb_format_name(prefix);
		if (*fmt)
			p = colon + 1;
	}
	if (!*fmt && default_fmt)
		*fmt = xb_format_name(default_fmt);
	if (!*fmt && !readonly)
		return fail(err, errlen, "no image format configured for writable disk %.200s "
			    "(the format of a writable image is never guessed)", params);
	if (!*p)
		return fail(err, errlen, "empty image path in params '%.200s'", params);
	if (p[0] != '/')
		return fail(err, errlen, "image path '%.200s' is not absolute", p);
	if (strlen(p) >= pathlen)
		return fail(err, errlen, "image path too long (%zu bytes)", strlen(p));
	strcpy(path, p);
	return 0;
}

/* Read key (relative to the frontend dir) as an unsigned number <= max.
 * Returns 0, -ENOENT (absent), or -EINVAL with a message. */
static int read_uint(xb_read_fn rd, void *ctx, const char *key, uint64_t max, uint64_t *out,
		     char *err, size_t errlen)
{
	char buf[XB_VALUE_MAX];
	int r = rd(ctx, key, buf, sizeof(buf));

	if (r == -ENOENT)
		return r;
	if (r == -E2BIG)
		return fail(err, errlen, "frontend key %s: value too long", key);
	if (r < 0)
		return fail(err, errlen, "frontend key %s: read failed: %s", key, strerror(-r));
	r = xb_parse_uint(buf, max, out);
	if (r < 0)
		return fail(err, errlen, "frontend key %s: '%s' is not a number in 0..%" PRIu64,
			    key, buf, max);
	return 0;
}

/* A key that must exist. */
static int need_uint(xb_read_fn rd, void *ctx, const char *key, uint64_t max, uint64_t *out,
		     char *err, size_t errlen)
{
	int r = read_uint(rd, ctx, key, max, out, err, errlen);

	if (r == -ENOENT)
		return fail(err, errlen, "frontend key %s is missing", key);
	return r;
}

/* ring-ref(s) and event-channel of one queue; dir is "" or "queue-N/". */
static int read_queue(xb_read_fn rd, void *ctx, const char *dir, unsigned order,
		      struct engine_queue *q, char *err, size_t errlen)
{
	char key[48];
	uint64_t v;
	int r;

	if (order == 0) {
		snprintf(key, sizeof(key), "%sring-ref", dir);
		if ((r = need_uint(rd, ctx, key, UINT32_MAX, &v, err, errlen)) < 0)
			return r;
		q->ring_ref[0] = (hv_gref_t)v;
	} else {
		for (unsigned i = 0; i < 1u << order; i++) {
			snprintf(key, sizeof(key), "%sring-ref%u", dir, i);
			if ((r = need_uint(rd, ctx, key, UINT32_MAX, &v, err, errlen)) < 0)
				return r;
			q->ring_ref[i] = (hv_gref_t)v;
		}
	}
	snprintf(key, sizeof(key), "%sevent-channel", dir);
	if ((r = need_uint(rd, ctx, key, UINT32_MAX, &v, err, errlen)) < 0)
		return r;
	q->evtchn = (uint32_t)v;
	return 0;
}

int xb_read_frontend(xb_read_fn rd, void *ctx, const struct xb_limits *lim,
		     struct engine_params *p, char *err, size_t errlen)
{
	char protocol[XB_VALUE_MAX];
	uint64_t v;
	int r;

	/* protocol: absent means native; anything unknown is fatal */
	r = rd(ctx, "protocol", protocol, sizeof(protocol));
	if (r == -E2BIG)
		return fail(err, errlen, "frontend key protocol: value too long");
	if (r < 0 && r != -ENOENT)
		return fail(err, errlen, "frontend key protocol: read failed: %s", strerror(-r));
	if (blkif_abi_parse(r == -ENOENT ? NULL : protocol, &p->abi) < 0)
		return fail(err, errlen, "frontend protocol '%s' is not supported", protocol);

	r = read_uint(rd, ctx, "feature-persistent", UINT32_MAX, &v, err, errlen);
	if (r == -EINVAL)
		return r;
	p->persistent = lim->persistent && r == 0 && v != 0;

	r = read_uint(rd, ctx, "multi-queue-num-queues", UINT32_MAX, &v, err, errlen);
	if (r == -EINVAL)
		return r;
	if (r == -ENOENT)
		v = 1;
	if (v < 1 || v > lim->max_queues || v > ENGINE_MAX_QUEUES)
		return fail(err, errlen, "frontend asks for %" PRIu64 " queues; the backend offers 1..%u",
			    v, lim->max_queues);
	p->nr_queues = (unsigned)v;

	r = read_uint(rd, ctx, "ring-page-order", UINT32_MAX, &v, err, errlen);
	if (r == -EINVAL)
		return r;
	if (r == -ENOENT)
		v = 0;
	if (v > lim->max_ring_order || v > ENGINE_MAX_RING_ORDER)
		return fail(err, errlen, "frontend ring-page-order %" PRIu64 " exceeds the maximum %u",
			    v, lim->max_ring_order);
	p->ring_order = (unsigned)v;

	/* Linux blkfront writes flat keys for one queue, queue-N/ for more. */
	if (p->nr_queues == 1)
		return read_queue(rd, ctx, "", p->ring_order, &p->queue[0], err, errlen);
	for (unsigned i = 0; i < p->nr_queues; i++) {
		char dir[24];
		snprintf(dir, sizeof(dir), "queue-%u/", i);
		if ((r = read_queue(rd, ctx, dir, p->ring_order, &p->queue[i], err, errlen)) < 0)
			return r;
	}
	return 0;
}
