/*
 * Fuzz target: the backend's reading of xenstore keys (blkback/xenbus_keys.c).
 *
 * Input: 4 bytes of limits and knobs, then "key=value" lines.  The lines
 * are a fake xenstore directory; the reader callback behaves like
 * xenbus.c's xs_get(): -ENOENT for an absent key, -E2BIG for a value that
 * does not fit, -EINVAL for an embedded NUL, and a line "key!" makes the
 * read fail with -EIO.  Frontend keys (protocol, ring-ref, queue-N/...) go
 * through xb_read_frontend() with the fuzzed limits; backend keys (params,
 * mode, format, and "default-format" standing for the daemon's --format)
 * go through the steps dev_setup() takes.
 *
 * Whenever a call succeeds, its result is checked against the keys
 * themselves with an independent decoder (the rules in xenbus.h): limits
 * respected, every ring-ref and event-channel the value of the right key,
 * protocol a known ABI, the image path absolute and taken from params.
 * A failure must come with a message.  Any violation traps.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blkback/abi.h"
#include "blkback/engine.h"
#include "blkback/xenbus.h"
#include "fuzz.h"

#define MAX_KEYS 96
#define KEY_MAX 48

struct kv {
	char key[KEY_MAX];
	const uint8_t *val;   /* into the input; may hold NULs */
	size_t len;
	bool fail;            /* reads fail with -EIO */
};

struct store {
	struct kv kv[MAX_KEYS];
	unsigned n;
	unsigned reads;
};

static void check(bool cond)
{
	if (!cond)
		__builtin_trap();
}

static const struct kv *find(const struct store *s, const char *key)
{
	for (unsigned i = 0; i < s->n; i++)
		if (strcmp(s->kv[i].key, key) == 0)
			return &s->kv[i];   /* the first one wins */
	return NULL;
}

/* The xb_read_fn contract, as xenbus.c's xs_get() keeps it. */
static int rd(void *ctx, const char *key, char *buf, size_t len)
{
	struct store *s = ctx;
	const struct kv *e = find(s, key);

	check(strlen(key) < 48);   /* read_queue's key buffer */
	check(len > 0);
	s->reads++;
	check(s->reads < 1000);    /* bounded work: (16 queues x 17 keys) + a few */
	if (!e)
		return -ENOENT;
	if (e->fail)
		return -EIO;
	if (e->len >= len)
		return -E2BIG;
	if (memchr(e->val, 0, e->len))
		return -EINVAL;
	memcpy(buf, e->val, e->len);
	buf[e->len] = '\0';
	return 0;
}

/* A key's value as a C string if it reads cleanly (what rd() would give). */
static bool value(const struct store *s, const char *key, char *buf, size_t len)
{
	const struct kv *e = find(s, key);

	if (!e || e->fail || e->len >= len || memchr(e->val, 0, e->len))
		return false;
	memcpy(buf, e->val, e->len);
	buf[e->len] = '\0';
	return true;
}

/* Independent decoder of the strict decimal rule in xenbus.h. */
static bool canonical_uint(const char *s, uint64_t max, uint64_t *out)
{
	size_t n = strlen(s);
	char *end;

	if (n == 0 || n > 20 || (n > 1 && s[0] == '0') || strspn(s, "0123456789") != n)
		return false;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno == ERANGE || *end || v > max)
		return false;
	*out = v;
	return true;
}

static void fuzz_parse_uint(const struct store *s)
{
	static const uint64_t maxes[] = { 0, 1, 4, 16, 255, UINT32_MAX, UINT64_MAX - 1, UINT64_MAX };
	char buf[XB_VALUE_MAX];

	for (unsigned i = 0; i < s->n; i++) {
		if (!value(s, s->kv[i].key, buf, sizeof(buf)))
			continue;
		for (unsigned m = 0; m < sizeof(maxes) / sizeof(maxes[0]); m++) {
			uint64_t got = 12345, want;
			int r = xb_parse_uint(buf, maxes[m], &got);
			bool ok = canonical_uint(buf, maxes[m], &want);
			check(ok == (r == 0));
			check(r == 0 || r == -EINVAL || r == -ERANGE);
			check(r < 0 ? got == 12345 : got == want);
		}
	}
}

