/* Unit tests: vbd-front's queue engine (blkback/front/queue.c) end to end
 * against an in-process fake: this file implements the guest side of the
 * simulator (blkback/sim/guest.h: memory, grant table, eventfd channels)
 * and a small backend thread serving a RAM disk through the real grant
 * checks, so splitting, indirect pages, persistent and read-only grants,
 * --verify and response validation run without the daemon.  The backend
 * can misbehave on request: corrupt data, answer with a wrong id or
 * operation, or stop answering. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "blkback/front/dev.h"
#include "blkback/sim/guest.h"
#include "util/endian.h"
#include "util/log.h"
#include "util/tap.h"

/* ---- fake guest side of the simulator ---- */

#define NPAGES 16384
#define NGRANTS 16384

struct gent {
	_Atomic uint16_t flags;
	uint16_t domid;
	uint32_t frame;
};

struct sim_guest {
	uint8_t *mem;
	struct gent gnt[NGRANTS];
	bool gused[NGRANTS];
	pthread_mutex_t lock;
	int g2b[64], b2g[64];
	unsigned nports;
};

static struct sim_guest G;

void *sim_guest_page(struct sim_guest *g, uint32_t frame)
{
	return frame < NPAGES ? g->mem + (size_t)frame * 4096 : NULL;
}

size_t sim_guest_nr_pages(const struct sim_guest *g)
{
	return NPAGES;
}

int sim_guest_grant(struct sim_guest *g, uint16_t to, uint32_t frame, bool readonly)
{
	pthread_mutex_lock(&g->lock);
	for (unsigned i = 1; i < NGRANTS; i++)
		if (!g->gused[i]) {
			g->gused[i] = true;
			g->gnt[i].domid = to;
			g->gnt[i].frame = frame;
			atomic_store(&g->gnt[i].flags, GTF_permit_access | (readonly ? GTF_readonly : 0));
			pthread_mutex_unlock(&g->lock);
			return (int)i;
		}
	pthread_mutex_unlock(&g->lock);
	return -ENOSPC;
}

int sim_guest_end_grant(struct sim_guest *g, uint32_t gref)
{
	int r = -EINVAL;

	pthread_mutex_lock(&g->lock);
	if (gref && gref < NGRANTS && g->gused[gref]) {
		atomic_store(&g->gnt[gref].flags, 0);
		g->gused[gref] = false;
		r = 0;
	}
	pthread_mutex_unlock(&g->lock);
	return r;
}

void sim_guest_set_grant_raw(struct sim_guest *g, uint32_t gref, uint16_t flags, uint16_t domid,
			     uint32_t frame)
{
}

int sim_guest_grant_flags(struct sim_guest *g, uint32_t gref)
{
	return gref < NGRANTS ? atomic_load(&g->gnt[gref].flags) : -EINVAL;
}

int sim_guest_evtchn_alloc(struct sim_guest *g, uint16_t remote)
{
	unsigned p = ++g->nports;

	g->g2b[p] = eventfd(0, EFD_NONBLOCK);
	g->b2g[p] = eventfd(0, EFD_NONBLOCK);
	return (int)p;
}

int sim_guest_evtchn_notify(struct sim_guest *g, uint32_t port)
{
	uint64_t one = 1;
	return write(g->g2b[port], &one, 8) == 8 ? 0 : -errno;
}

int sim_guest_evtchn_fd(struct sim_guest *g, uint32_t port)
{
	return g->b2g[port];
}

int sim_guest_evtchn_close(struct sim_guest *g, uint32_t port)
{
	return 0;
}

int sim_guest_evtchn_ack(struct sim_guest *g, uint32_t port)
{
	uint64_t v;
	return read(g->b2g[port], &v, 8) == 8 ? 1 : 0;
}

/* ---- fake backend ---- */

enum misbehave { GOOD, CORRUPT, BAD_ID, BAD_OP, SILENT };

#define DISK_SECTORS 8192 /* 4 MiB */
static uint8_t disk[DISK_SECTORS * 512];

