/* The request engine's ring behaviour on the fake transport: batching of
 * notifications, concurrency within one ring, barrier ordering, hostile
 * requests answered with the right status, a req_prod overrun, an event
 * storm, stopping with requests in flight or after the guest died, and
 * engine_start refusing bad parameters without leaking. */
#include "t/engine-fake.h"
#include "util/tap.h"

static struct fk_guest g;

static void setup(unsigned order, size_t pages)
{
	fk_guest_init(&g, pages, 4u << 20, BLKIF_ABI_X86_64, order, 1, false);
}

static bool stopped_clean(void)
{
	engine_stop(g.e);
	g.e = NULL;
	return atomic_load(&g.f->maps_live) == 0 && atomic_load(&g.f->binds_live) == 0;
}

static void batching(void)
{
	struct fk_seg seg[64];
	struct blkif_req rq;
	struct fk_rsp rsp[64];
	struct fk_ring *r = &g.ring[0];

	setup(2, 256);
	fk_segs(g.f, seg, 64, false);
	fk_guest_start(&g);
	/* A batching frontend: wants one notification when all 64 are done. */
	fk_hdr(r)[FK_RSP_EVENT] = 64;
	for (unsigned i = 0; i < 64; i++) {
		fk_req(&rq, BLKIF_OP_READ, i, i * 8, &seg[i], 1);
		fk_put(r, &rq);
	}
	ok(fk_publish(r), "64 requests published with one kick");
	is_int(fk_responses(r, rsp, 64, 64, 10000, true), 64, "64 responses");
	usleep(20000);
	is_int(atomic_load(&g.f->port[r->port].notifies), 1,
	       "rule 18: exactly one notification for 64 responses (rsp_event)");
	is_int(ld64(&g.stats.notify_out), 1, "notify_out counted");
	is_int(ld64(&g.stats.batched_reqs), 64, "all 64 requests taken");
	ok(ld64(&g.stats.batches) <= 4, "taken in few drains");
	ok(ld64(&g.stats.ring_occupancy_max) >= 1, "ring occupancy recorded");
	ok(stopped_clean(), "stop: clean");
	fk_guest_fini(&g);
}

static void concurrency_and_barrier(void)
{
	struct fk_seg seg[16];
	struct blkif_req rq[16];
	struct fk_rsp rsp[16];
	struct fk_ring *r = &g.ring[0];

	setup(0, 64);
	fk_segs(g.f, seg, 16, false);
	fk_guest_start(&g);
	atomic_store(&g.img->delay_us, 20000);
	for (unsigned i = 0; i < 8; i++)
		fk_req(&rq[i], BLKIF_OP_READ, i, i * 8, &seg[i], 1);
	ok(fk_run(r, rq, 8, BLKIF_RSP_OKAY), "8 slow reads");
	ok(atomic_load(&g.img->max_active) >= 2, "reads of one ring ran concurrently");

	/* 4 writes, a barrier, 4 writes: the barrier completes after the
	 * first four and before any of the last four starts. */
	for (unsigned i = 0; i < 9; i++)
		fk_req(&rq[i], BLKIF_OP_WRITE, 100 + i, i * 8, &seg[i], 1);
	fk_req(&rq[4], BLKIF_OP_WRITE_BARRIER, 104, 0, NULL, 0);
	for (unsigned i = 0; i < 9; i++)
		fk_put(r, &rq[i]);
	fk_publish(r);
	unsigned n = fk_responses(r, rsp, 9, 9, 10000, false), pos[9];
	is_int(n, 9, "9 responses");
	for (unsigned i = 0; i < n; i++)
		pos[rsp[i].id - 100] = i;
	bool ordered = n == 9;
	for (unsigned i = 0; ordered && i < 9; i++)
		if ((i < 4 && pos[i] > pos[4]) || (i > 4 && pos[i] < pos[4]))
			ordered = false;
	ok(ordered, "rule 23: barrier drains older requests and holds back newer ones");
	atomic_store(&g.img->delay_us, 0);
	ok(stopped_clean(), "stop: clean");
	fk_guest_fini(&g);
}