/* dev_setup()'s reading of the backend keys. */
static void fuzz_backend_keys(const struct store *s, size_t pathlen)
{
	char params[XB_PARAMS_MAX], fmtkey[XB_VALUE_MAX], mode[XB_VALUE_MAX], dflt[XB_VALUE_MAX];
	char path[XB_PARAMS_MAX + 8], err[256];
	const char *fmt = (const char *)"sentinel";
	bool readonly = false, have_fmt, have_dflt;

	if (!value(s, "params", params, sizeof(params)))
		params[0] = '\0';
	if (!value(s, "mode", mode, sizeof(mode)))
		strcpy(mode, "w");
	if (xb_parse_mode(mode, &readonly) < 0) {
		check(strcmp(mode, "r") && strcmp(mode, "ro") && strcmp(mode, "w") &&
		      strcmp(mode, "rw"));
		return;
	}
	check(readonly == (mode[0] == 'r' && strcmp(mode, "rw") != 0));
	have_fmt = value(s, "format", fmtkey, sizeof(fmtkey));
	have_dflt = value(s, "default-format", dflt, sizeof(dflt));
	if (have_fmt) {
		const char *n = xb_format_name(fmtkey);
		check(!n || !strcmp(n, "raw") || !strcmp(n, "qcow2") || !strcmp(n, "qcow"));
	}
	memset(path, 0x55, sizeof(path));
	err[0] = '\0';
	int r = xb_image_spec(params, have_fmt ? fmtkey : NULL, readonly,
			      have_dflt ? dflt : NULL, &fmt, path, pathlen, err, sizeof(err));
	if (r < 0) {
		check(r == -EINVAL && err[0] != '\0' && memchr(err, 0, sizeof(err)));
		return;
	}
	check(r == 0);
	/* nothing written past pathlen, a NUL inside it */
	check(memchr(path, 0, pathlen) != NULL);
	for (size_t i = pathlen; i < sizeof(path); i++)
		check((uint8_t)path[i] == 0x55);
	size_t pl = strlen(path), ql = strlen(params);
	check(pl > 0 && path[0] == '/' && pl <= ql);
	check(strcmp(params + ql - pl, path) == 0);   /* the path comes from params */
	/* a writable image's format is never guessed */
	check(fmt || readonly);
	if (fmt)
		check(!strcmp(fmt, "raw") || !strcmp(fmt, "qcow2") || !strcmp(fmt, "qcow"));
	if (have_fmt)
		check(fmt && fmt == xb_format_name(fmtkey) && pl == ql);
}

/* One queue's keys, checked against what xb_read_frontend() returned. */
static void check_queue(const struct store *s, const char *dir, unsigned order,
			const struct engine_queue *q)
{
	char key[64], buf[XB_VALUE_MAX];
	uint64_t v;

	for (unsigned i = 0; i < 1u << order; i++) {
		if (order == 0)
			snprintf(key, sizeof(key), "%sring-ref", dir);
		else
			snprintf(key, sizeof(key), "%sring-ref%u", dir, i);
		check(value(s, key, buf, sizeof(buf)) && canonical_uint(buf, UINT32_MAX, &v));
		check(q->ring_ref[i] == v);
	}
	snprintf(key, sizeof(key), "%sevent-channel", dir);
	check(value(s, key, buf, sizeof(buf)) && canonical_uint(buf, UINT32_MAX, &v));
	check(q->evtchn == v);
}

