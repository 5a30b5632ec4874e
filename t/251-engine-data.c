/* The request engine end to end on the fake transport: reads, writes,
 * flush, barrier, discard, direct and indirect requests, on both ABIs,
 * rings of order 0 and 4, 1 and 4 queues, persistent grants on and off;
 * data checked in guest memory and in the image file. */
#include "t/engine-fake.h"
#include "util/tap.h"

#define QBASE 2048u /* sectors of disk per queue */
#define NDIRECT 8
#define NIND 40

/* Everything one queue does; returns the number of failed checks. */
static void exercise_queue(struct fk_guest *g, unsigned qi, const char *tag)
{
	struct fake_hv *f = g->f;
	struct fk_ring *r = &g->ring[qi];
	struct fk_seg seg[NDIRECT * 11 + NIND], ind[1], part[2];
	struct blkif_req rq[NDIRECT + 1];
	uint64_t base = (uint64_t)qi * QBASE;
	unsigned salt = qi + 1;
	char name[160];

	fk_segs(f, seg, NDIRECT * 11 + NIND, false);
	fk_segs(f, ind, 1, true); /* indirect pages need only read access */

	/* WRITE: 8 direct requests of 11 pages, one indirect of 40 pages */
	for (unsigned k = 0; k < NDIRECT; k++) {
		fk_fill(f, &seg[k * 11], 11, base + k * 88, salt);
		fk_req(&rq[k], BLKIF_OP_WRITE, g->next_id++, base + k * 88, &seg[k * 11], 11);
	}
	fk_fill(f, &seg[NDIRECT * 11], NIND, base + NDIRECT * 88, salt);
	fk_ind_req(f, &rq[NDIRECT], BLKIF_OP_WRITE, g->next_id++, base + NDIRECT * 88,
		   &seg[NDIRECT * 11], NIND, ind);
	snprintf(name, sizeof(name), "%s q%u: direct + indirect writes answered OKAY", tag, qi);
	ok(fk_run(r, rq, NDIRECT + 1, BLKIF_RSP_OKAY), name);
	snprintf(name, sizeof(name), "%s q%u: image file holds the written data", tag, qi);
	ok(fk_file_check(g->img, base, NDIRECT * 88 + NIND * 8, salt), name);

	/* READ the same ranges back into cleared pages */
	for (unsigned i = 0; i < NDIRECT * 11 + NIND; i++)
		memset(fk_page(f, seg[i].frame), 0xee, FK_PAGE);
	for (unsigned k = 0; k <= NDIRECT; k++) {
		rq[k].id = g->next_id++;
		if (rq[k].operation == BLKIF_OP_INDIRECT)
			rq[k].indirect_op = BLKIF_OP_READ;
		else
			rq[k].operation = BLKIF_OP_READ;
	}
	snprintf(name, sizeof(name), "%s q%u: reads answered OKAY", tag, qi);
	ok(fk_run(r, rq, NDIRECT + 1, BLKIF_RSP_OKAY), name);
	snprintf(name, sizeof(name), "%s q%u: reads return the data", tag, qi);
	ok(fk_check(f, seg, NDIRECT * 11 + NIND, base, salt), name);

	/* partial segments: sectors 1-3 of one page, 0-4 of another */
	part[0] = seg[0];
	part[0].first = 1;
	part[0].last = 3;
	part[1] = seg[1];
	part[1].first = 0;
	part[1].last = 4;
	fk_fill(f, part, 2, base + 1500, salt + 7);
	fk_req(&rq[0], BLKIF_OP_WRITE, g->next_id++, base + 1500, part, 2);
	ok(fk_run(r, rq, 1, BLKIF_RSP_OKAY) && fk_file_check(g->img, base + 1500, 8, salt + 7),
	   "partial-page segments written at the right offsets");
	memset(fk_page(f, seg[0].frame), 0, FK_PAGE);
	memset(fk_page(f, seg[1].frame), 0, FK_PAGE);
	fk_req(&rq[0], BLKIF_OP_READ, g->next_id++, base + 1500, part, 2);
	ok(fk_run(r, rq, 1, BLKIF_RSP_OKAY) && fk_check(f, part, 2, base + 1500, salt + 7) &&
	   fk_page(f, seg[0].frame)[0] == 0 && fk_page(f, seg[0].frame)[4 * 512] == 0,
	   "partial-page segments read into the right offsets, nothing else touched");

	/* FLUSH (pure), BARRIER with data, DISCARD */
	unsigned flushes = atomic_load(&g->img->flushes);
	fk_req(&rq[0], BLKIF_OP_FLUSH_DISKCACHE, g->next_id++, 0, NULL, 0);
	snprintf(name, sizeof(name), "%s q%u: flush OKAY and reaches the image", tag, qi);
	ok(fk_run(r, rq, 1, BLKIF_RSP_OKAY) && atomic_load(&g->img->flushes) > flushes, name);
	fk_fill(f, &seg[2], 1, base + 1600, salt + 3);
	fk_req(&rq[0], BLKIF_OP_WRITE_BARRIER, g->next_id++, base + 1600, &seg[2], 1);
	snprintf(name, sizeof(name), "%s q%u: barrier with data written", tag, qi);
	ok(fk_run(r, rq, 1, BLKIF_RSP_OKAY) && fk_file_check(g->img, base + 1600, 8, salt + 3),
	   name);
	memset(&rq[0], 0, sizeof(rq[0]));
	rq[0].operation = BLKIF_OP_DISCARD;
	rq[0].id = g->next_id++;
	rq[0].sector_number = base;
	rq[0].nr_sectors = 64;
	char zero[64 * 512], back[64 * 512];
	memset(zero, 0, sizeof(zero));
	snprintf(name, sizeof(name), "%s q%u: discard OKAY, range reads as zeros", tag, qi);
	ok(fk_run(r, rq, 1, BLKIF_RSP_OKAY) &&
	   pread(g->img->fd, back, sizeof(back), (off_t)(base * 512)) == (ssize_t)sizeof(back) &&
	   memcmp(back, zero, sizeof(back)) == 0, name);
}