static void hostile_requests(void)
{
	struct fk_seg seg[4], ro[1];
	struct blkif_req rq;
	struct fk_rsp rsp[2];
	struct fk_ring *r = &g.ring[0];

	setup(0, 64);
	fk_segs(g.f, seg, 4, false);
	fk_segs(g.f, ro, 1, true);
	g.p.feature_barrier = false;
	fk_guest_start(&g);

	memset(&rq, 0, sizeof(rq));
	rq.operation = 77;
	rq.id = 0xfeedfacecafebeefull;
	fk_put(r, &rq);
	fk_publish(r);
	ok(fk_responses(r, rsp, 1, 1, 5000, false) == 1 && rsp[0].id == rq.id &&
	   rsp[0].op == 77 && rsp[0].status == BLKIF_RSP_EOPNOTSUPP,
	   "unknown op: EOPNOTSUPP, id and op echoed");
	fk_req(&rq, BLKIF_OP_WRITE_BARRIER, 2, 0, NULL, 0);
	ok(fk_run(r, &rq, 1, BLKIF_RSP_EOPNOTSUPP), "unadvertised barrier: EOPNOTSUPP");

	struct fk_seg ind[1];
	fk_segs(g.f, ind, 1, true);
	fk_ind_req(g.f, &rq, BLKIF_OP_FLUSH_DISKCACHE, 3, 0, seg, 2, ind);
	ok(fk_run(r, &rq, 1, BLKIF_RSP_ERROR), "rule 9: indirect flush -> ERROR, op = indirect_op");

	/* an indirect entry that breaks rule 10 */
	struct fk_seg bad[2] = { seg[0], seg[1] };
	bad[1].first = 6;
	bad[1].last = 2;
	fk_ind_req(g.f, &rq, BLKIF_OP_READ, 4, 0, bad, 2, ind);
	ok(fk_run(r, &rq, 1, BLKIF_RSP_ERROR), "rule 10: bad indirect entry -> ERROR");
	/* indirect page that is not granted */
	fk_ind_req(g.f, &rq, BLKIF_OP_READ, 5, 0, seg, 2, ind);
	rq.indirect_grefs[0] = 4000;
	ok(fk_run(r, &rq, 1, BLKIF_RSP_ERROR), "rule 15: unreadable indirect page -> ERROR");

	fk_req(&rq, BLKIF_OP_READ, 6, 8192 - 4, seg, 1);
	ok(fk_run(r, &rq, 1, BLKIF_RSP_ERROR), "rule 11: read past the end -> ERROR");
	engine_set_sectors(g.e, 1024);
	fk_req(&rq, BLKIF_OP_READ, 7, 1024, seg, 1);
	ok(fk_run(r, &rq, 1, BLKIF_RSP_ERROR), "rule 11: checked against the live size");
	engine_set_sectors(g.e, 8192);
	rq.id = 8;
	ok(fk_run(r, &rq, 1, BLKIF_RSP_OKAY), "read inside the restored size works");

	/* rule 15: one bad grant among good ones fails the request, not us */
	struct fk_seg mix[3] = { seg[0], seg[1], seg[2] };
	mix[1].gref = 5000;
	fk_req(&rq, BLKIF_OP_WRITE, 9, 0, mix, 3);
	ok(fk_run(r, &rq, 1, BLKIF_RSP_ERROR), "rule 15: bad grant in a write -> ERROR");
	fk_req(&rq, BLKIF_OP_READ, 10, 0, ro, 1);
	ok(fk_run(r, &rq, 1, BLKIF_RSP_ERROR), "rule 15: read into a read-only grant -> ERROR");
	fk_req(&rq, BLKIF_OP_WRITE, 11, 0, ro, 1);
	ok(fk_run(r, &rq, 1, BLKIF_RSP_OKAY), "write from a read-only grant is fine");

	atomic_store(&g.img->fail, -EIO);
	fk_req(&rq, BLKIF_OP_READ, 12, 0, seg, 1);
	ok(fk_run(r, &rq, 1, BLKIF_RSP_ERROR), "image I/O error -> ERROR");
	atomic_store(&g.img->fail, 0);

	ok(ld64(&g.stats.bad_requests) >= 7, "bad requests counted");
	ok(ld64(&g.stats.op[STAT_READ].errors) >= 3, "read errors counted");
	ok(!engine_broken(g.e), "bad requests do not break the ring");
	ok(stopped_clean(), "stop: clean");
	fk_guest_fini(&g);
}

