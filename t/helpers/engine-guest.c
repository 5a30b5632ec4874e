/*
 * engine-guest - a minimal simulated guest for the request engine tests
 * (t/253): registers as a domain with the simulator, sets up blkif rings
 * itself (no XenBus), and drives reads, writes, flushes, barriers, discards
 * and indirect requests, checking the data it reads back.
 *
 *   engine-guest DIR DOMID ABI ORDER QUEUES MODE
 *     ABI 64 or 32; MODE "io" (the workload) or "inflight" (submit slow
 *     work and wait to be killed)
 *
 * Prints one line per queue, "q INDEX PORT REF0 REF1 ...", then "ready";
 * waits for "go" on stdin; prints "result ok" or "result fail: why"; then
 * stays registered until stdin closes (so the backend can stop first).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blkback/abi.h"
#include "blkback/sim/guest.h"
#include "util/log.h"

#define PAGE 4096u
#define QBASE 2048u /* sectors of disk per queue */
#define NDIRECT 8
#define NIND 40
#define NSEG (NDIRECT * 11 + NIND)

static struct sim_guest *g;
static enum blkif_abi abi;
static uint32_t next_frame;

struct seg {
	uint32_t frame, gref;
	uint8_t first, last;
};

struct ring {
	unsigned size, port;
	char *sring;
	uint32_t req_prod_pvt, rsp_cons;
	uint64_t next_id;
};

static volatile uint32_t *hdr(struct ring *r)
{
	return (volatile uint32_t *)r->sring;
}

static void die(const char *why)
{
	printf("result fail: %s\n", why);
	fflush(stdout);
	exit(1);
}

static uint32_t frame_alloc(unsigned n)
{
	uint32_t f = next_frame;

	if (next_frame + n > sim_guest_nr_pages(g))
		die("out of guest memory");
	next_frame += n;
	return f;
}

static uint32_t grant(uint32_t frame, bool ro)
{
	int r = sim_guest_grant(g, 0, frame, ro);

	if (r < 0)
		die("grant failed");
	return (uint32_t)r;
}

static char *page(uint32_t frame)
{
	return sim_guest_page(g, frame);
}

static uint8_t pattern(uint64_t o, unsigned salt)
{
	return (uint8_t)(o * 7 + (o >> 9) * 13 + salt);
}

static void fill(const struct seg *s, unsigned n, uint64_t sector, unsigned salt)
{
	uint64_t o = sector * 512;

	for (unsigned i = 0; i < n; i++) {
		char *p = page(s[i].frame) + s[i].first * 512;
		size_t len = (size_t)(s[i].last - s[i].first + 1) * 512;
		for (size_t b = 0; b < len; b++)
			p[b] = (char)pattern(o + b, salt);
		o += len;
	}
}

/* salt < 0: expect zeros */
static bool check(const struct seg *s, unsigned n, uint64_t sector, int salt)
{
	uint64_t o = sector * 512;

	for (unsigned i = 0; i < n; i++) {
		const char *p = page(s[i].frame) + s[i].first * 512;
		size_t len = (size_t)(s[i].last - s[i].first + 1) * 512;
		for (size_t b = 0; b < len; b++)
			if (p[b] != (salt < 0 ? 0 : (char)pattern(o + b, (unsigned)salt)))
				return false;
		o += len;
	}
	return true;
}

static void put(struct ring *r, const struct blkif_req *rq)
{
	blkif_put_request(abi, blkif_slot(abi, r->sring, r->req_prod_pvt & (r->size - 1)), rq);
	r->req_prod_pvt++;
}

static void publish(struct ring *r)
{
	uint32_t old = hdr(r)[0], new = r->req_prod_pvt;

	__atomic_thread_fence(__ATOMIC_RELEASE);
	hdr(r)[0] = new;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if ((uint32_t)(new - hdr(r)[1]) < (uint32_t)(new - old))
		sim_guest_evtchn_notify(g, r->port);
}

