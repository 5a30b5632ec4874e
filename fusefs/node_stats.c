/*
 * node_stats.c - stat, block/<name>/stat, diskstats and stats.
 *
 * stat is stats_format_stat() verbatim: the 17 fields of Linux
 * /sys/block/<dev>/stat.  diskstats has the same 17 numbers unpadded after
 * "major minor name", as /proc/diskstats does, so sysstat's iostat reads
 * either.  stats is for people: "key: value" lines (see man/vbdfs.8).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "blkback/vbd.h"
#include "formats/image.h"
#include "node.h"
#include "util/hist.h"
#include "util/stats.h"

void node_blkname(const struct vbd *v, char *buf, size_t len)
{
	snprintf(buf, len, "vbd-%s", vbd_name(v));
}

/* Linux device numbers of a Xen virtual device id: a plain id is
 * (major << 8 | minor) (51712 = xvda = 202,0); an extended one (bit 28) is
 * major 202 with the rest as the minor. */
void node_devnum(const struct vbd *v, unsigned *major, unsigned *minor)
{
	uint32_t devid = vbd_devid(v);

	if (devid & (1u << 28) || (devid >> 8) == 0 || (devid >> 8) > 255) {
		*major = 202;
		*minor = devid & 0x0fffffffu;
	} else {
		*major = devid >> 8;
		*minor = devid & 0xff;
	}
}

void node_stat_text(struct vbd *v, struct text *t)
{
	char line[512];

	stats_format_stat(vbd_stats(v), line, sizeof(line));
	text_printf(t, "%s", line);
}

void node_diskstats_line(struct vbd *v, struct text *t)
{
	unsigned long long f[17];
	char line[512], name[64];
	unsigned major, minor;

	stats_format_stat(vbd_stats(v), line, sizeof(line));
	if (sscanf(line, "%llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu "
			 "%llu %llu %llu %llu", &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6],
		   &f[7], &f[8], &f[9], &f[10], &f[11], &f[12], &f[13], &f[14], &f[15],
		   &f[16]) != 17)
		return;
	node_devnum(v, &major, &minor);
	node_blkname(v, name, sizeof(name));
	text_printf(t, "%4u %7u %s", major, minor, name);
	for (int i = 0; i < 17; i++)
		text_printf(t, " %llu", f[i]);
	text_printf(t, "\n");
}

static unsigned long long ld(_Atomic uint64_t *x)
{
	return (unsigned long long)atomic_load_explicit(x, memory_order_relaxed);
}

/* Latency in microseconds with one decimal. */
static void lat(struct text *t, const char *op, const char *what, uint64_t ns)
{
	text_printf(t, "%s_latency_%s_us: %" PRIu64 ".%" PRIu64 "\n", op, what, ns / 1000,
		    (ns % 1000) / 100);
}

void node_stats_text(struct vbd *v, struct text *t)
{
	struct dev_stats *s = vbd_stats(v);
	struct busy_snapshot b;
	struct img_info info;
	unsigned long long batches, reqs;

	text_printf(t, "device: %s\n", vbd_name(v));
	for (int op = 0; op < STAT_NR_OPS; op++) {
		struct op_stats *o = &s->op[op];
		const char *name = stat_op_name((enum stat_op)op);

		text_printf(t, "%s_requests: %llu\n", name, ld(&o->ios));
		text_printf(t, "%s_sectors: %llu\n", name, ld(&o->sectors));
		text_printf(t, "%s_errors: %llu\n", name, ld(&o->errors));
		lat(t, name, "avg", hist_mean(&o->latency));
		lat(t, name, "p50", hist_percentile(&o->latency, 0.50));
		lat(t, name, "p90", hist_percentile(&o->latency, 0.90));
		lat(t, name, "p99", hist_percentile(&o->latency, 0.99));
		lat(t, name, "max", hist_max(&o->latency));
	}
	stats_busy(s, &b);
	text_printf(t, "in_flight: %llu\n", (unsigned long long)b.in_flight);
	text_printf(t, "io_ticks_ms: %llu\n", (unsigned long long)(b.io_ticks_ns / 1000000));
	text_printf(t, "time_in_queue_ms: %llu\n",
		    (unsigned long long)(b.time_in_queue_ns / 1000000));
	text_printf(t, "ring_occupancy_max: %llu\n", ld(&s->ring_occupancy_max));
	batches = ld(&s->batches);
	reqs = ld(&s->batched_reqs);
	text_printf(t, "batches: %llu\n", batches);
	text_printf(t, "batched_reqs: %llu\n", reqs);
	text_printf(t, "reqs_per_batch: %llu.%02llu\n", batches ? reqs / batches : 0,
		    batches ? (reqs * 100 / batches) % 100 : 0);
	text_printf(t, "notify_in: %llu\n", ld(&s->notify_in));
	text_printf(t, "spurious_in: %llu\n", ld(&s->spurious_in));
	text_printf(t, "notify_out: %llu\n", ld(&s->notify_out));
	text_printf(t, "bad_requests: %llu\n", ld(&s->bad_requests));
	text_printf(t, "out_of_reqs: %llu\n", ld(&s->out_of_reqs));
	text_printf(t, "grant_ops: %llu\n", ld(&s->grant_ops));
	text_printf(t, "persistent_hits: %llu\n", ld(&s->persistent_hits));
	if (vbd_image(v)) {
		img_get_info(vbd_image(v), &info);
		text_printf(t, "image_format: %s\n", info.format ? info.format : "?");
		text_printf(t, "image_virtual_size: %" PRIu64 "\n", info.virtual_size);
		text_printf(t, "image_allocated: %" PRIu64 "\n", info.allocated);
	}
}
