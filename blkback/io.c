/* io.c - run one validated blkif request against the image; see
 * engine_priv.h. */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/uio.h>

#include "engine_priv.h"
#include "formats/image.h"

#define SECTOR 512u
#define DISCARD_CHUNK (1ull << 30) /* bytes per img_discard call */

static struct req_verdict fail(const char *reason)
{
	return (struct req_verdict){ .status = BLKIF_RSP_ERROR, .reason = reason };
}

/* Run a grant copy and check every segment's own status (rule 15). */
static int copy_segments(struct eng_queue *q, struct hv_copy_seg *segs, unsigned n)
{
	struct engine *e = q->e;
	struct hv *hv = e->p.hv;
	int r;

	if (!n)
		return 0;
	r = hv->ops->grant_copy(hv, e->p.domid, segs, n);
	STAT_ADD(e, grant_ops, n);
	for (unsigned i = 0; i < n; i++)
		if (segs[i].status != 0)
			return -EIO;
	return r < 0 ? r : 0;
}

struct req_verdict io_fetch_indirect(struct eng_queue *q, struct blkreq *rq)
{
	unsigned n = rq->wire.nr_segments;
	unsigned pages = req_indirect_pages(n); /* rule 6: only the grefs in use */

	for (unsigned i = 0; i < pages; i++) {
		unsigned entries = n - i * (unsigned)BLKIF_SEGS_PER_INDIRECT_PAGE;

		if (entries > BLKIF_SEGS_PER_INDIRECT_PAGE)
			entries = BLKIF_SEGS_PER_INDIRECT_PAGE;
		rq->copy[i] = (struct hv_copy_seg){
			.gref = rq->wire.indirect_grefs[i],
			.offset = 0,
			.len = (uint16_t)(entries * sizeof(struct blkif_request_segment)),
			.local = rq->buf + (size_t)i * HV_PAGE_SIZE,
			.to_guest = false, /* rule 9: indirect pages are only read */
			.status = -1,      /* rule 15: failed until proven otherwise */
		};
	}
	rq->fetched = (size_t)pages * HV_PAGE_SIZE; /* for the bounce budget */
	if (copy_segments(q, rq->copy, pages) < 0)
		return fail("cannot read indirect pages");
	req_decode_indirect(rq->buf, n, rq->iseg);
	rq->seg = rq->iseg;
	rq->nseg = n;
	return (struct req_verdict){ BLKIF_RSP_OKAY, NULL };
}

/*
 * All of a request's grants (a 1 MiB request has 256 segments): looked up
 * under one lock of the cache, where a miss only reserves its entry; the
 * misses are then mapped with the cache unlocked, so workers releasing
 * grants and other requests never wait behind map calls (pgrant.h).  The
 * statistics are counted once.
 */
struct req_verdict io_hold_grants(struct eng_queue *q, struct blkreq *rq)
{
	struct engine *e = q->e;
	bool to_guest = req_data_op(&rq->wire) == BLKIF_OP_READ;
	struct pgrant_batch batch = PGRANT_BATCH_INIT;
	uint64_t maps = 0, hits = 0;
	unsigned batch_maps;
	const char *why = NULL;
	int r = 0;

	rq->held = 0;
	pgrant_begin(q->pg);
	for (unsigned i = 0; i < rq->nseg; i++) {
		struct seg_grant *g = &rq->grant[i];
		struct pgrant_use use;

		r = pgrant_get_locked(q->pg, rq->seg[i].gref, to_guest, rq, &batch, &g->pg,
				      &g->addr, &use);
		maps += use.maps;
		hits += use.hit;
		if (r == -ENOSPC) /* cache full of busy grants: copy this one */
			g->pg = NULL;
		else if (r < 0)
			break;
		rq->held = i + 1;
	}
	pgrant_end(q->pg);
	if (r < 0 && r != -ENOSPC) {
		why = r == -EBUSY ? "grant already in use by another request"
				  : "cannot map granted page";
	} else if (batch.n) {
		if (pgrant_map_reserved(q->pg, &batch, &batch_maps) < 0)
			why = "cannot map granted page";
		maps += batch_maps;
		/* Segments of a reserved entry, including repeats of its
		 * grant, learn their page now. */
		for (unsigned i = 0; i < rq->held && !why; i++)
			if (rq->grant[i].pg && !rq->grant[i].addr)
				rq->grant[i].addr = pgrant_addr(rq->grant[i].pg);
	}
	STAT_ADD(e, grant_ops, maps);
	STAT_ADD(e, persistent_hits, hits);
	if (why) {
		/* also frees the reserved entries left unmapped */
		io_release_grants(q, rq, now_ns());
		return fail(why);
	}
	return (struct req_verdict){ BLKIF_RSP_OKAY, NULL };
}