struct fakeback {
	struct vf_queue *q;
	enum misbehave mode;
	unsigned count;          /* requests served */
	unsigned indirect_seen, max_segs_seen, ro_seen;
	atomic_bool stop;
	pthread_t th;
};

/* Page of gref if domain 0 may use it (writing only if writable). */
static uint8_t *grant_page(grant_ref_t gref, bool write)
{
	struct gent *e;
	uint16_t f;

	if (gref == 0 || gref >= NGRANTS)
		return NULL;
	e = &G.gnt[gref];
	f = atomic_load(&e->flags);
	if (!(f & GTF_permit_access) || e->domid != 0 || (write && (f & GTF_readonly)))
		return NULL;
	return sim_guest_page(&G, e->frame);
}

static int16_t serve(struct fakeback *fb, struct blkif_req *rq, uint8_t *op_out)
{
	struct blkif_request_segment segs[4096];
	unsigned n = rq->nr_segments;
	uint8_t op = rq->operation;
	uint64_t sec = rq->sector_number;

	*op_out = op;
	if (op == BLKIF_OP_FLUSH_DISKCACHE)
		return BLKIF_RSP_OKAY;
	if (op == BLKIF_OP_DISCARD)
		return sec + rq->nr_sectors <= DISK_SECTORS ? BLKIF_RSP_OKAY : BLKIF_RSP_ERROR;
	if (op == BLKIF_OP_INDIRECT) {
		fb->indirect_seen++;
		op = rq->indirect_op;
		*op_out = op;
		if (n > 4096)
			return BLKIF_RSP_ERROR;
		for (unsigned p = 0; p * 512 < n; p++) {
			uint8_t *pg = grant_page(rq->indirect_grefs[p], false);
			if (!pg)
				return BLKIF_RSP_ERROR;
			for (unsigned i = p * 512; i < n && i < (p + 1) * 512; i++) {
				segs[i].gref = get_le32(pg + 8 * (i % 512));
				segs[i].first_sect = pg[8 * (i % 512) + 4];
				segs[i].last_sect = pg[8 * (i % 512) + 5];
			}
		}
	} else if (op == BLKIF_OP_READ || op == BLKIF_OP_WRITE) {
		if (n == 0 || n > 11)
			return BLKIF_RSP_ERROR;
		memcpy(segs, rq->seg, n * sizeof(segs[0]));
	} else {
		return BLKIF_RSP_EOPNOTSUPP;
	}
	if (n > fb->max_segs_seen)
		fb->max_segs_seen = n;
	for (unsigned i = 0; i < n; i++) {
		unsigned f = segs[i].first_sect, l = segs[i].last_sect;
		uint8_t *pg;

		if (f > l || l > 7 || sec + (l - f + 1) > DISK_SECTORS)
			return BLKIF_RSP_ERROR;
		pg = grant_page(segs[i].gref, op == BLKIF_OP_READ);
		if (!pg)
			return BLKIF_RSP_ERROR;
		if (op == BLKIF_OP_WRITE && (atomic_load(&G.gnt[segs[i].gref].flags) & GTF_readonly))
			fb->ro_seen++;
		if (op == BLKIF_OP_READ)
			memcpy(pg + f * 512, disk + sec * 512, (l - f + 1) * 512);
		else
			memcpy(disk + sec * 512, pg + f * 512, (l - f + 1) * 512);
		if (op == BLKIF_OP_READ && fb->mode == CORRUPT && sec <= 100 && 100 < sec + (l - f + 1))
			pg[(f + 100 - sec) * 512 + 40] ^= 0x55;
		sec += l - f + 1;
	}
	return BLKIF_RSP_OKAY;
}