static void fuzz_frontend(struct store *s, const struct xb_limits *lim, size_t errlen)
{
	static char err[256];
	char buf[XB_VALUE_MAX];
	struct engine_params p;
	uint64_t v;

	memset(&p, 0, sizeof(p));
	memset(err, 0x55, sizeof(err));
	s->reads = 0;
	int r = xb_read_frontend(rd, s, lim, &p, err, errlen);
	for (size_t i = errlen; i < sizeof(err); i++)
		check((uint8_t)err[i] == 0x55);
	if (r < 0) {
		check(r == -EINVAL);
		check(errlen == 0 || memchr(err, 0, errlen));
		check(errlen < 2 || err[0] != '\0');
		return;
	}
	check(r == 0);
	/* protocol: absent = native, else exactly one of the known ABIs */
	if (!find(s, "protocol"))
		check(p.abi == BLKIF_ABI_X86_64);
	else
		check(value(s, "protocol", buf, sizeof(buf)) &&
		      ((p.abi == BLKIF_ABI_X86_64 && !strcmp(buf, "x86_64-abi")) ||
		       (p.abi == BLKIF_ABI_X86_32 && !strcmp(buf, "x86_32-abi"))));
	/* queues and order within the limits and as asked */
	check(p.nr_queues >= 1 && p.nr_queues <= lim->max_queues &&
	      p.nr_queues <= ENGINE_MAX_QUEUES);
	check(p.ring_order <= lim->max_ring_order && p.ring_order <= ENGINE_MAX_RING_ORDER);
	if (find(s, "multi-queue-num-queues"))
		check(value(s, "multi-queue-num-queues", buf, sizeof(buf)) &&
		      canonical_uint(buf, UINT32_MAX, &v) && v == p.nr_queues);
	else
		check(p.nr_queues == 1);
	if (find(s, "ring-page-order"))
		check(value(s, "ring-page-order", buf, sizeof(buf)) &&
		      canonical_uint(buf, UINT32_MAX, &v) && v == p.ring_order);
	else
		check(p.ring_order == 0);
	/* persistent grants only if both sides want them */
	if (p.persistent)
		check(lim->persistent && value(s, "feature-persistent", buf, sizeof(buf)) &&
		      canonical_uint(buf, UINT32_MAX, &v) && v != 0);
	if (find(s, "feature-persistent"))
		check(value(s, "feature-persistent", buf, sizeof(buf)) &&
		      canonical_uint(buf, UINT32_MAX, &v));
	/* every ring-ref of every queue read from its own key */
	if (p.nr_queues == 1) {
		check_queue(s, "", p.ring_order, &p.queue[0]);
	} else {
		for (unsigned i = 0; i < p.nr_queues; i++) {
			char dir[24];
			snprintf(dir, sizeof(dir), "queue-%u/", i);
			check_queue(s, dir, p.ring_order, &p.queue[i]);
		}
	}
}

/* Split "key=value\n" lines (value up to the newline, NULs and all). */
static void parse_store(struct store *s, const uint8_t *d, size_t n)
{
	s->n = 0;
	while (n && s->n < MAX_KEYS) {
		const uint8_t *nl = memchr(d, '\n', n);
		size_t ll = nl ? (size_t)(nl - d) : n;
		const uint8_t *eq = memchr(d, '=', ll);
		size_t kl = eq ? (size_t)(eq - d) : ll;
		struct kv *e = &s->kv[s->n];
		bool fail = !eq && kl && d[kl - 1] == '!';

		if (fail)
			kl--;
		if ((eq || fail) && kl < KEY_MAX && !memchr(d, 0, kl)) {
			memcpy(e->key, d, kl);
			e->key[kl] = '\0';
			e->fail = fail;
			e->val = eq ? eq + 1 : d;
			e->len = eq ? ll - kl - 1 : 0;
			s->n++;
		}
		d += ll + (nl ? 1 : 0);
		n -= ll + (nl ? 1 : 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct store s;
	static const size_t errlens[] = { 256, 0, 1, 2, 17, 64, 255, 256 };
	static const size_t pathlens[] = { XB_PARAMS_MAX, 1, 2, 8, 32, 200, 1000, XB_PARAMS_MAX };
	uint8_t knobs[4] = { 0 };

	memcpy(knobs, data, size < 4 ? size : 4);
	parse_store(&s, data + (size < 4 ? size : 4), size < 4 ? 0 : size - 4);

	/* limits as xenbus_config allows them: queues 1..16, order 0..4 */
	struct xb_limits lim = {
		.max_queues = 1 + knobs[0] % ENGINE_MAX_QUEUES,
		.max_ring_order = knobs[1] % (ENGINE_MAX_RING_ORDER + 1),
		.persistent = knobs[2] & 1,
	};
	fuzz_frontend(&s, &lim, errlens[knobs[3] & 7]);
	/* and the widest limits, so deep keys are reached whatever the knobs */
	lim = (struct xb_limits){ ENGINE_MAX_QUEUES, ENGINE_MAX_RING_ORDER, true };
	fuzz_frontend(&s, &lim, 256);
	fuzz_backend_keys(&s, pathlens[(knobs[3] >> 3) & 7]);
	fuzz_parse_uint(&s);
	check(xb_state_name((int8_t)knobs[0]) != NULL);
	return 0;
}
