/* Unit tests: vdev names (blkback/vdev.c) and the xenstore value checks of
 * the XenBus backend (blkback/xenbus_keys.c). */
#include <errno.h>

#include "blkback/vdev.h"
#include "blkback/xenbus.h"
#include "util/tap.h"

/* A fake frontend directory: a table of key -> value. */
struct kv {
	const char *key, *val;
};

static int table_read(void *ctx, const char *key, char *buf, size_t len)
{
	for (const struct kv *e = ctx; e->key; e++) {
		if (strcmp(e->key, key) == 0) {
			if (strlen(e->val) >= len)
				return -E2BIG;
			strcpy(buf, e->val);
			return 0;
		}
	}
	return -ENOENT;
}

static const struct xb_limits lim = { .max_queues = 4, .max_ring_order = 4, .persistent = true };

static int negotiate(const struct kv *t, struct engine_params *p, char *err)
{
	memset(p, 0, sizeof(*p));
	err[0] = '\0';
	return xb_read_frontend(table_read, (void *)t, &lim, p, err, 200);
}

static void test_vdev(void)
{
	uint32_t d = 0;
	char buf[32];

	ok(vdev_parse("xvda", &d) == 0 && d == 51712, "xvda = 51712");
	ok(vdev_parse("xvdb", &d) == 0 && d == 51728, "xvdb = 51728");
	ok(vdev_parse("xvdp", &d) == 0 && d == (202 << 8 | 15 << 4), "xvdp is the last classic one");
	ok(vdev_parse("xvdq", &d) == 0 && d == (1u << 28 | 16 << 8), "xvdq is extended");
	ok(vdev_parse("xvdaa", &d) == 0 && d == (1u << 28 | 26 << 8), "xvdaa = index 26");
	ok(vdev_parse("sdb", &d) == 0 && d == (8 << 8 | 16), "sdb = 8:16");
	ok(vdev_parse("hdc", &d) == 0 && d == (22 << 8), "hdc = 22:0");
	ok(vdev_parse("hdb", &d) == 0 && d == (3 << 8 | 64), "hdb = 3:64");
	ok(vdev_parse("51728", &d) == 0 && d == 51728, "decimal devid accepted");
	ok(vdev_parse("xvda1", &d) == -EINVAL, "partition refused");
	ok(vdev_parse("xvd", &d) == -EINVAL, "no letters refused");
	ok(vdev_parse("xvdA", &d) == -EINVAL, "capital letter refused");
	ok(vdev_parse("sdq", &d) == -EINVAL, "sd beyond p refused");
	ok(vdev_parse("hde", &d) == -EINVAL, "hd beyond d refused");
	ok(vdev_parse("vda", &d) == -EINVAL, "unknown prefix refused");
	ok(vdev_parse("0", &d) == -EINVAL, "devid 0 refused");
	ok(vdev_parse("99999999999", &d) == -EINVAL, "devid overflow refused");
	ok(vdev_parse("xvdzzzzzz", &d) == -EINVAL, "index overflow refused");
	ok(vdev_parse("", &d) == -EINVAL, "empty refused");

	ok(vdev_name(51712, buf, sizeof(buf)) == 0, "name of 51712");
	is_str(buf, "xvda", "51712 is xvda");
	vdev_name(1u << 28 | 26 << 8, buf, sizeof(buf));
	is_str(buf, "xvdaa", "extended 26 is xvdaa");
	vdev_name(8 << 8 | 16, buf, sizeof(buf));
	is_str(buf, "sdb", "8:16 is sdb");
	vdev_name(22 << 8 | 64, buf, sizeof(buf));
	is_str(buf, "hdd", "22:64 is hdd");
	vdev_name(51713, buf, sizeof(buf));
	is_str(buf, "xvda1", "partition number appended");
	ok(vdev_name(7 << 8, buf, sizeof(buf)) == -EINVAL, "major 7 has no disk name");
	is_str(buf, "1792", "unknown devid printed as a number");
	ok(vdev_name(51712, buf, 4) == -ENOSPC, "short buffer detected");

	/* every name we produce parses back to the same devid */
	int bad = 0;
	for (uint32_t i = 0; i < 1000; i++) {
		uint32_t id = i < 16 ? (202u << 8 | i << 4) : (1u << 28 | i << 8), back;
		if (vdev_name(id, buf, sizeof(buf)) || vdev_parse(buf, &back) || back != id)
			bad++;
	}
	is_int(bad, 0, "xvd names round-trip for 1000 indexes");
}