static void matrix(enum blkif_abi abi, unsigned order, unsigned nq, bool persistent)
{
	struct fk_guest g;
	char tag[64];

	snprintf(tag, sizeof(tag), "%s order %u, %u queue%s, persistent %s", blkif_abi_name(abi),
		 order, nq, nq > 1 ? "s" : "", persistent ? "on" : "off");
	fk_guest_init(&g, 4096, 8u << 20, abi, order, nq, persistent);
	if (!ok(fk_guest_start(&g), tag)) {
		fk_guest_fini(&g);
		return;
	}
	for (unsigned q = 0; q < nq; q++)
		exercise_queue(&g, q, tag);
	if (persistent)
		ok(ld64(&g.stats.persistent_hits) > 0, "persistent grants were reused");
	engine_stop(g.e);
	g.e = NULL;
	ok(atomic_load(&g.f->maps_live) == 0 && atomic_load(&g.f->binds_live) == 0,
	   "after stop: nothing mapped, nothing bound");
	fk_guest_fini(&g);
}

/* Statistics and trace for a known sequence. */
static void stats_and_trace(void)
{
	struct fk_guest g;
	struct fk_seg seg[2];
	struct blkif_req rq[3];
	struct trace_rec tr[8];
	uint64_t cur, missed;

	fk_guest_init(&g, 64, 1u << 20, BLKIF_ABI_X86_64, 0, 1, false);
	fk_segs(g.f, seg, 2, false);
	fk_guest_start(&g);
	cur = trace_cursor_now(g.trace);
	fk_req(&rq[0], BLKIF_OP_WRITE, 1, 8, seg, 2);
	fk_req(&rq[1], BLKIF_OP_READ, 2, 8, seg, 1);
	fk_req(&rq[2], BLKIF_OP_FLUSH_DISKCACHE, 3, 0, NULL, 0);
	ok(fk_run(&g.ring[0], rq, 1, 0) && fk_run(&g.ring[0], rq + 1, 1, 0) &&
	   fk_run(&g.ring[0], rq + 2, 1, 0), "write, read, flush");
	is_int(ld64(&g.stats.op[STAT_WRITE].ios), 1, "stats: one write");
	is_int(ld64(&g.stats.op[STAT_WRITE].sectors), 16, "stats: write sectors in 512-byte units");
	is_int(ld64(&g.stats.op[STAT_READ].sectors), 8, "stats: read sectors");
	is_int(ld64(&g.stats.op[STAT_FLUSH].ios), 1, "stats: one flush");
	is_int(ld64(&g.stats.batched_reqs), 3, "stats: three requests taken in batches");
	ok(ld64(&g.stats.grant_ops) >= 3, "stats: grant copies counted");
	size_t n = trace_read(g.trace, &cur, tr, 8, &missed, 1000);
	is_int(n, 3, "trace: one record per request");
	ok(n == 3 && tr[0].op == TRACE_WRITE && tr[0].sector == 8 && tr[0].nr_sectors == 16 &&
	   tr[0].domid == 7 && tr[0].status == 0 && tr[0].done_ns >= tr[0].start_ns,
	   "trace: write record fields");
	ok(n == 3 && tr[1].op == TRACE_READ && tr[2].op == TRACE_FLUSH, "trace: read and flush");

	char info[512];
	engine_format_info(g.e, info, sizeof(info), false);
	ok(strstr(info, "abi: x86_64-abi\n") && strstr(info, "queues: 1\n") &&
	   strstr(info, "max-indirect-segments: 256\n") && strstr(info, "ring-pages: 1\n"),
	   "info: key: value lines");
	engine_format_info(g.e, info, sizeof(info), true);
	ok(info[0] == '{' && strstr(info, "\"queues\":1"), "info: JSON");
	fk_guest_fini(&g);
}