void io_release_grants(struct eng_queue *q, struct blkreq *rq, uint64_t now)
{
	pgrant_begin(q->pg);
	for (unsigned i = 0; i < rq->held; i++)
		if (rq->grant[i].pg)
			pgrant_put_locked(q->pg, rq->grant[i].pg, now);
	pgrant_end(q->pg);
	rq->held = 0;
}

/*
 * The iovecs of the request's data.  Without persistent grants that is the
 * bounce buffer, one run (the disk range is contiguous).  With them, a
 * segment held through a persistent grant is read or written in place in
 * the mapped guest page (no copy at all); the others sit in the bounce
 * buffer at their offset in the request.  Adjacent pieces merge into one
 * iovec.  If there would be more than IOV_MAX, everything goes through the
 * bounce buffer instead, as one iovec, and *in_place is false.  Returns
 * the number of iovecs in rq->iov.
 */
static int build_iov(struct blkreq *rq, bool *in_place)
{
	int n = 0;
	size_t off = 0;

	for (unsigned i = 0; i < rq->nseg; i++) {
		const struct blkif_request_segment *s = &rq->seg[i];
		size_t len = (size_t)(s->last_sect - s->first_sect + 1) * SECTOR;
		char *base = rq->grant[i].pg ? (char *)rq->grant[i].addr + s->first_sect * SECTOR
					     : rq->buf + off;

		off += len;
		if (n && (char *)rq->iov[n - 1].iov_base + rq->iov[n - 1].iov_len == base) {
			rq->iov[n - 1].iov_len += len;
			continue;
		}
		if (n == IOV_MAX) {
			rq->iov[0] = (struct iovec){ rq->buf, rq->sectors * SECTOR };
			*in_place = false;
			return 1;
		}
		rq->iov[n++] = (struct iovec){ base, len };
	}
	*in_place = true;
	return n;
}

/*
 * Move the request's data between guest pages and rq->buf (segment i at
 * its offset in the request).  Segments without a persistent grant go by
 * one grant copy for all of them; persistent ones by memcpy through the
 * mapping, unless in_place (the I/O used the mapping directly).
 */
static int move_data(struct eng_queue *q, struct blkreq *rq, bool to_guest, bool in_place)
{
	unsigned ncopy = 0;
	size_t off = 0;

	for (unsigned i = 0; i < rq->nseg; i++) {
		const struct blkif_request_segment *s = &rq->seg[i];
		size_t len = (size_t)(s->last_sect - s->first_sect + 1) * SECTOR;
		size_t goff = (size_t)s->first_sect * SECTOR;

		if (i < rq->held && rq->grant[i].pg) {
			char *page = rq->grant[i].addr;
			if (in_place)
				;
			else if (to_guest)
				memcpy(page + goff, rq->buf + off, len);
			else
				memcpy(rq->buf + off, page + goff, len);
		} else {
			rq->copy[ncopy++] = (struct hv_copy_seg){
				.gref = s->gref, .offset = (uint16_t)goff, .len = (uint16_t)len,
				.local = rq->buf + off, .to_guest = to_guest,
				.status = -1, /* rule 15 */
			};
		}
		off += len;
	}
	return copy_segments(q, rq->copy, ncopy);
}

static int16_t status_of(int err)
{
	if (err >= 0)
		return BLKIF_RSP_OKAY;
	return err == -EOPNOTSUPP ? BLKIF_RSP_EOPNOTSUPP : BLKIF_RSP_ERROR;
}

static void io_error(struct eng_queue *q, struct blkreq *rq, const char *what, int err)
{
	struct engine *e = q->e;

	log_limited(&e->rl, VLOG_WARN, "dom%u dev %u queue %u: %s at sector %llu failed: %s",
		    e->p.domid, e->p.devid, q->index, what,
		    (unsigned long long)rq->wire.sector_number, strerror(err < 0 ? -err : err));
}

/*
 * Grant-copy mode (no persistent grants): the data goes through the slot's
 * bounce buffer in pieces of at most COPY_CHUNK bytes, so the part of the
 * buffer in use stays in the CPU cache between the image I/O and the grant
 * copy, instead of streaming a whole 1 MiB request through memory twice.
 * Segments [i, *end) form the next piece; returns its bytes.
 */
#define COPY_CHUNK (128u * 1024)