static void *backend_main(void *arg)
{
	struct fakeback *fb = arg;
	struct vf_queue *q = fb->q;
	uint8_t *sring = q->ring.sring;
	uint32_t *req_prod = (uint32_t *)sring, *rsp_prod = (uint32_t *)(sring + 8);
	uint32_t cons = 0, size = q->ring.size;
	int fd = G.g2b[q->port];

	while (!atomic_load(&fb->stop)) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		uint64_t v;
		uint32_t prod;

		poll(&pfd, 1, 200);
		if (read(fd, &v, 8) < 0) {
			/* nothing pending */
		}
		prod = __atomic_load_n(req_prod, __ATOMIC_ACQUIRE);
		while (cons != prod) {
			struct blkif_req rq;
			uint8_t op;
			int16_t st;
			uint64_t id;

			blkif_copy_request(q->ring.abi, blkif_slot(q->ring.abi, sring, cons & (size - 1)), &rq);
			cons++;
			st = serve(fb, &rq, &op);
			fb->count++;
			if (fb->mode == SILENT)
				continue;
			id = rq.id;
			if (fb->mode == BAD_ID && fb->count == 5)
				id = 12345;
			if (fb->mode == BAD_OP && fb->count == 5)
				op = op == BLKIF_OP_READ ? BLKIF_OP_WRITE : BLKIF_OP_READ;
			uint32_t rp = *rsp_prod;
			blkif_put_response(q->ring.abi, blkif_slot(q->ring.abi, sring, rp & (size - 1)), id,
					   op, st);
			__atomic_store_n(rsp_prod, rp + 1, __ATOMIC_RELEASE);
		}
		/* RING_FINAL_CHECK_FOR_REQUESTS: ask for a kick on the next one. */
		__atomic_store_n((uint32_t *)(sring + 4), cons + 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(req_prod, __ATOMIC_SEQ_CST) != cons)
			continue;
		/* Always notify: simpler than rsp_event, and legal. */
		uint64_t one = 1;
		if (write(G.b2g[q->port], &one, 8) < 0) {
			/* counter full: the guest is notified anyway */
		}
	}
	return NULL;
}

/* ---- a device wired to fake backends ---- */

static struct vf_opts O;
static struct vf_dev D;
static struct fakeback FB[4];

static void dev_up(unsigned queues, unsigned order, enum blkif_abi abi, bool persistent,
		   unsigned indirect, enum misbehave mode)
{
	static struct vf_mem *mem;

	if (!mem)
		mem = vf_mem_new(&G);
	free(D.gens);
	memset(&D, 0, sizeof(D));
	D.mem = mem;
	D.opts = &O;
	D.devid = 51712;
	D.be_domid = 0;
	D.ring_order = order;
	D.nr_queues = queues;
	D.abi = abi;
	D.persistent = persistent;
	D.indirect = indirect;
	D.max_segs = indirect ? indirect : 11;
	D.flush = true;
	D.flush_op = BLKIF_OP_FLUSH_DISKCACHE;
	D.discard = true;
	D.discard_gran = 4096;
	D.sectors = DISK_SECTORS;
	D.sector_size = 512;
	for (int op = 0; op < VF_NR_OPS; op++)
		hist_init(&D.stats.lat[op]);
	D.region_start = 0;
	D.region_len = DISK_SECTORS * 512;
	if (O.verify)
		D.gens = calloc(DISK_SECTORS, sizeof(uint32_t));
	for (unsigned i = 0; i < queues; i++) {
		struct vf_queue *q = &D.queue[i];
		uint64_t slice = D.region_len / queues;

		q->dev = &D;
		q->index = i;
		q->slice_start = i * slice;
		q->slice_len = slice;
		if (vf_queue_ring_up(&D, q) || vf_queue_setup(q))
			bail_out("ring setup failed");
		FB[i] = (struct fakeback){ .q = q, .mode = mode };
		pthread_create(&FB[i].th, NULL, backend_main, &FB[i]);
	}
}

static void dev_down(void)
{
	for (unsigned i = 0; i < D.nr_queues; i++) {
		atomic_store(&FB[i].stop, true);
		pthread_join(FB[i].th, NULL);
		vf_queue_teardown(&D.queue[i]);
		vf_queue_ring_down(&D, &D.queue[i]);
	}
}

static void opts_default(void)
{
	memset(&O, 0, sizeof(O));
	O.bs = 4096;
	O.qd = 16;
	O.seed = 3;
	O.timeout_ns = 2000000000ull;
	O.read_pct = 50;
	O.persistent = true;
}

static unsigned leaked_grants(void)
{
	unsigned n = 0;

	for (unsigned i = 1; i < NGRANTS; i++)
		n += G.gused[i];
	return n;
}