/* More distinct grants than the persistent cache holds (1056): requests
 * mix mapped segments (I/O in place) with copied ones (cache full), and
 * the data must still land right. */
static void persistent_overflow(void)
{
	enum { PAGES = 1210, PER = 11, NREQ = PAGES / PER };
	struct fk_guest g;
	static struct fk_seg seg[PAGES];
	struct blkif_req rq[NREQ];
	bool good = true;

	fk_guest_init(&g, PAGES + 16, 8u << 20, BLKIF_ABI_X86_64, 2, 1, true);
	fk_segs(g.f, seg, PAGES, false);
	fk_guest_start(&g);
	for (unsigned k = 0; k < NREQ; k++) {
		fk_fill(g.f, &seg[k * PER], PER, (uint64_t)k * PER * 8, 9);
		fk_req(&rq[k], BLKIF_OP_WRITE, 100 + k, (uint64_t)k * PER * 8, &seg[k * PER], PER);
	}
	for (unsigned k = 0; k < NREQ; k += 64)
		good = good && fk_run(&g.ring[0], &rq[k], k + 64 <= NREQ ? 64 : NREQ - k, 0);
	ok(good, "1210 distinct grants written (cache of 1056)");
	ok(fk_file_check(g.img, 0, PAGES * 8, 9), "image holds every page");
	for (unsigned i = 0; i < PAGES; i++)
		memset(fk_page(g.f, seg[i].frame), 0, FK_PAGE);
	good = true;
	for (unsigned k = 0; k < NREQ; k++)
		rq[k].operation = BLKIF_OP_READ;
	for (unsigned k = 0; k < NREQ; k += 64)
		good = good && fk_run(&g.ring[0], &rq[k], k + 64 <= NREQ ? 64 : NREQ - k, 0);
	ok(good && fk_check(g.f, seg, PAGES, 0, 9), "and read back intact");
	ok(ld64(&g.stats.persistent_hits) > 0 && ld64(&g.stats.grant_ops) > PAGES,
	   "some segments hit the cache, the overflow was copied");
	engine_stop(g.e);
	g.e = NULL;
	ok(atomic_load(&g.f->maps_live) == 0, "every persistent grant unmapped at stop");
	fk_guest_fini(&g);
}

int main(void)
{
	log_init("t251", VLOG_ERR, false);
	for (int abi = 0; abi < 2; abi++)
		for (unsigned order = 0; order <= 4; order += 4)
			for (unsigned nq = 1; nq <= 4; nq += 3)
				for (int pers = 0; pers < 2; pers++)
					matrix(abi ? BLKIF_ABI_X86_32 : BLKIF_ABI_X86_64, order, nq,
					       pers);
	stats_and_trace();
	persistent_overflow();
	return done_testing();
}