/* Wait for n responses; all must be OKAY with the right op. */
static void collect(struct ring *r, unsigned n, const char *what)
{
	uint64_t deadline = now_ns() + 20000000000ull;
	unsigned got = 0;

	while (got < n) {
		uint32_t rp = hdr(r)[2];
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		while (r->rsp_cons != rp) {
			uint64_t id;
			uint8_t op;
			int16_t st;
			blkif_get_response(abi, blkif_slot(abi, r->sring, r->rsp_cons & (r->size - 1)),
					   &id, &op, &st);
			r->rsp_cons++;
			got++;
			if (st != 0) {
				char m[128];
				snprintf(m, sizeof(m), "%s: id %llu op %u status %d", what,
					 (unsigned long long)id, op, st);
				die(m);
			}
		}
		if (got >= n)
			break;
		hdr(r)[3] = r->rsp_cons + 1;
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (hdr(r)[2] != r->rsp_cons)
			continue;
		if (now_ns() > deadline)
			die("timeout waiting for responses");
		struct pollfd p = { .fd = sim_guest_evtchn_fd(g, r->port), .events = POLLIN };
		if (poll(&p, 1, 10) > 0)
			sim_guest_evtchn_ack(g, r->port);
	}
}

static void req(struct blkif_req *rq, struct ring *r, uint8_t op, uint64_t sector,
		const struct seg *s, unsigned n)
{
	memset(rq, 0, sizeof(*rq));
	rq->operation = op;
	rq->id = r->next_id++;
	rq->sector_number = sector;
	rq->nr_segments = (uint16_t)n;
	for (unsigned i = 0; i < n; i++) {
		rq->seg[i].gref = s[i].gref;
		rq->seg[i].first_sect = s[i].first;
		rq->seg[i].last_sect = s[i].last;
	}
}

static void ind_req(struct blkif_req *rq, struct ring *r, uint8_t op, uint64_t sector,
		    const struct seg *s, unsigned n, const struct seg *ind)
{
	unsigned char *e = (unsigned char *)page(ind->frame);

	memset(rq, 0, sizeof(*rq));
	rq->operation = BLKIF_OP_INDIRECT;
	rq->indirect_op = op;
	rq->id = r->next_id++;
	rq->sector_number = sector;
	rq->nr_segments = (uint16_t)n;
	rq->indirect_grefs[0] = ind->gref;
	for (unsigned i = 0; i < n; i++, e += 8) {
		memset(e, 0, 8);
		memcpy(e, &s[i].gref, 4); /* x86: little endian */
		e[4] = s[i].first;
		e[5] = s[i].last;
	}
}

static void workload(struct ring *r, unsigned qi)
{
	static struct seg seg[NSEG], ind;
	struct blkif_req rq;
	uint64_t base = (uint64_t)qi * QBASE;
	unsigned salt = qi + 1;
	uint32_t f = frame_alloc(NSEG + 1);

	for (unsigned i = 0; i < NSEG; i++)
		seg[i] = (struct seg){ f + i, grant(f + i, false), 0, 7 };
	ind = (struct seg){ f + NSEG, grant(f + NSEG, true), 0, 7 };

	for (unsigned k = 0; k < NDIRECT; k++) {
		fill(&seg[k * 11], 11, base + k * 88, salt);
		req(&rq, r, BLKIF_OP_WRITE, base + k * 88, &seg[k * 11], 11);
		put(r, &rq);
	}
	fill(&seg[NDIRECT * 11], NIND, base + NDIRECT * 88, salt);
	ind_req(&rq, r, BLKIF_OP_WRITE, base + NDIRECT * 88, &seg[NDIRECT * 11], NIND, &ind);
	put(r, &rq);
	publish(r);
	collect(r, NDIRECT + 1, "writes");

	for (unsigned i = 0; i < NSEG; i++)
		memset(page(seg[i].frame), 0xee, PAGE);
	for (unsigned k = 0; k < NDIRECT; k++) {
		req(&rq, r, BLKIF_OP_READ, base + k * 88, &seg[k * 11], 11);
		put(r, &rq);
	}
	ind_req(&rq, r, BLKIF_OP_READ, base + NDIRECT * 88, &seg[NDIRECT * 11], NIND, &ind);
	put(r, &rq);
	publish(r);
	collect(r, NDIRECT + 1, "reads");
	if (!check(seg, NSEG, base, (int)salt))
		die("read data differs from what was written");

	req(&rq, r, BLKIF_OP_FLUSH_DISKCACHE, 0, NULL, 0);
	put(r, &rq);
	fill(&seg[0], 1, base + 1600, salt + 3);
	req(&rq, r, BLKIF_OP_WRITE_BARRIER, base + 1600, &seg[0], 1);
	put(r, &rq);
	memset(&rq, 0, sizeof(rq));
	rq.operation = BLKIF_OP_DISCARD;
	rq.id = r->next_id++;
	rq.sector_number = base;
	rq.nr_sectors = 64;
	put(r, &rq);
	publish(r);
	collect(r, 3, "flush, barrier, discard");
	req(&rq, r, BLKIF_OP_READ, base, &seg[0], 8);
	put(r, &rq);
	publish(r);
	collect(r, 1, "read after discard");
	if (!check(seg, 8, base, -1))
		die("discarded range does not read as zeros");
}