static void test_values(void)
{
	uint64_t v = 0;
	bool ro = false;

	ok(xb_parse_uint("0", 10, &v) == 0 && v == 0, "uint 0");
	ok(xb_parse_uint("4294967295", UINT32_MAX, &v) == 0 && v == UINT32_MAX, "uint32 max");
	ok(xb_parse_uint("4294967296", UINT32_MAX, &v) == -ERANGE, "uint32 max + 1");
	ok(xb_parse_uint("99999999999999999999999", UINT64_MAX, &v) == -ERANGE, "u64 overflow");
	ok(xb_parse_uint("-1", 10, &v) == -EINVAL, "sign refused");
	ok(xb_parse_uint(" 1", 10, &v) == -EINVAL, "space refused");
	ok(xb_parse_uint("1x", 10, &v) == -EINVAL, "suffix refused");
	ok(xb_parse_uint("01", 10, &v) == -EINVAL, "leading zero refused");
	ok(xb_parse_uint("", 10, &v) == -EINVAL, "empty refused");

	ok(xb_parse_mode("r", &ro) == 0 && ro, "mode r");
	ok(xb_parse_mode("w", &ro) == 0 && !ro, "mode w");
	ok(xb_parse_mode("rw", &ro) == 0 && !ro, "mode rw");
	ok(xb_parse_mode("x", &ro) == -EINVAL, "mode x refused");

	is_str(xb_format_name("aio"), "raw", "aio is raw");
	ok(xb_format_name("vhd") == NULL, "vhd unknown");
	is_str(xb_state_name(4), "Connected", "state 4 name");
	is_str(xb_state_name(99), "Invalid", "state 99 name");
}

static void test_image_spec(void)
{
	const char *fmt = "x";
	char path[64], err[200];

	ok(xb_image_spec("/i/a.qcow2", "qcow2", false, NULL, &fmt, path, sizeof(path), err,
			 sizeof(err)) == 0, "format key");
	is_str(fmt, "qcow2", "format from the key");
	is_str(path, "/i/a.qcow2", "params is the path");

	ok(xb_image_spec("qcow2:/i/b", NULL, false, NULL, &fmt, path, sizeof(path), err,
			 sizeof(err)) == 0, "FORMAT:PATH");
	is_str(fmt, "qcow2", "format from the prefix");
	is_str(path, "/i/b", "path after the prefix");

	ok(xb_image_spec("aio:/i/c", NULL, false, NULL, &fmt, path, sizeof(path), err,
			 sizeof(err)) == 0 && strcmp(fmt, "raw") == 0, "aio: prefix is raw");
	ok(xb_image_spec("/i/d", NULL, false, "raw", &fmt, path, sizeof(path), err,
			 sizeof(err)) == 0 && strcmp(fmt, "raw") == 0, "default format (backend/vbd)");
	ok(xb_image_spec("/i/e", NULL, false, NULL, &fmt, path, sizeof(path), err,
			 sizeof(err)) == -EINVAL, "writable disk without a format refused");
	ok(strstr(err, "never guessed") != NULL, "message says why");
	ok(xb_image_spec("/i/e", NULL, true, NULL, &fmt, path, sizeof(path), err,
			 sizeof(err)) == 0 && fmt == NULL, "read-only disk may be probed");
	ok(xb_image_spec("/i/f", "vmdk", false, NULL, &fmt, path, sizeof(path), err,
			 sizeof(err)) == -EINVAL, "unknown format key refused");
	ok(xb_image_spec("vmdk:/i/g", NULL, true, NULL, &fmt, path, sizeof(path), err,
			 sizeof(err)) == -EINVAL, "unknown prefix is part of a relative path: refused");
	ok(xb_image_spec("", "raw", false, NULL, &fmt, path, sizeof(path), err,
			 sizeof(err)) == -EINVAL, "empty params refused");
	ok(xb_image_spec("raw:", NULL, false, NULL, &fmt, path, sizeof(path), err,
			 sizeof(err)) == -EINVAL, "empty path after prefix refused");
	ok(xb_image_spec("/a/very/long/path/that/does/not/fit/in/sixty/four/bytes/of/buffer.img",
			 "raw", false, NULL, &fmt, path, sizeof(path), err, sizeof(err)) == -EINVAL,
	   "too long path refused");
}