static void overrun(void)
{
	struct fk_ring *r = &g.ring[0];
	struct fk_rsp rsp[1];
	int i;

	setup(0, 64);
	fk_guest_start(&g);
	fk_hdr(r)[FK_REQ_PROD] = 33; /* 33 requests on a 32-slot ring */
	fk_kick(g.f, r->port);
	for (i = 0; i < 500 && !engine_broken(g.e); i++)
		usleep(10000);
	ok(engine_broken(g.e), "rule 3: req_prod overrun marks the engine broken");
	unsigned acks = atomic_load(&g.f->acks);
	for (int k = 0; k < 100; k++)
		fk_kick(g.f, r->port);
	usleep(50000);
	ok(atomic_load(&g.f->acks) == acks, "broken ring is not polled any more (no spin)");
	ok(fk_responses(r, rsp, 1, 1, 50, false) == 0, "nothing answered on a broken ring");
	ok(stopped_clean(), "rule 22: stop after broken ring: clean, no hang");
	fk_guest_fini(&g);
}

static atomic_bool storm_on;

static void *storm(void *arg)
{
	struct fk_ring *r = arg;

	while (atomic_load(&storm_on))
		fk_kick(g.f, r->port);
	return NULL;
}

static void event_storm(void)
{
	struct fk_ring *r = &g.ring[0];
	struct fk_seg seg[1];
	struct blkif_req rq;
	pthread_t t;

	setup(0, 64);
	fk_segs(g.f, seg, 1, false);
	fk_guest_start(&g);
	atomic_store(&storm_on, true);
	pthread_create(&t, NULL, storm, r);
	usleep(300000);
	atomic_store(&storm_on, false);
	pthread_join(t, NULL);
	unsigned acks = atomic_load(&g.f->acks);
	diag("storm of 300 ms: %u wakeups, %llu spurious", acks,
	     (unsigned long long)ld64(&g.stats.spurious_in));
	ok(acks < 200, "rule 18: spurious kicks back off (few wakeups in a storm)");
	ok(ld64(&g.stats.spurious_in) >= 2, "spurious kicks counted");
	fk_req(&rq, BLKIF_OP_READ, 1, 0, seg, 1);
	ok(fk_run(r, &rq, 1, BLKIF_RSP_OKAY), "served again after the storm");
	ok(stopped_clean(), "stop: clean");
	fk_guest_fini(&g);
}

static void stop_in_flight(bool guest_dies)
{
	struct fk_ring *r = &g.ring[0];
	struct fk_seg seg[32];
	struct blkif_req rq;
	struct fk_rsp rsp[32];

	setup(0, 64);
	fk_segs(g.f, seg, 32, false);
	fk_guest_start(&g);
	atomic_store(&g.img->delay_us, 30000);
	for (unsigned i = 0; i < 32; i++) {
		fk_req(&rq, BLKIF_OP_READ, i, i * 8, &seg[i], 1);
		fk_put(r, &rq);
	}
	fk_publish(r);
	for (int i = 0; i < 500 && atomic_load(&g.img->reads) == 0; i++)
		usleep(10000); /* until some are in flight */
	if (guest_dies)
		atomic_store(&g.f->dead, true);
	unsigned flushes = atomic_load(&g.img->flushes);
	ok(stopped_clean(), guest_dies ? "stop after the guest died: clean"
				       : "stop with requests in flight: clean");
	ok(atomic_load(&g.img->flushes) > flushes, "stop flushes the image");
	unsigned n = fk_responses(r, rsp, 32, 32, 0, true);
	bool all = true;
	unsigned errors = 0;
	for (unsigned i = 0; i < n; i++) {
		errors += rsp[i].status == BLKIF_RSP_ERROR;
		/* the first few may have finished before the guest died */
		if (rsp[i].status != BLKIF_RSP_OKAY && (!guest_dies || rsp[i].status != BLKIF_RSP_ERROR))
			all = false;
	}
	if (guest_dies && !errors)
		all = false;
	diag("%u of 32 answered before stop returned", n);
	ok(n >= 1 && all, guest_dies ? "in-flight requests answered ERROR (grant copy failed)"
				     : "in-flight requests were answered OKAY");
	fk_guest_fini(&g);
}