/* Slow work for the kill test: 32 big reads, not waited for. */
static void inflight(struct ring *r)
{
	static struct seg seg[11];
	struct blkif_req rq;
	uint32_t f = frame_alloc(11);

	for (unsigned i = 0; i < 11; i++)
		seg[i] = (struct seg){ f + i, grant(f + i, false), 0, 7 };
	for (unsigned k = 0; k < r->size; k++) {
		req(&rq, r, BLKIF_OP_READ, (k % 16) * 88, seg, 11);
		put(r, &rq);
	}
	publish(r);
}

int main(int argc, char **argv)
{
	static struct ring ring[16];
	char err[256], line[64];
	unsigned order, nq;

	if (argc != 7) {
		fprintf(stderr, "usage: engine-guest DIR DOMID ABI ORDER QUEUES MODE\n");
		return 2;
	}
	log_init("engine-guest", VLOG_WARN, false);
	abi = atoi(argv[3]) == 32 ? BLKIF_ABI_X86_32 : BLKIF_ABI_X86_64;
	order = (unsigned)atoi(argv[4]);
	nq = (unsigned)atoi(argv[5]);
	if (order > 4 || nq < 1 || nq > 16)
		return 2;
	g = sim_guest_connect(argv[1], (uint16_t)atoi(argv[2]), "engine-guest", 1024, 2048, err,
			      sizeof(err));
	if (!g) {
		fprintf(stderr, "engine-guest: %s\n", err);
		return 1;
	}
	next_frame = 0;
	for (unsigned q = 0; q < nq; q++) {
		struct ring *r = &ring[q];
		unsigned pages = 1u << order;
		uint32_t f = frame_alloc(pages);
		int port = sim_guest_evtchn_alloc(g, 0);

		if (port < 0)
			die("no event channel");
		r->port = (unsigned)port;
		r->sring = page(f);
		memset(r->sring, 0, (size_t)pages * PAGE);
		hdr(r)[1] = hdr(r)[3] = 1; /* SHARED_RING_INIT */
		r->size = blkif_ring_slots(abi, (size_t)pages * PAGE);
		r->next_id = 1000 * (q + 1);
		printf("q %u %u", q, r->port);
		for (unsigned i = 0; i < pages; i++)
			printf(" %u", grant(f + i, false));
		printf("\n");
	}
	printf("ready\n");
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin) || strncmp(line, "go", 2) != 0)
		return 1;
	if (strcmp(argv[6], "inflight") == 0) {
		for (unsigned q = 0; q < nq; q++)
			inflight(&ring[q]);
		printf("submitted\n");
	} else {
		for (unsigned q = 0; q < nq; q++)
			workload(&ring[q], q);
		printf("result ok\n");
	}
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin))
		;
	sim_guest_disconnect(g);
	return 0;
}