int main(void)
{
	G.mem = aligned_alloc(4096, (size_t)NPAGES * 4096);
	memset(G.mem, 0, (size_t)NPAGES * 4096);
	pthread_mutex_init(&G.lock, NULL);
	log_init("352-front-queue", VLOG_ERR, false);
	plan(31);

	/* 1. Fill + verify, 2 queues, 64k I/Os split into direct requests. */
	opts_default();
	O.fill = O.verify = true;
	O.bs = 65536;
	dev_up(2, 0, BLKIF_ABI_X86_64, false, 0, GOOD);
	vf_dev_run(&D);
	ok(vf_dev_ok(&D), "fill+verify on 2 queues, 64k I/Os, direct requests");
	is_int(atomic_load(&D.stats.verified_sectors), DISK_SECTORS, "every sector verified once");
	is_int(D.stats.ios[VF_OP_WRITE], DISK_SECTORS * 512 / 65536, "fill wrote the region in 64k I/Os");
	is_int(D.stats.reqs, 2 * 2 * DISK_SECTORS * 512 / 65536 + 2,
	       "each 64k I/O split in two (44k + 20k), plus a closing flush per queue");
	ok(FB[0].max_segs_seen == 11 && FB[0].indirect_seen == 0, "direct only: 11 segments max");
	ok(FB[0].ro_seen > 0, "write data granted read-only without persistent grants");
	dev_down();
	is_int(leaked_grants(), 0, "every grant ended after close");

	/* 2. Random mixed I/O with indirect + persistent grants, x86_32. */
	opts_default();
	O.verify = true;
	O.rw = VF_RW_MIX;
	O.pattern = VF_RAND;
	O.bs = 131072;
	O.ios = 400;
	O.flush_every = 7;
	O.discard_every = 9;
	O.unaligned = true;
	dev_up(1, 2, BLKIF_ABI_X86_32, true, 32, GOOD);
	vf_dev_run(&D);
	ok(vf_dev_ok(&D), "random verify with indirect, persistent, unaligned, x86_32, order 2");
	ok(FB[0].indirect_seen > 0 && FB[0].max_segs_seen <= 32, "indirect requests of <= 32 segments");
	ok(D.stats.ios[VF_OP_FLUSH] > 0 && D.stats.ios[VF_OP_DISCARD] > 0, "flushes and discards sent");
	ok(FB[0].ro_seen == 0, "persistent grants are writable");
	ok(D.stats.mismatches == 0 && D.stats.verified_sectors > 0, "reads verified");
	is_int(D.stats.ios[VF_OP_READ] + D.stats.ios[VF_OP_WRITE] + D.stats.ios[VF_OP_FLUSH] +
	       D.stats.ios[VF_OP_DISCARD], 400 + 1 + DISK_SECTORS * 512 / 131072,
	       "400 I/Os, the closing flush, the read-back");
	ok(leaked_grants() > 0, "persistent grants stay while connected");
	dev_down();
	is_int(leaked_grants(), 0, "persistent grants ended at close");

	/* 3. Data survives between connections (reconnect) and is checked. */
	opts_default();
	O.verify = true;
	O.rw = VF_RW_READ;
	{
		uint32_t *keep = NULL;
		dev_up(1, 0, BLKIF_ABI_X86_64, false, 0, GOOD);
		/* Pretend an earlier connection wrote generation 7 everywhere. */
		for (uint64_t s = 0; s < DISK_SECTORS; s++) {
			vf_pattern_fill(disk + s * 512, s * 512, 512, 7, O.seed);
			D.gens[s] = 7;
		}
		keep = D.gens;
		(void)keep;
		vf_dev_run(&D);
		ok(vf_dev_ok(&D) && D.stats.verified_sectors == 2 * DISK_SECTORS,
		   "earlier data read and verified (workload + read-back)");
		dev_down();
	}

	/* 4. A corrupting backend is caught, with the offset. */
	opts_default();
	O.verify = true;
	O.rw = VF_RW_READ;
	dev_up(1, 0, BLKIF_ABI_X86_64, false, 0, CORRUPT);
	for (uint64_t s = 0; s < DISK_SECTORS; s++)
		D.gens[s] = 7;
	vf_dev_run(&D);
	ok(!vf_dev_ok(&D) && D.stats.mismatches == 2, "corrupted sector 100 found (twice)");
	dev_down();

	/* 5. Bad responses are reported and stop the queue, no crash. */
	opts_default();
	O.ios = 50;
	dev_up(1, 0, BLKIF_ABI_X86_64, false, 0, BAD_ID);
	vf_dev_run(&D);
	ok(!vf_dev_ok(&D) && D.stats.bad_responses == 1, "response with an unknown id reported");
	ok(strstr(D.queue[0].why, "unknown id") != NULL, "reason names the unknown id");
	dev_down();
	dev_up(1, 0, BLKIF_ABI_X86_64, false, 0, BAD_OP);
	vf_dev_run(&D);
	ok(!vf_dev_ok(&D) && D.stats.bad_responses == 1, "response with the wrong operation reported");
	ok(strstr(D.queue[0].why, "wrong operation") != NULL, "reason names the operation");
	dev_down();

	/* 6. A backend that stops answering is detected by the timeout. */
	opts_default();
	O.ios = 10;
	O.timeout_ns = 300000000ull;
	dev_up(1, 0, BLKIF_ABI_X86_64, false, 0, SILENT);
	vf_dev_run(&D);
	ok(!vf_dev_ok(&D) && strstr(D.queue[0].why, "stopped answering") != NULL,
	   "silent backend: reported, no hang");
	dev_down();

	/* 7. vf_stop (SIGINT) drains and returns early. */
	opts_default();
	O.duration_ns = 60000000000ull;
	dev_up(1, 0, BLKIF_ABI_X86_64, false, 0, GOOD);
	{
		uint64_t t0 = now_ns();
		pthread_t th;
		pthread_create(&th, NULL, vf_queue_main, &D.queue[0]);
		usleep(200000);
		atomic_store(&vf_stop, true);
		pthread_join(th, NULL);
		atomic_store(&vf_stop, false);
		ok(now_ns() - t0 < 10000000000ull && D.stats.ios[VF_OP_READ] > 0, "stop drains quickly");
		ok(vf_dev_ok(&D), "no errors after a stop");
	}
	dev_down();

	/* 8. Synchronous requests (evil mode's primitive). */
	opts_default();
	dev_up(1, 0, BLKIF_ABI_X86_64, false, 0, GOOD);
	{
		struct blkif_req rq = { .operation = 4, .nr_segments = 1 };
		ok(vf_queue_sync(&D.queue[0], &rq, 1000000000ull) == BLKIF_RSP_EOPNOTSUPP,
		   "sync: unknown op answered EOPNOTSUPP");
		struct blkif_req rd = { .operation = BLKIF_OP_READ, .nr_segments = 1 };
		rd.seg[0].gref = 0x7fff;
		rd.seg[0].last_sect = 7;
		ok(vf_queue_sync(&D.queue[0], &rd, 1000000000ull) == BLKIF_RSP_ERROR,
		   "sync: bad grant answered ERROR");
		ok(D.queue[0].nfree == D.queue[0].nshadow, "sync returns its shadow");
	}
	dev_down();

	/* 9. 4 queues, order 4, 256 indirect segments, 1M I/Os, verify.
	 * (Grants of requests a bad backend never answered stay granted,
	 * by design: the backend may still use those pages.) */
	unsigned before = leaked_grants();
	opts_default();
	O.fill = O.verify = true;
	O.bs = 1 << 20;
	O.qd = 2;
	dev_up(4, 4, BLKIF_ABI_X86_64, true, 256, GOOD);
	vf_dev_run(&D);
	ok(vf_dev_ok(&D), "4 queues, order 4, 1M I/Os in 256-segment indirect requests");
	is_int(FB[0].max_segs_seen, 256, "256 segments in one request");
	is_int(D.stats.verified_sectors, DISK_SECTORS, "whole disk verified");
	dev_down();
	is_int(leaked_grants(), before, "no grants left behind by a clean run");
	return done_testing();
}
