/*
 * evil.c - a guest that misbehaves on purpose, for the backend's hardening
 * tests (--evil MODE).  Each bad request must be answered with
 * BLKIF_RSP_ERROR or BLKIF_RSP_EOPNOTSUPP within the timeout, and the
 * device must still serve a good request afterwards, except in the modes
 * that break the ring on purpose (ring-overrun) or the guest (die).
 */
#include "dev.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <xen/io/xenbus.h>

#include "blkback/sim/guest.h"
#include "util/log.h"

struct evil {
	struct vf_dev *d;
	struct vf_queue *q;
	uint32_t frame;           /* two scratch data pages */
	uint32_t ind_frame;       /* an indirect page */
	unsigned pass, fail;
};

/* A JSON string (our own texts: only quotes and backslashes to escape). */
static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++)
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s >= 0x20)
			putchar(*s);
	putchar('"');
}

static void result(struct evil *e, bool pass, const char *mode, const char *what, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static void result(struct evil *e, bool pass, const char *mode, const char *what, const char *fmt, ...)
{
	char detail[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	if (e->d->opts->json) {
		printf("{\"devid\": %u, \"mode\": ", e->d->devid);
		json_str(mode);
		printf(", \"check\": ");
		json_str(what);
		printf(", \"pass\": %s, \"detail\": ", pass ? "true" : "false");
		json_str(detail);
		printf("}\n");
	} else {
		printf("%s %s: %s: %s\n", pass ? "PASS" : "FAIL", mode, what, detail);
	}
	fflush(stdout);
	if (pass)
		e->pass++;
	else
		e->fail++;
}

static const char *status_name(int st)
{
	switch (st) {
	case BLKIF_RSP_OKAY: return "OKAY";
	case BLKIF_RSP_ERROR: return "ERROR";
	case BLKIF_RSP_EOPNOTSUPP: return "EOPNOTSUPP";
	case -1000: return "no answer";
	case -1001: return "bad response";
	default: return "unknown status";
	}
}

/* Send req; the backend must refuse it. */
static void expect_refused(struct evil *e, const char *mode, const char *what, struct blkif_req *req)
{
	int st = vf_queue_sync(e->q, req, e->d->opts->timeout_ns);

	result(e, st == BLKIF_RSP_ERROR || st == BLKIF_RSP_EOPNOTSUPP, mode, what, "%s (%d)",
	       status_name(st), st);
}

/* A plain one-segment request over the scratch page with grant gref. */
static void simple_req(struct evil *e, struct blkif_req *req, uint8_t op, uint64_t sector,
		       grant_ref_t gref, unsigned first, unsigned last)
{
	memset(req, 0, sizeof(*req));
	req->operation = op;
	req->handle = (uint16_t)e->d->devid;
	req->sector_number = sector;
	req->nr_segments = 1;
	req->seg[0].gref = gref;
	req->seg[0].first_sect = (uint8_t)first;
	req->seg[0].last_sect = (uint8_t)last;
}

static int grant(struct evil *e, uint16_t to, uint32_t frame, bool ro)
{
	int r = vf_grant(e->d->mem, to, frame, ro);

	if (r < 0)
		log_err("grant: %s", strerror(-r));
	return r < 0 ? 0 : r;
}

static void end_grant_now(struct evil *e, int gref)
{
	if (gref > 0 && vf_end_grant(e->d->mem, (uint32_t)gref) < 0)
		atomic_fetch_add(&e->d->stats.grant_leaks, 1);
}

/* A grant a request used: ended now, or, with persistent grants, once the
 * backend has closed (vf_evil_release). */
static void end_grant(struct evil *e, int gref)
{
	struct vf_dev *d = e->d;

	if (gref > 0 && d->persistent &&
	    d->evil_nheld < sizeof(d->evil_held) / sizeof(d->evil_held[0]))
		d->evil_held[d->evil_nheld++] = (uint32_t)gref;
	else
		end_grant_now(e, gref);
}

/* A good 4 KiB read of sector 0: the device must still work. */
static void expect_serving(struct evil *e, const char *mode)
{
	struct blkif_req req;
	int g = grant(e, e->d->be_domid, e->frame, false);
	int st;

	simple_req(e, &req, BLKIF_OP_READ, 0, (grant_ref_t)g, 0, 7);
	st = vf_queue_sync(e->q, &req, e->d->opts->timeout_ns);
	end_grant(e, g);
	result(e, st == BLKIF_RSP_OKAY, mode, "a good read afterwards", "%s", status_name(st));
}

static void mode_sector_range(struct evil *e)
{
	const char *m = "sector-range";
	uint64_t n = e->d->sectors;
	struct blkif_req req;
	int g = grant(e, e->d->be_domid, e->frame, false);
	int gro = grant(e, e->d->be_domid, e->frame + 1, true);

	simple_req(e, &req, BLKIF_OP_READ, n, (grant_ref_t)g, 0, 7);
	expect_refused(e, m, "read at the first sector past the end", &req);
	simple_req(e, &req, BLKIF_OP_READ, n ? n - 1 : 0, (grant_ref_t)g, 0, 7);
	expect_refused(e, m, "read straddling the end", &req);
	simple_req(e, &req, BLKIF_OP_READ, UINT64_MAX - 3, (grant_ref_t)g, 0, 7);
	expect_refused(e, m, "read whose end wraps u64", &req);
	simple_req(e, &req, BLKIF_OP_WRITE, n + 1000, (grant_ref_t)gro, 0, 7);
	expect_refused(e, m, "write past the end", &req);
	if (e->d->discard) {
		memset(&req, 0, sizeof(req));
		req.operation = BLKIF_OP_DISCARD;
		req.handle = (uint16_t)e->d->devid;
		req.sector_number = 0;
		req.nr_sectors = UINT64_MAX;
		expect_refused(e, m, "discard whose end wraps u64", &req);
		req.sector_number = n;
		req.nr_sectors = 8;
		expect_refused(e, m, "discard past the end", &req);
	}
	end_grant(e, g);
	end_grant(e, gro);
	expect_serving(e, m);
}

static void mode_bad_grant(struct evil *e)
{
	const char *m = "bad-grant";
	struct blkif_req req;
	int g;

	simple_req(e, &req, BLKIF_OP_READ, 0, 0x7ffffff0u, 0, 7);
	expect_refused(e, m, "grant ref out of range", &req);

	/* A gref never used in a request (so no backend can have it mapped
	 * persistently), ended before use. */
	g = grant(e, e->d->be_domid, e->frame, false);
	end_grant_now(e, g);
	simple_req(e, &req, BLKIF_OP_READ, 0, (grant_ref_t)g, 0, 7);
	expect_refused(e, m, "grant ref no longer granted", &req);

	g = grant(e, (uint16_t)(e->d->be_domid + 77), e->frame, false);
	simple_req(e, &req, BLKIF_OP_READ, 0, (grant_ref_t)g, 0, 7);
	expect_refused(e, m, "page granted to another domain", &req);
	end_grant(e, g);

	g = grant(e, e->d->be_domid, e->frame, true);
	simple_req(e, &req, BLKIF_OP_READ, 0, (grant_ref_t)g, 0, 7);
	expect_refused(e, m, "read into a read-only grant", &req);
	end_grant(e, g);
	expect_serving(e, m);
}

/* An INDIRECT request of nseg segments, every one the scratch page. */
static void indirect_req(struct evil *e, struct blkif_req *req, uint8_t iop, unsigned nseg,
			 grant_ref_t data, grant_ref_t ind)
{
	struct blkif_request_segment segs[512];
	unsigned n = nseg < 512 ? nseg : 512;

	for (unsigned i = 0; i < n; i++) {
		segs[i].gref = data;
		segs[i].first_sect = 0;
		segs[i].last_sect = 7;
	}
	vf_put_indirect(vf_mem_page(e->d->mem, e->ind_frame), segs, n);
	memset(req, 0, sizeof(*req));
	req->operation = BLKIF_OP_INDIRECT;
	req->indirect_op = iop;
	req->handle = (uint16_t)e->d->devid;
	req->nr_segments = (uint16_t)nseg;
	for (unsigned i = 0; i < BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST; i++)
		req->indirect_grefs[i] = ind;
}

static void mode_bad_segs(struct evil *e)
{
	const char *m = "bad-segs";
	struct blkif_req req;
	int g = grant(e, e->d->be_domid, e->frame, false);
	int gi = grant(e, e->d->be_domid, e->ind_frame, true);

	simple_req(e, &req, BLKIF_OP_READ, 0, (grant_ref_t)g, 0, 7);
	req.nr_segments = 0;
	expect_refused(e, m, "read with 0 segments", &req);
	simple_req(e, &req, BLKIF_OP_READ, 0, (grant_ref_t)g, 0, 7);
	for (unsigned i = 0; i < BLKIF_MAX_SEGMENTS_PER_REQUEST; i++)
		req.seg[i] = req.seg[0];
	req.nr_segments = 12;
	expect_refused(e, m, "direct read with 12 segments", &req);
	simple_req(e, &req, BLKIF_OP_READ, 0, (grant_ref_t)g, 5, 2);
	expect_refused(e, m, "first_sect > last_sect", &req);
	simple_req(e, &req, BLKIF_OP_READ, 0, (grant_ref_t)g, 0, 8);
	expect_refused(e, m, "last_sect 8", &req);
	simple_req(e, &req, BLKIF_OP_READ, 0, (grant_ref_t)g, 8, 9);
	expect_refused(e, m, "first_sect 8", &req);

	indirect_req(e, &req, BLKIF_OP_READ, 0, (grant_ref_t)g, (grant_ref_t)gi);
	expect_refused(e, m, "indirect read with 0 segments", &req);
	if (e->d->be_max_indirect) {
		indirect_req(e, &req, BLKIF_OP_READ, e->d->be_max_indirect + 1, (grant_ref_t)g,
			     (grant_ref_t)gi);
		expect_refused(e, m, "indirect read above feature-max-indirect-segments", &req);
	}
	indirect_req(e, &req, BLKIF_OP_READ, 4097, (grant_ref_t)g, (grant_ref_t)gi);
	expect_refused(e, m, "indirect read needing 9 indirect pages", &req);
	indirect_req(e, &req, BLKIF_OP_READ, 65535, (grant_ref_t)g, (grant_ref_t)gi);
	expect_refused(e, m, "indirect read with 65535 segments", &req);
	end_grant(e, g);
	end_grant(e, gi);
	expect_serving(e, m);
}

static void mode_bad_op(struct evil *e)
{
	const char *m = "bad-op";
	static const uint8_t ops[] = { 4, 7, 255 };
	struct blkif_req req;
	int g = grant(e, e->d->be_domid, e->frame, false);
	int gi = grant(e, e->d->be_domid, e->ind_frame, true);

	for (unsigned i = 0; i < sizeof(ops); i++) {
		char what[32];

		simple_req(e, &req, ops[i], 0, (grant_ref_t)g, 0, 7);
		snprintf(what, sizeof(what), "operation %u", ops[i]);
		expect_refused(e, m, what, &req);
	}
	indirect_req(e, &req, BLKIF_OP_DISCARD, 1, (grant_ref_t)g, (grant_ref_t)gi);
	expect_refused(e, m, "indirect with indirect_op DISCARD", &req);
	indirect_req(e, &req, BLKIF_OP_INDIRECT, 1, (grant_ref_t)g, (grant_ref_t)gi);
	expect_refused(e, m, "indirect with indirect_op INDIRECT", &req);
	end_grant(e, g);
	end_grant(e, gi);
	expect_serving(e, m);
}

static void mode_storm(struct evil *e)
{
	const char *m = "storm";
	uint64_t dur = e->d->opts->duration_ns ? e->d->opts->duration_ns : 3000000000ull;
	uint64_t end = now_ns() + dur, n = 0;

	while (now_ns() < end && !atomic_load(&vf_stop)) {
		for (int i = 0; i < 256; i++)
			vf_queue_kick(e->q);
		n += 256;
		/* Drain our own channel too, as a guest under attack would. */
		sim_guest_evtchn_ack(vf_mem_guest(e->d->mem), (uint32_t)e->q->port);
	}
	result(e, true, m, "notifications without requests", "%llu sent in %.1f s",
	       (unsigned long long)n, (double)dur / 1e9);
	expect_serving(e, m);
}

/* req_prod far ahead of anything possible: the backend must stop serving
 * this ring (Linux: "Frontend provided bogus ring requests") and not spin. */
static void mode_ring_overrun(struct evil *e)
{
	const char *m = "ring-overrun";
	struct vf_ring *r = &e->q->ring;
	uint64_t t0 = now_ns(), quiet = 1500000000ull;
	uint32_t rsp0 = vf_ring_rsp_prod(r);
	int st = XenbusStateConnected;

	vf_ring_set_req_prod(r, r->req_prod_pvt + r->size * 4 + 7);
	vf_queue_kick(e->q);
	/* Until the backend leaves Connected, answers anything (it must
	 * not: there is no valid request), or stays quiet for 1.5 s. */
	while (!atomic_load(&vf_stop)) {
		st = vf_read_state(e->d->xs, e->d->be);
		if (st != XenbusStateConnected || vf_ring_rsp_prod(r) != rsp0 ||
		    now_ns() - t0 >= quiet)
			break;
		usleep(50000);
	}
	if (vf_ring_rsp_prod(r) != rsp0)
		result(e, false, m, "bogus req_prod", "backend answered garbage slots (rsp_prod %u)",
		       vf_ring_rsp_prod(r));
	else if (st != XenbusStateConnected)
		result(e, true, m, "bogus req_prod", "backend stopped serving and left Connected "
		       "(state %d)", st);
	else
		result(e, true, m, "bogus req_prod", "backend stopped serving this ring (no "
		       "responses; still Connected)");
	e->q->broken = true;
	snprintf(e->q->why, sizeof(e->q->why), "ring broken on purpose (ring-overrun)");
}

/* Queue reads and die with them in flight. */
static void mode_die(struct evil *e)
{
	struct vf_ring *r = &e->q->ring;
	unsigned n = r->size < 32 ? r->size : 32;

	for (unsigned i = 0; i < n; i++) {
		struct blkif_req req;
		int g = grant(e, e->d->be_domid, e->frame, false);

		simple_req(e, &req, BLKIF_OP_READ, (uint64_t)i * 8 % (e->d->sectors ? e->d->sectors : 1),
			   (grant_ref_t)g, 0, 7);
		req.id = i;
		vf_ring_put(r, &req);
	}
	if (vf_ring_push(r))
		vf_queue_kick(e->q);
	if (e->d->opts->json)
		printf("{\"devid\": %u, \"evil\": \"die\", \"in_flight\": %u}\n", e->d->devid, n);
	else
		printf("die: %u requests in flight, SIGKILL now\n", n);
	fflush(stdout);
	kill(getpid(), SIGKILL);
	pause();
}

static const struct {
	const char *name;
	void (*fn)(struct evil *e);
} modes[] = {
	{ "sector-range", mode_sector_range }, { "bad-grant", mode_bad_grant },
	{ "bad-segs", mode_bad_segs },         { "bad-op", mode_bad_op },
	{ "storm", mode_storm },               { "ring-overrun", mode_ring_overrun },
	{ "die", mode_die },
};

bool vf_evil_mode_known(const char *mode)
{
	if (strcmp(mode, "all") == 0)
		return true;
	for (unsigned i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		if (strcmp(mode, modes[i].name) == 0)
			return true;
	return false;
}

int vf_evil_run(struct vf_dev *d, const char *mode)
{
	struct evil e = { .d = d, .q = &d->queue[0] };
	bool all = strcmp(mode, "all") == 0;

	if (vf_mem_alloc(d->mem, 2, &e.frame) || vf_mem_alloc(d->mem, 1, &e.ind_frame)) {
		snprintf(d->error, sizeof(d->error), "guest memory exhausted (use --mem)");
		return -1;
	}
	for (unsigned i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		/* "all" = every mode that leaves the device usable */
		if (all ? (modes[i].fn == mode_ring_overrun || modes[i].fn == mode_die)
			: strcmp(mode, modes[i].name) != 0)
			continue;
		modes[i].fn(&e);
	}
	if (d->opts->json)
		printf("{\"devid\": %u, \"evil\": \"%s\", \"passed\": %u, \"failed\": %u}\n",
		       d->devid, mode, e.pass, e.fail);
	else
		printf("evil %s on device %u: %u passed, %u failed\n", mode, d->devid, e.pass, e.fail);
	/* Held grants may still be mapped: vf_dev_close ends them. */
	d->evil_frame = e.frame;
	d->evil_ind_frame = e.ind_frame;
	return e.fail ? -1 : 0;
}

void vf_evil_release(struct vf_dev *d)
{
	for (unsigned i = 0; i < d->evil_nheld; i++)
		if (vf_end_grant(d->mem, d->evil_held[i]) < 0)
			atomic_fetch_add(&d->stats.grant_leaks, 1);
	d->evil_nheld = 0;
	if (d->evil_frame)
		vf_mem_release(d->mem, d->evil_frame, 2);
	if (d->evil_ind_frame)
		vf_mem_release(d->mem, d->evil_ind_frame, 1);
	d->evil_frame = d->evil_ind_frame = 0;
}