static size_t next_chunk(const struct blkreq *rq, unsigned i, unsigned *end)
{
	size_t bytes = 0;

	for (*end = i; *end < rq->nseg; (*end)++) {
		const struct blkif_request_segment *s = &rq->seg[*end];
		size_t len = (size_t)(s->last_sect - s->first_sect + 1) * SECTOR;
		if (bytes && bytes + len > COPY_CHUNK)
			break;
		bytes += len;
	}
	return bytes;
}

/* The grant copies of segments [i, end), which sit from rq->buf on. */
static int copy_chunk(struct eng_queue *q, struct blkreq *rq, unsigned i, unsigned end,
		      bool to_guest)
{
	size_t off = 0;
	unsigned n = 0;

	for (; i < end; i++, n++) {
		const struct blkif_request_segment *s = &rq->seg[i];
		size_t len = (size_t)(s->last_sect - s->first_sect + 1) * SECTOR;
		rq->copy[n] = (struct hv_copy_seg){
			.gref = s->gref, .offset = (uint16_t)(s->first_sect * SECTOR),
			.len = (uint16_t)len, .local = rq->buf + off, .to_guest = to_guest,
			.status = -1, /* rule 15 */
		};
		off += len;
	}
	return copy_segments(q, rq->copy, n);
}

static int16_t rw_chunked(struct eng_queue *q, struct blkreq *rq, bool write)
{
	uint64_t off = rq->wire.sector_number * SECTOR;
	unsigned i = 0, end;

	while (i < rq->nseg) {
		size_t bytes = next_chunk(rq, i, &end);
		struct iovec iov = { rq->buf, bytes };
		int r;

		if (write && copy_chunk(q, rq, i, end, false) < 0) {
			io_error(q, rq, "grant copy from guest", -EFAULT);
			return BLKIF_RSP_ERROR;
		}
		r = write ? img_pwritev(q->e->p.img, &iov, 1, off)
			  : img_preadv(q->e->p.img, &iov, 1, off);
		if (r > 0 && (size_t)r != bytes)
			r = -EIO;
		if (r < 0) {
			io_error(q, rq, write ? "write" : "read", r);
			return status_of(r);
		}
		if (!write && copy_chunk(q, rq, i, end, true) < 0) {
			io_error(q, rq, "grant copy to guest", -EFAULT);
			return BLKIF_RSP_ERROR;
		}
		off += bytes;
		i = end;
	}
	return BLKIF_RSP_OKAY;
}

/*
 * What do_read()/do_write() will touch of rq->buf, for the bounce budget
 * (engine.h).  Grant-copy mode: one COPY_CHUNK piece at a time from the
 * start.  Persistent mode: segments without a persistent grant sit at
 * their offset in the request, so up to the end of the last such segment
 * (everything if build_iov() would give up).  Indirect pages were read into
 * the start of rq->buf by io_fetch_indirect().
 */
size_t io_bounce_bytes(const struct eng_queue *q, const struct blkreq *rq)
{
	size_t data = rq->sectors * SECTOR, bytes = 0, off = 0, ind = rq->fetched;

	(void)q;
	if (!rq->nseg) {
		bytes = 0; /* flush, barrier, discard: no data */
	} else if (!rq->held) {
		bytes = data < COPY_CHUNK ? data : COPY_CHUNK;
	} else if (rq->nseg > IOV_MAX) {
		bytes = data;
	} else {
		for (unsigned i = 0; i < rq->nseg; i++) {
			const struct blkif_request_segment *s = &rq->seg[i];
			off += (size_t)(s->last_sect - s->first_sect + 1) * SECTOR;
			if (!rq->grant[i].pg)
				bytes = off;
		}
	}
	bytes = (bytes + HV_PAGE_SIZE - 1) / HV_PAGE_SIZE * HV_PAGE_SIZE;
	return bytes > ind ? bytes : ind;
}

static int16_t do_read(struct eng_queue *q, struct blkreq *rq)
{
	size_t len = rq->sectors * SECTOR;
	bool in_place;
	int n, r;

	if (!rq->held)
		return rw_chunked(q, rq, false);
	n = build_iov(rq, &in_place);
	r = img_preadv(q->e->p.img, rq->iov, n, rq->wire.sector_number * SECTOR);
	if (r > 0 && (size_t)r != len)
		r = -EIO;
	if (r < 0) {
		io_error(q, rq, "read", r);
		return status_of(r);
	}
	if (move_data(q, rq, true, in_place) < 0) {
		io_error(q, rq, "grant copy to guest", -EFAULT);
		return BLKIF_RSP_ERROR;
	}
	return BLKIF_RSP_OKAY;
}

