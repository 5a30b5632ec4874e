/* The request engine with persistent grants on the fake transport, for
 * how io_hold_grants() takes a request's grants (blkback/io.c): misses
 * reserved under the cache lock and mapped after it, one by one.  A
 * 256-segment request of new grants (one batch, counted per ref), the
 * same grant twice in a request, one bad or read-only grant in a batch
 * (an ERROR response; the good grants stay cached), requests sharing
 * grants in flight together (answered, never a crash), and a clean stop. */
#include "t/engine-fake.h"
#include "util/tap.h"

static struct fk_guest g;

/* Put n requests, publish, collect n responses: how many were OKAY
 * (-1 if a response is missing or has another status than OKAY/ERROR). */
static int run_mixed(struct fk_ring *r, const struct blkif_req *rq, unsigned n)
{
	struct fk_rsp rsp[64];
	int okay = 0;

	for (unsigned i = 0; i < n; i++)
		fk_put(r, &rq[i]);
	fk_publish(r);
	if (fk_responses(r, rsp, n, n, 10000, false) != n)
		return -1;
	for (unsigned i = 0; i < n; i++) {
		if (rsp[i].status == BLKIF_RSP_OKAY)
			okay++;
		else if (rsp[i].status != BLKIF_RSP_ERROR)
			return -1;
	}
	return okay;
}

static void big_batch(struct fk_ring *r)
{
	static struct fk_seg seg[256];
	struct fk_seg ind[1];
	struct blkif_req rq;
	uint64_t ops, hits;

	fk_segs(g.f, seg, 256, false);
	fk_segs(g.f, ind, 1, true);
	fk_fill(g.f, seg, 256, 0, 3);
	fk_ind_req(g.f, &rq, BLKIF_OP_WRITE, 1, 0, seg, 256, ind);
	ops = ld64(&g.stats.grant_ops);
	hits = ld64(&g.stats.persistent_hits);
	ok(fk_run(r, &rq, 1, BLKIF_RSP_OKAY), "1 MiB WRITE of 256 new grants");
	is_int(ld64(&g.stats.grant_ops) - ops, 257,
	       "its misses count one grant op per ref (256 maps + 1 indirect page copy)");
	is_int(ld64(&g.stats.persistent_hits) - hits, 0, "no hits on new grants");
	ok(fk_file_check(g.img, 0, 2048, 3), "the image holds the guest's data");
	is_int(atomic_load(&g.f->maps_live), 256 + 1, "256 persistent grants (and the ring) mapped");

	memset(fk_page(g.f, seg[0].frame), 0, FK_PAGE);
	memset(fk_page(g.f, seg[255].frame), 0, FK_PAGE);
	fk_ind_req(g.f, &rq, BLKIF_OP_READ, 2, 0, seg, 256, ind);
	ops = ld64(&g.stats.grant_ops);
	ok(fk_run(r, &rq, 1, BLKIF_RSP_OKAY), "1 MiB READ through the same grants");
	is_int(ld64(&g.stats.grant_ops) - ops, 1, "all hits: only the indirect page is copied");
	is_int(ld64(&g.stats.persistent_hits) - hits, 256, "256 hits");
	ok(fk_check(g.f, seg, 256, 0, 3), "the guest pages hold the data read");
}

static void same_grant_twice(struct fk_ring *r)
{
	struct fk_seg seg[2], twice[3];
	struct blkif_req rq;
	char a[FK_PAGE], b[FK_PAGE];

	fk_segs(g.f, seg, 2, false);
	fk_fill(g.f, seg, 2, 4096, 5);
	twice[0] = seg[0];
	twice[1] = seg[1];
	twice[2] = seg[0];
	fk_req(&rq, BLKIF_OP_WRITE, 10, 4096, twice, 3);
	ok(fk_run(r, &rq, 1, BLKIF_RSP_OKAY), "a new grant twice in one WRITE");
	ok(fk_file_check(g.img, 4096, 16, 5), "first two segments written");
	ok(pread(g.img->fd, a, FK_PAGE, 4096 * 512) == FK_PAGE &&
	       pread(g.img->fd, b, FK_PAGE, (4096 + 16) * 512) == FK_PAGE &&
	       memcmp(a, b, FK_PAGE) == 0,
	   "the repeated grant's page written twice");

	struct fk_seg fresh[1];
	fk_segs(g.f, fresh, 1, false);
	twice[0] = fresh[0];
	twice[1] = fresh[0];
	fk_req(&rq, BLKIF_OP_READ, 11, 4096, twice, 2);
	ok(fk_run(r, &rq, 1, BLKIF_RSP_OKAY), "a new grant twice in one READ");
	/* both segments went to the one page, in order: it holds the second */
	ok(memcmp(fk_page(g.f, fresh[0].frame), fk_page(g.f, seg[1].frame), FK_PAGE) == 0,
	   "the page holds the later segment's data");
}