static void test_frontend(void)
{
	struct engine_params p;
	char err[200];

	static const struct kv flat[] = {
		{ "ring-ref", "8" }, { "event-channel", "5" }, { "protocol", "x86_64-abi" },
		{ "feature-persistent", "1" }, { NULL, NULL } };
	ok(negotiate(flat, &p, err) == 0, "flat one-page frontend accepted");
	ok(p.nr_queues == 1 && p.ring_order == 0 && p.queue[0].ring_ref[0] == 8 &&
	   p.queue[0].evtchn == 5 && p.persistent && p.abi == BLKIF_ABI_X86_64,
	   "flat keys negotiated");

	static const struct kv x32[] = {
		{ "ring-ref", "8" }, { "event-channel", "5" }, { "protocol", "x86_32-abi" },
		{ NULL, NULL } };
	ok(negotiate(x32, &p, err) == 0 && p.abi == BLKIF_ABI_X86_32 && !p.persistent,
	   "x86_32 ABI, no persistent");

	static const struct kv noproto[] = {
		{ "ring-ref", "8" }, { "event-channel", "5" }, { NULL, NULL } };
	ok(negotiate(noproto, &p, err) == 0 && p.abi == BLKIF_ABI_X86_64, "no protocol = native");

	static const struct kv badproto[] = {
		{ "ring-ref", "8" }, { "event-channel", "5" }, { "protocol", "sparc-abi" },
		{ NULL, NULL } };
	ok(negotiate(badproto, &p, err) == -EINVAL && strstr(err, "sparc-abi"),
	   "unknown protocol is fatal");

	static const struct kv longproto[] = {
		{ "ring-ref", "8" }, { "event-channel", "5" },
		{ "protocol", "x86_64-abi-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" },
		{ NULL, NULL } };
	ok(negotiate(longproto, &p, err) == -EINVAL && strstr(err, "too long"),
	   "over-long value refused (bounded read)");

	static const struct kv order2[] = {
		{ "ring-page-order", "2" }, { "ring-ref0", "10" }, { "ring-ref1", "11" },
		{ "ring-ref2", "12" }, { "ring-ref3", "13" }, { "event-channel", "7" },
		{ NULL, NULL } };
	ok(negotiate(order2, &p, err) == 0 && p.ring_order == 2 && p.queue[0].ring_ref[3] == 13,
	   "order 2: four ring refs");

	static const struct kv order2_missing[] = {
		{ "ring-page-order", "2" }, { "ring-ref0", "10" }, { "ring-ref1", "11" },
		{ "ring-ref3", "13" }, { "event-channel", "7" }, { NULL, NULL } };
	ok(negotiate(order2_missing, &p, err) == -EINVAL && strstr(err, "ring-ref2"),
	   "a missing ring-refN is fatal and named");

	static const struct kv order5[] = {
		{ "ring-page-order", "5" }, { "ring-ref0", "10" }, { "event-channel", "7" },
		{ NULL, NULL } };
	ok(negotiate(order5, &p, err) == -EINVAL, "ring-page-order above max refused, not clamped");

	static const struct kv mq[] = {
		{ "multi-queue-num-queues", "2" }, { "ring-page-order", "1" },
		{ "queue-0/ring-ref0", "20" }, { "queue-0/ring-ref1", "21" },
		{ "queue-0/event-channel", "30" },
		{ "queue-1/ring-ref0", "22" }, { "queue-1/ring-ref1", "23" },
		{ "queue-1/event-channel", "31" }, { NULL, NULL } };
	ok(negotiate(mq, &p, err) == 0 && p.nr_queues == 2 && p.queue[1].ring_ref[1] == 23 &&
	   p.queue[1].evtchn == 31 && p.queue[0].evtchn == 30, "two queues with queue-N/ keys");

	static const struct kv mq0[] = {
		{ "multi-queue-num-queues", "0" }, { "ring-ref", "8" }, { "event-channel", "5" },
		{ NULL, NULL } };
	ok(negotiate(mq0, &p, err) == -EINVAL, "zero queues refused");

	static const struct kv mq9[] = {
		{ "multi-queue-num-queues", "9" }, { "ring-ref", "8" }, { "event-channel", "5" },
		{ NULL, NULL } };
	ok(negotiate(mq9, &p, err) == -EINVAL, "more queues than offered refused");

	static const struct kv mq1[] = {
		{ "multi-queue-num-queues", "1" }, { "ring-ref", "8" }, { "event-channel", "5" },
		{ NULL, NULL } };
	ok(negotiate(mq1, &p, err) == 0 && p.nr_queues == 1, "one queue uses flat keys");

	static const struct kv noevt[] = { { "ring-ref", "8" }, { NULL, NULL } };
	ok(negotiate(noevt, &p, err) == -EINVAL && strstr(err, "event-channel"),
	   "missing event-channel is fatal");

	static const struct kv badref[] = {
		{ "ring-ref", "-8" }, { "event-channel", "5" }, { NULL, NULL } };
	ok(negotiate(badref, &p, err) == -EINVAL && strstr(err, "ring-ref"),
	   "negative ring-ref refused");

	static const struct kv bigref[] = {
		{ "ring-ref", "4294967296" }, { "event-channel", "5" }, { NULL, NULL } };
	ok(negotiate(bigref, &p, err) == -EINVAL, "ring-ref above 32 bits refused");

	static const struct kv badpers[] = {
		{ "ring-ref", "8" }, { "event-channel", "5" }, { "feature-persistent", "yes" },
		{ NULL, NULL } };
	ok(negotiate(badpers, &p, err) == -EINVAL, "non-numeric feature-persistent refused");
}

int main(void)
{
	test_vdev();
	test_values();
	test_image_spec();
	test_frontend();
	return done_testing();
}