/*
 * A small READ whose data is all in the page cache, served on the intake
 * thread: no hand-off to a worker, no wake-up (io_uring does the same).
 * img_preadv_nowait() says -EAGAIN when anything would wait for the disk;
 * then nothing was answered and the request goes to the workers as usual.
 */
bool io_read_cached(struct eng_queue *q, struct blkreq *rq, int16_t *status)
{
	bool read = req_data_op(&rq->wire) == BLKIF_OP_READ; /* READ or INDIRECT READ */
	size_t len = rq->sectors * SECTOR;
	int n;

	if (!read || !rq->nseg || len > ENGINE_INLINE_MAX)
		return false;
	if (!rq->held) {
		/* grant-copy mode: len <= COPY_CHUNK, one piece */
		struct iovec iov = { rq->buf, len };

		if (img_preadv_nowait(q->e->p.img, &iov, 1, rq->wire.sector_number * SECTOR) < 0)
			return false;
		*status = BLKIF_RSP_OKAY;
		if (copy_chunk(q, rq, 0, rq->nseg, true) < 0) {
			io_error(q, rq, "grant copy to guest", -EFAULT);
			*status = BLKIF_RSP_ERROR;
		}
		return true;
	}
	bool in_place;
	n = build_iov(rq, &in_place);
	if (!in_place ||
	    img_preadv_nowait(q->e->p.img, rq->iov, n, rq->wire.sector_number * SECTOR) < 0)
		return false;
	*status = BLKIF_RSP_OKAY;
	if (move_data(q, rq, true, true) < 0) {
		io_error(q, rq, "grant copy to guest", -EFAULT);
		*status = BLKIF_RSP_ERROR;
	}
	return true;
}

static int16_t do_write(struct eng_queue *q, struct blkreq *rq)
{
	size_t len = rq->sectors * SECTOR;
	bool in_place;
	int n, r;

	if (!rq->held)
		return rw_chunked(q, rq, true);
	n = build_iov(rq, &in_place);
	if (move_data(q, rq, false, in_place) < 0) {
		io_error(q, rq, "grant copy from guest", -EFAULT);
		return BLKIF_RSP_ERROR;
	}
	r = img_pwritev(q->e->p.img, rq->iov, n, rq->wire.sector_number * SECTOR);
	if (r > 0 && (size_t)r != len)
		r = -EIO;
	if (r < 0)
		io_error(q, rq, "write", r);
	return status_of(r);
}

static int16_t do_flush(struct eng_queue *q, struct blkreq *rq)
{
	int r = img_flush(q->e->p.img);

	if (r < 0)
		io_error(q, rq, "flush", r);
	return status_of(r);
}

static int16_t do_discard(struct eng_queue *q, struct blkreq *rq)
{
	uint64_t off = rq->wire.sector_number * SECTOR, left = rq->wire.nr_sectors * SECTOR;
	uint64_t chunk = DISCARD_CHUNK, g = q->e->lim.discard_granularity;

	/* rule 14: large ranges go in chunks, each a multiple of the
	 * granularity so every piece after the first stays aligned. */
	if (g > SECTOR && chunk % g)
		chunk -= chunk % g;
	if (chunk < g)
		chunk = g;
	while (left) {
		uint64_t n = left < chunk ? left : chunk;
		int r = img_discard(q->e->p.img, off, n);
		if (r < 0) {
			io_error(q, rq, "discard", r);
			return status_of(r);
		}
		off += n;
		left -= n;
	}
	return BLKIF_RSP_OKAY;
}

int16_t io_execute(struct eng_queue *q, struct blkreq *rq)
{
	int16_t st;

	switch (rq->wire.operation) {
	case BLKIF_OP_READ:
		return do_read(q, rq);
	case BLKIF_OP_WRITE:
		return do_write(q, rq);
	case BLKIF_OP_INDIRECT:
		return rq->wire.indirect_op == BLKIF_OP_READ ? do_read(q, rq) : do_write(q, rq);
	case BLKIF_OP_DISCARD:
		return do_discard(q, rq);
	case BLKIF_OP_FLUSH_DISKCACHE:
	case BLKIF_OP_WRITE_BARRIER:
		/* Data first, then make it and everything before it durable. */
		st = rq->nseg ? do_write(q, rq) : BLKIF_RSP_OKAY;
		return st == BLKIF_RSP_OKAY ? do_flush(q, rq) : st;
	default: /* validation lets nothing else through */
		return BLKIF_RSP_EOPNOTSUPP;
	}
}
