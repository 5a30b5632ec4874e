/* Small reads whose data is in the page cache are answered by the queue's
 * intake thread itself (io_read_cached, img_preadv_nowait); everything
 * else still goes to the I/O workers.  On the fake transport and image:
 * which path served each read, and that data and answers are right either
 * way, with grant copy and with persistent grants. */
#include "t/engine-fake.h"
#include "util/tap.h"

#define NSMALL 16 /* one-page reads */
#define NBIG 32   /* pages of one INDIRECT read: 128 KiB > ENGINE_INLINE_MAX */

static unsigned nowait(struct fk_guest *g)
{
	return atomic_load(&g->img->nowait_reads);
}

static unsigned reads(struct fk_guest *g)
{
	return atomic_load(&g->img->reads);
}

/* Can this file system tell "cached" at all (RWF_NOWAIT)? */
static bool nowait_supported(struct img *im)
{
	char b[512];
	struct iovec v = { b, sizeof(b) };

	return preadv2(im->fd, &v, 1, 0, RWF_NOWAIT) >= 0 || errno != EOPNOTSUPP;
}

/* Read the small requests back into cleared pages; true if all answered
 * OKAY with the data. */
static bool read_small(struct fk_guest *g, struct fk_seg *seg, struct blkif_req *rq)
{
	for (unsigned k = 0; k < NSMALL; k++) {
		memset(fk_page(g->f, seg[k].frame), 0, FK_PAGE);
		fk_req(&rq[k], BLKIF_OP_READ, g->next_id++, k * 8, &seg[k], 1);
	}
	return fk_run(&g->ring[0], rq, NSMALL, BLKIF_RSP_OKAY) && fk_check(g->f, seg, NSMALL, 0, 5);
}

static void run(bool persistent)
{
	struct fk_guest g;
	struct fk_seg seg[NSMALL], big[NBIG], ind[1];
	struct blkif_req rq[NSMALL];
	char name[160];
	const char *tag = persistent ? "persistent grants" : "grant copy";
	unsigned n0, r0;

	fk_guest_init(&g, 128, 8u << 20, BLKIF_ABI_X86_64, 0, 1, persistent);
	fk_segs(g.f, seg, NSMALL, false);
	fk_segs(g.f, big, NBIG, false);
	fk_segs(g.f, ind, 1, true);
	snprintf(name, sizeof(name), "%s: engine started", tag);
	if (!ok(fk_guest_start(&g), name)) {
		fk_guest_fini(&g);
		return;
	}

	/* written through the engine, so the data is in the page cache */
	for (unsigned k = 0; k < NSMALL; k++) {
		fk_fill(g.f, &seg[k], 1, k * 8, 5);
		fk_req(&rq[k], BLKIF_OP_WRITE, g.next_id++, k * 8, &seg[k], 1);
	}
	snprintf(name, sizeof(name), "%s: %u one-page writes", tag, NSMALL);
	ok(fk_run(&g.ring[0], rq, NSMALL, BLKIF_RSP_OKAY), name);

	n0 = nowait(&g);
	r0 = reads(&g);
	snprintf(name, sizeof(name), "%s: cached one-page reads return the data", tag);
	ok(read_small(&g, seg, rq), name);
	snprintf(name, sizeof(name), "%s: all %u served on the intake thread", tag, NSMALL);
	if (nowait_supported(g.img))
		is_int(nowait(&g) - n0, NSMALL, name);
	else
		skip(1, "this file system has no RWF_NOWAIT reads");
	is_int(reads(&g) - r0, NSMALL, "each read the image once");

	/* The image cannot say "cached" (the fake refuses while a delay is
	 * injected): the same reads go to the workers, which still run them
	 * concurrently. */
	atomic_store(&g.img->delay_us, 20000);
	atomic_store(&g.img->max_active, 0);
	n0 = nowait(&g);
	r0 = reads(&g);
	snprintf(name, sizeof(name), "%s: uncached reads return the data", tag);
	ok(read_small(&g, seg, rq), name);
	snprintf(name, sizeof(name), "%s: ... through the workers, concurrently", tag);
	ok(nowait(&g) == n0 && reads(&g) - r0 == NSMALL && atomic_load(&g.img->max_active) >= 2,
	   name);
	atomic_store(&g.img->delay_us, 0);

	/* Larger than ENGINE_INLINE_MAX: the workers, even when cached. */
	fk_fill(g.f, big, NBIG, 1024, 6);
	fk_ind_req(g.f, &rq[0], BLKIF_OP_WRITE, g.next_id++, 1024, big, NBIG, ind);
	snprintf(name, sizeof(name), "%s: 128 KiB indirect write", tag);
	ok(fk_run(&g.ring[0], rq, 1, BLKIF_RSP_OKAY), name);
	for (unsigned i = 0; i < NBIG; i++)
		memset(fk_page(g.f, big[i].frame), 0, FK_PAGE);
	n0 = nowait(&g);
	fk_ind_req(g.f, &rq[0], BLKIF_OP_READ, g.next_id++, 1024, big, NBIG, ind);
	snprintf(name, sizeof(name), "%s: 128 KiB read returns the data, not inline", tag);
	ok(fk_run(&g.ring[0], rq, 1, BLKIF_RSP_OKAY) && fk_check(g.f, big, NBIG, 1024, 6) &&
	   nowait(&g) == n0, name);

	/* An error on the image still fails the request (it never goes
	 * inline: the fake refuses nowait while failing). */
	atomic_store(&g.img->fail, -EIO);
	fk_req(&rq[0], BLKIF_OP_READ, g.next_id++, 0, &seg[0], 1);
	snprintf(name, sizeof(name), "%s: a failing image answers BLKIF_RSP_ERROR", tag);
	ok(fk_run(&g.ring[0], rq, 1, BLKIF_RSP_ERROR), name);
	atomic_store(&g.img->fail, 0);

	engine_stop(g.e);
	g.e = NULL;
	ok(atomic_load(&g.f->maps_live) == 0 && atomic_load(&g.f->binds_live) == 0,
	   "after stop: nothing mapped, nothing bound");
	fk_guest_fini(&g);
}

int main(void)
{
	run(false);
	run(true);
	return done_testing();
}