static void bad_grants(struct fk_ring *r)
{
	struct fk_seg seg[3], ro[1], mix[4];
	struct blkif_req rq;
	uint64_t hits;

	fk_segs(g.f, seg, 3, false);
	fk_segs(g.f, ro, 1, true);
	mix[0] = seg[0];
	mix[1] = seg[1];
	mix[1].gref = 5000; /* never granted */
	mix[2] = seg[2];
	fk_req(&rq, BLKIF_OP_READ, 20, 0, mix, 3);
	ok(fk_run(r, &rq, 1, BLKIF_RSP_ERROR), "rule 15: an unknown grant in a batch -> ERROR");
	mix[1] = ro[0];
	fk_req(&rq, BLKIF_OP_READ, 21, 0, mix, 3);
	ok(fk_run(r, &rq, 1, BLKIF_RSP_ERROR), "a read-only grant in a READ's batch -> ERROR");
	hits = ld64(&g.stats.persistent_hits);
	fk_req(&rq, BLKIF_OP_READ, 22, 0, (struct fk_seg[]){ seg[0], seg[2] }, 2);
	ok(fk_run(r, &rq, 1, BLKIF_RSP_OKAY), "the good grants of the failed batch then work");
	is_int(ld64(&g.stats.persistent_hits) - hits, 2, "they were kept as cached grants");
	ok(fk_check(g.f, (struct fk_seg[]){ seg[0], seg[2] }, 2, 0, 3), "and read the right data");
	fk_req(&rq, BLKIF_OP_WRITE, 23, 8000, ro, 1);
	ok(fk_run(r, &rq, 1, BLKIF_RSP_OKAY), "the read-only grant works for a WRITE");
}

/* Requests in flight together that share grants, new and cached: each
 * is answered OKAY or ERROR (rule 16: a grant in use, or being mapped,
 * by another request), nothing else; afterwards all grants work. */
static void sharing(struct fk_ring *r)
{
	static struct fk_seg pool[24];
	struct blkif_req rq[16];
	struct fk_seg s[8];
	int okay_total = 0;

	fk_segs(g.f, pool, 24, false);
	for (int round = 0; round < 20; round++) {
		for (unsigned i = 0; i < 16; i++) {
			for (unsigned k = 0; k < 8; k++)
				s[k] = pool[(i * 5 + k * 3 + (unsigned)round) % 24];
			fk_req(&rq[i], (i + (unsigned)round) & 1 ? BLKIF_OP_READ : BLKIF_OP_WRITE,
			       100 + i, i * 64, s, 8);
		}
		int okay = run_mixed(r, rq, 16);
		if (okay < 0) {
			okay_total = -1;
			break;
		}
		okay_total += okay;
	}
	ok(okay_total >= 0, "shared grants: every request answered OKAY or ERROR");
	diag("shared grants: %d of 320 requests OKAY", okay_total);
	ok(!engine_broken(g.e), "shared grants do not break the ring");
	fk_req(&rq[0], BLKIF_OP_READ, 200, 0, pool, 8);
	ok(fk_run(r, &rq[0], 1, BLKIF_RSP_OKAY), "afterwards the grants work alone");
}

int main(void)
{
	struct fk_ring *r = &g.ring[0];

	log_init("t258", VLOG_ERR, false);
	fk_guest_init(&g, 1024, 8u << 20, BLKIF_ABI_X86_64, 0, 1, true);
	if (!fk_guest_start(&g))
		bail_out("engine_start failed");
	big_batch(r);
	same_grant_twice(r);
	bad_grants(r);
	sharing(r);
	engine_stop(g.e);
	g.e = NULL;
	is_int(atomic_load(&g.f->maps_live), 0, "stop: every persistent grant unmapped");
	fk_guest_fini(&g);
	return done_testing();
}