static void start_failures(void)
{
	char err[256] = "";
	struct engine_params p;

	setup(0, 64);
	p = g.p;
	p.ring_order = 5;
	ok(!engine_start(&p, err, sizeof(err)) && strstr(err, "ring-page-order"),
	   "rule 20: ring order 5 refused");
	p = g.p;
	p.nr_queues = 0;
	ok(!engine_start(&p, err, sizeof(err)), "rule 20: 0 queues refused");
	p.nr_queues = 17;
	ok(!engine_start(&p, err, sizeof(err)), "rule 20: 17 queues refused");
	p = g.p;
	p.sector_size = 1000;
	ok(!engine_start(&p, err, sizeof(err)), "odd sector size refused");
	p = g.p;
	p.queue[0].ring_ref[0] = 3000;
	ok(!engine_start(&p, err, sizeof(err)) && strstr(err, "map"), "bad ring gref: refused");
	p = g.p;
	p.queue[0].evtchn = 60;
	ok(!engine_start(&p, err, sizeof(err)) && strstr(err, "event channel"),
	   "bad event channel: refused");
	ok(atomic_load(&g.f->maps_live) == 0 && atomic_load(&g.f->binds_live) == 0,
	   "failed starts leave nothing mapped or bound");
	engine_stop(NULL);
	fk_guest_fini(&g);
}

/* Device settings that change what is valid: 4 KiB logical sectors,
 * secure discard advertised, a read-only device. */
static void device_settings(void)
{
	struct fk_seg seg[2];
	struct blkif_req rq;
	struct fk_ring *r = &g.ring[0];
	struct trace_rec tr[4];
	uint64_t cur, missed;

	setup(0, 64);
	fk_segs(g.f, seg, 2, false);
	g.p.sector_size = 4096;
	g.p.discard_secure = true;
	fk_guest_start(&g);
	fk_req(&rq, BLKIF_OP_WRITE, 1, 8, seg, 1);
	ok(fk_run(r, &rq, 1, BLKIF_RSP_OKAY), "4Kn: aligned write OKAY");
	fk_req(&rq, BLKIF_OP_WRITE, 2, 4, seg, 1);
	ok(fk_run(r, &rq, 1, BLKIF_RSP_ERROR), "4Kn: sector_number not 4 KiB aligned -> ERROR");
	struct fk_seg half = seg[0];
	half.last = 3;
	fk_req(&rq, BLKIF_OP_READ, 3, 8, &half, 1);
	ok(fk_run(r, &rq, 1, BLKIF_RSP_ERROR), "4Kn: half-page segment -> ERROR");
	cur = trace_cursor_now(g.trace);
	memset(&rq, 0, sizeof(rq));
	rq.operation = BLKIF_OP_DISCARD;
	rq.discard_flag = BLKIF_DISCARD_SECURE;
	rq.id = 4;
	rq.sector_number = 16;
	rq.nr_sectors = 16;
	ok(fk_run(r, &rq, 1, BLKIF_RSP_OKAY), "secure discard OKAY when advertised");
	ok(trace_read(g.trace, &cur, tr, 4, &missed, 1000) == 1 && tr[0].op == TRACE_DISCARD &&
	   (tr[0].flags & TRACE_F_SECURE) && tr[0].nr_sectors == 16,
	   "trace: secure discard flagged");
	ok(stopped_clean(), "stop: clean");
	fk_guest_fini(&g);

	setup(0, 64);
	fk_segs(g.f, seg, 2, false);
	g.p.readonly = true;
	g.p.feature_discard = false;
	fk_guest_start(&g);
	unsigned writes = atomic_load(&g.img->writes);
	fk_req(&rq, BLKIF_OP_WRITE, 1, 0, seg, 1);
	ok(fk_run(r, &rq, 1, BLKIF_RSP_ERROR), "read-only: WRITE -> ERROR");
	fk_req(&rq, BLKIF_OP_READ, 2, 0, seg, 1);
	ok(fk_run(r, &rq, 1, BLKIF_RSP_OKAY), "read-only: READ OKAY");
	fk_req(&rq, BLKIF_OP_FLUSH_DISKCACHE, 3, 0, NULL, 0);
	ok(fk_run(r, &rq, 1, BLKIF_RSP_OKAY), "read-only: pure flush OKAY");
	ok(atomic_load(&g.img->writes) == writes, "read-only: the image was never written");
	ok(stopped_clean(), "stop: clean");
	fk_guest_fini(&g);
}

int main(void)
{
	log_init("t252", VLOG_ERR, false);
	batching();
	concurrency_and_barrier();
	hostile_requests();
	overrun();
	event_storm();
	stop_in_flight(false);
	stop_in_flight(true);
	start_failures();
	device_settings();
	return done_testing();
}
