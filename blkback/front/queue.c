/*
 * queue.c - one blkif ring driven like a blk-mq hardware queue of Linux
 * blkfront: I/Os from the workload generator are split into requests of at
 * most max_segs segments, their data pages granted to the backend (read-only
 * for writes, or persistently), pushed with RING_PUSH_REQUESTS_AND_CHECK_NOTIFY
 * and completed from validated responses.  One thread per queue; each queue
 * owns a disjoint slice of the region, so --verify needs no locking.
 */
#include "dev.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blkback/sim/guest.h"
#include "util/log.h"

atomic_bool vf_stop;

struct vf_io {
	struct vf_io_desc d;
	unsigned pgoff;           /* data starts this many sectors into its first page */
	unsigned parts_left;
	bool failed, busy;
	uint32_t gen;
	uint64_t start_ns;
};

/* A thread's state while it runs phases on a queue. */
struct qrun {
	struct vf_queue *q;
	struct vf_dev *d;
	struct vf_io *ios;
	unsigned nios, inflight;
	uint64_t rng;             /* for --unaligned */
	uint32_t fill_gen;        /* VF_FILL_GEN in the fill phase, else 0 */
	bool pushed;              /* requests queued since the last push */
};

/* ---- shadows ---- */

static unsigned shadows_wanted(const struct vf_queue *q)
{
	const struct vf_dev *d = q->dev;
	const struct vf_opts *o = d->opts;
	uint64_t bs = o->bs ? o->bs : 4096;
	unsigned k = vf_split_count(bs / VF_SECTOR, d->max_segs, o->unaligned ? 7 : 0);
	uint64_t n = (uint64_t)(o->qd ? o->qd : 1) * k + 2;

	if (n < 8)
		n = 8;
	return n < q->ring.size ? (unsigned)n : q->ring.size;
}

int vf_queue_setup(struct vf_queue *q)
{
	struct vf_dev *d = q->dev;

	q->nshadow = shadows_wanted(q);
	q->nind_pages = d->indirect ? vf_indirect_pages(d->max_segs) : 0;
	q->shadow = calloc(q->nshadow, sizeof(*q->shadow));
	q->states = calloc(q->nshadow, sizeof(*q->states));
	if (!q->shadow || !q->states)
		return -ENOMEM;
	for (unsigned i = 0; i < q->nshadow; i++) {
		struct vf_shadow *s = &q->shadow[i];

		s->grefs = calloc(d->max_segs, sizeof(*s->grefs));
		if (!s->grefs || vf_mem_alloc(d->mem, d->max_segs, &s->data_frame))
			return -ENOMEM;
		if (q->nind_pages && vf_mem_alloc(d->mem, q->nind_pages, &s->ind_frame))
			return -ENOMEM;
		s->next_free = i + 1;
	}
	q->free_head = 0;
	q->nfree = q->nshadow;
	return 0;
}

void vf_queue_teardown(struct vf_queue *q)
{
	struct vf_dev *d = q->dev;

	if (!q->shadow)
		goto out;
	for (unsigned i = 0; i < q->nshadow; i++) {
		struct vf_shadow *s = &q->shadow[i];

		/* Requests still pending when the backend stopped: their
		 * pages may still be in its hands; leak rather than reuse. */
		if (q->states && q->states[i].pending) {
			free(s->grefs);
			continue;
		}
		for (unsigned j = 0; s->grefs && j < d->max_segs; j++)
			if (s->grefs[j])
				vf_end_or_leak(d, s->grefs[j], "data");
		for (unsigned j = 0; j < BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST; j++)
			if (s->ind_grefs[j])
				vf_end_or_leak(d, s->ind_grefs[j], "indirect");
		if (s->data_frame)
			vf_mem_release(d->mem, s->data_frame, d->max_segs);
		if (s->ind_frame)
			vf_mem_release(d->mem, s->ind_frame, q->nind_pages);
		free(s->grefs);
	}
	free(q->shadow);
out:
	free(q->states);
	q->shadow = NULL;
	q->states = NULL;
	q->nshadow = q->nfree = 0;
}

static struct vf_shadow *shadow_get(struct vf_queue *q, unsigned *id)
{
	struct vf_shadow *s;

	if (!q->nfree)
		return NULL;
	*id = q->free_head;
	s = &q->shadow[*id];
	q->free_head = s->next_free;
	q->nfree--;
	return s;
}

static void shadow_put(struct vf_queue *q, unsigned id)
{
	q->states[id].pending = false;
	q->shadow[id].io = NULL;
	q->shadow[id].next_free = q->free_head;
	q->free_head = id;
	q->nfree++;
}

void vf_queue_kick(struct vf_queue *q)
{
	if (sim_guest_evtchn_notify(vf_mem_guest(q->dev->mem), (uint32_t)q->port) == 0)
		atomic_fetch_add(&q->dev->stats.notify_out, 1);
}

static void queue_break(struct vf_queue *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void queue_break(struct vf_queue *q, const char *fmt, ...)
{
	va_list ap;

	if (q->broken)
		return;
	q->broken = true;
	va_start(ap, fmt);
	vsnprintf(q->why, sizeof(q->why), fmt, ap);
	va_end(ap);
}

/* ---- granting a request's pages ---- */

static int grant_pages(struct vf_queue *q, struct vf_shadow *s, bool readonly)
{
	struct vf_dev *d = q->dev;

	for (unsigned i = 0; i < s->nr_pages; i++) {
		int r;

		if (d->persistent && s->grefs[i])
			continue;
		/* Persistent grants are reused for reads and writes: writable,
		 * as Linux grants them.  Otherwise writes get read-only ones. */
		r = vf_grant(d->mem, d->be_domid, s->data_frame + i, d->persistent ? false : readonly);
		if (r < 0)
			return r;
		s->grefs[i] = (grant_ref_t)r;
	}
	for (unsigned i = 0; i < s->nr_ind; i++) {
		int r;

		if (d->persistent && s->ind_grefs[i])
			continue;
		r = vf_grant(d->mem, d->be_domid, s->ind_frame + i, true);
		if (r < 0)
			return r;
		s->ind_grefs[i] = (grant_ref_t)r;
	}
	return 0;
}

/* After the response: end per-request grants.  A grant the backend still
 * holds cannot be ended; count it and never reuse it (Linux, XSA-396). */
static void ungrant_pages(struct vf_queue *q, struct vf_shadow *s)
{
	struct vf_dev *d = q->dev;

	if (d->persistent)
		return;
	for (unsigned i = 0; i < s->nr_pages; i++) {
		if (s->grefs[i] && vf_end_grant(d->mem, s->grefs[i]) < 0)
			atomic_fetch_add(&d->stats.grant_leaks, 1);
		s->grefs[i] = 0;
	}
	for (unsigned i = 0; i < s->nr_ind; i++) {
		if (s->ind_grefs[i] && vf_end_grant(d->mem, s->ind_grefs[i]) < 0)
			atomic_fetch_add(&d->stats.grant_leaks, 1);
		s->ind_grefs[i] = 0;
	}
}

static uint8_t *shadow_data(struct vf_queue *q, struct vf_shadow *s)
{
	return (uint8_t *)vf_mem_page(q->dev->mem, s->data_frame) + s->pgoff * VF_SECTOR;
}

/* ---- building and sending requests ---- */

/* Fill req for a data part held by shadow s (pages granted already). */
static void build_rw(struct vf_queue *q, struct vf_shadow *s, uint8_t op, struct blkif_req *req)
{
	struct vf_dev *d = q->dev;
	struct blkif_request_segment segs[BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST * 512];
	unsigned n = vf_build_segments(segs, s->pgoff, s->nsect, s->grefs);

	req->sector_number = s->off / VF_SECTOR;
	req->handle = (uint16_t)d->devid;
	if (n <= BLKIF_MAX_SEGMENTS_PER_REQUEST) {
		req->operation = op;
		req->nr_segments = (uint16_t)n;
		memcpy(req->seg, segs, n * sizeof(segs[0]));
		return;
	}
	req->operation = BLKIF_OP_INDIRECT;
	req->indirect_op = op;
	req->nr_segments = (uint16_t)n;
	for (unsigned i = 0; i < s->nr_ind; i++) {
		unsigned first = i * (unsigned)BLKIF_SEGS_PER_INDIRECT_PAGE;
		unsigned cnt = n - first < BLKIF_SEGS_PER_INDIRECT_PAGE ? n - first
									 : (unsigned)BLKIF_SEGS_PER_INDIRECT_PAGE;

		vf_put_indirect(vf_mem_page(d->mem, s->ind_frame + i), segs + first, cnt);
		req->indirect_grefs[i] = s->ind_grefs[i];
	}
}

/* Put one request on the ring for part of io; shadow id already taken. */
static int send_part(struct qrun *qr, struct vf_io *io, unsigned id, uint64_t off, unsigned nsect,
		     unsigned pgoff)
{
	struct vf_queue *q = qr->q;
	struct vf_dev *d = qr->d;
	struct vf_shadow *s = &q->shadow[id];
	struct blkif_req req = { 0 };
	int r;

	s->io = io;
	s->op = (uint8_t)io->d.op;
	s->off = off;
	s->nsect = nsect;
	s->pgoff = pgoff;
	s->nr_pages = s->nr_ind = 0;
	req.id = id;
	switch (io->d.op) {
	case VF_OP_FLUSH:
		req.operation = d->flush_op;
		break;
	case VF_OP_DISCARD:
		req.operation = BLKIF_OP_DISCARD;
		req.handle = (uint16_t)d->devid;
		req.sector_number = off / VF_SECTOR;
		req.nr_sectors = nsect;
		break;
	default: {
		uint8_t op = io->d.op == VF_OP_WRITE ? BLKIF_OP_WRITE : BLKIF_OP_READ;
		unsigned nseg = (pgoff + nsect + VF_SECTORS_PER_PAGE - 1) / VF_SECTORS_PER_PAGE;

		s->nr_pages = nseg;
		s->nr_ind = nseg > BLKIF_MAX_SEGMENTS_PER_REQUEST ? vf_indirect_pages(nseg) : 0;
		if (io->d.op == VF_OP_WRITE && d->opts->verify)
			vf_pattern_fill(shadow_data(q, s), off, (size_t)nsect * VF_SECTOR, io->gen,
					d->opts->seed);
		r = grant_pages(q, s, io->d.op == VF_OP_WRITE);
		if (r < 0) {
			ungrant_pages(q, s);
			return r;
		}
		build_rw(q, s, op, &req);
		break;
	}
	}
	q->states[id].pending = true;
	q->states[id].operation = req.operation == BLKIF_OP_INDIRECT ? req.indirect_op : req.operation;
	vf_ring_put(&q->ring, &req);
	atomic_fetch_add(&d->stats.reqs, 1);
	qr->pushed = true;
	return 0;
}

/* Requests io needs: data I/Os may be split; others take one. */
static unsigned parts_of(const struct qrun *qr, const struct vf_io *io)
{
	if (io->d.op != VF_OP_READ && io->d.op != VF_OP_WRITE)
		return 1;
	return vf_split_count(io->d.len / VF_SECTOR, qr->d->max_segs, io->pgoff);
}

/* Submit io whole, or -EAGAIN if the ring or the shadows are short. */
static int submit_io(struct qrun *qr, struct vf_io *io)
{
	struct vf_queue *q = qr->q;
	struct vf_dev *d = qr->d;
	unsigned k = parts_of(qr, io);
	uint64_t off = io->d.off, left = io->d.len / VF_SECTOR;
	unsigned pgoff = io->pgoff;

	if (k > q->nshadow) {
		queue_break(q, "an I/O of %llu bytes needs %u requests, more than %u slots",
			    (unsigned long long)io->d.len, k, q->nshadow);
		return -E2BIG;
	}
	if (q->nfree < k || vf_ring_free(&q->ring) < k)
		return -EAGAIN;
	io->parts_left = k;
	io->failed = false;
	io->busy = true;
	io->start_ns = now_ns();
	if (io->d.op == VF_OP_WRITE && d->opts->verify) {
		/* --fill writes one well-known generation, so that a later
		 * process can check the disk with --filled. */
		io->gen = qr->fill_gen;
		while (!qr->fill_gen && io->gen <= VF_FILL_GEN) /* 0 = unknown; wraps skip 0, 1 */
			io->gen = atomic_fetch_add(&d->next_gen, 1) + 1;
	}
	if (io->d.op == VF_OP_DISCARD && d->gens) {
		/* Discarded data reads back as zeroes or as before: unknown. */
		uint64_t first = (io->d.off - d->region_start) / VF_SECTOR;

		memset(d->gens + first, 0, io->d.len / VF_SECTOR * sizeof(uint32_t));
	}
	qr->inflight++;
	for (unsigned i = 0; i < k; i++) {
		unsigned id = 0, n;
		int r;

		if (io->d.op == VF_OP_READ || io->d.op == VF_OP_WRITE) {
			uint64_t cap = vf_req_capacity(d->max_segs, pgoff);
			n = (unsigned)(left < cap ? left : cap);
		} else {
			n = (unsigned)left;
		}
		shadow_get(q, &id);
		r = send_part(qr, io, id, off, n, pgoff);
		if (r < 0) {
			shadow_put(q, id);
			queue_break(q, "granting pages failed: %s", strerror(-r));
			io->failed = true;
			io->parts_left = i; /* the rest never go out */
			if (!i) {
				io->busy = false;
				qr->inflight--;
			}
			return r;
		}
		off += (uint64_t)n * VF_SECTOR;
		left -= n;
		pgoff = 0;
	}
	return 0;
}

/* ---- completions ---- */

static void count_status(struct vf_dev *d, int16_t status)
{
	if (status == BLKIF_RSP_ERROR)
		atomic_fetch_add(&d->stats.st_error, 1);
	else if (status == BLKIF_RSP_EOPNOTSUPP)
		atomic_fetch_add(&d->stats.st_eopnotsupp, 1);
	else if (status != BLKIF_RSP_OKAY)
		atomic_fetch_add(&d->stats.st_other, 1);
}

static void verify_read(struct qrun *qr, struct vf_shadow *s)
{
	struct vf_dev *d = qr->d;
	struct vf_mismatch mm;
	uint64_t first = (s->off - d->region_start) / VF_SECTOR;
	unsigned bad;

	bad = vf_pattern_check(shadow_data(qr->q, s), s->off, (size_t)s->nsect * VF_SECTOR,
			       d->gens + first, d->opts->seed, &mm);
	atomic_fetch_add(&d->stats.verified_sectors, s->nsect);
	if (!bad)
		return;
	if (atomic_fetch_add(&d->stats.mismatches, bad) < 20) {
		char what[96];

		if (mm.found_pattern && mm.found_off == mm.off && mm.found_gen == mm.want_gen)
			snprintf(what, sizeof(what), "its header intact but the data corrupted");
		else if (mm.found_pattern)
			snprintf(what, sizeof(what), "data written for offset %llu generation %u",
				 (unsigned long long)mm.found_off, mm.found_gen);
		else
			snprintf(what, sizeof(what), "%s", mm.found_zero ? "zeroes" : "foreign data");
		fprintf(stderr, "vbd-front: %u: verify mismatch at offset %llu (%u bad sectors in "
				"this read): expected generation %u, found %s\n",
			d->devid, (unsigned long long)mm.off, bad, mm.want_gen, what);
	}
}

static void complete_io(struct qrun *qr, struct vf_io *io)
{
	struct vf_dev *d = qr->d;
	uint64_t lat = now_ns() - io->start_ns;

	hist_record(&d->stats.lat[io->d.op], lat);
	atomic_fetch_add(&d->stats.ios[io->d.op], 1);
	if (!io->failed)
		atomic_fetch_add(&d->stats.bytes[io->d.op], io->d.len);
	if (io->d.op == VF_OP_WRITE && d->gens) {
		uint64_t first = (io->d.off - d->region_start) / VF_SECTOR;
		uint32_t g = io->failed ? 0 : io->gen;

		for (uint64_t i = 0; i < io->d.len / VF_SECTOR; i++)
			d->gens[first + i] = g;
	}
	io->busy = false;
	qr->inflight--;
}

static void complete_part(struct qrun *qr, const struct vf_rsp *rsp)
{
	struct vf_queue *q = qr->q;
	unsigned id = (unsigned)rsp->id;
	struct vf_shadow *s = &q->shadow[id];
	struct vf_io *io = s->io;

	count_status(qr->d, rsp->status);
	ungrant_pages(q, s);
	if (rsp->status != BLKIF_RSP_OKAY)
		io->failed = true;
	else if (io->d.op == VF_OP_READ && qr->d->gens)
		verify_read(qr, s);
	shadow_put(q, id);
	if (--io->parts_left == 0)
		complete_io(qr, io);
}

/* Take every response available; returns the number taken. */
static unsigned reap(struct qrun *qr)
{
	struct vf_queue *q = qr->q;
	struct vf_rsp rsp[64];
	unsigned total = 0;

	while (!q->broken) {
		int n = vf_ring_take(&q->ring, rsp, 64);

		if (n < 0) {
			atomic_fetch_add(&qr->d->stats.bad_responses, 1);
			queue_break(q, "backend published more responses than requests");
			break;
		}
		for (int i = 0; i < n; i++) {
			enum vf_rsp_check c = vf_rsp_validate(q->states, q->nshadow, &rsp[i]);

			if (c != VF_RSP_OK) {
				atomic_fetch_add(&qr->d->stats.bad_responses, 1);
				queue_break(q, "%s (id %llu, operation %u)", vf_rsp_check_name(c),
					    (unsigned long long)rsp[i].id, rsp[i].operation);
				return total;
			}
			complete_part(qr, &rsp[i]);
			total++;
		}
		if (n == 64)
			continue;
		if (!vf_ring_final_check(&q->ring))
			break;
	}
	return total;
}

/* Wait up to ms for a notification on the queue's channel. */
static void wait_event(struct qrun *qr, int ms)
{
	struct pollfd pfd = { .fd = qr->q->evfd, .events = POLLIN };

	if (poll(&pfd, 1, ms) > 0 &&
	    sim_guest_evtchn_ack(vf_mem_guest(qr->d->mem), (uint32_t)qr->q->port) > 0)
		atomic_fetch_add(&qr->d->stats.notify_in, 1);
}

static void push(struct qrun *qr)
{
	if (!qr->pushed)
		return;
	qr->pushed = false;
	if (vf_ring_push(&qr->q->ring))
		vf_queue_kick(qr->q);
}

/* ---- phases ---- */

struct phase {
	const char *name;
	struct vf_workload wl;
	uint64_t ios, bytes;      /* budgets; 0 = unlimited */
	uint64_t ios_gen, bytes_gen;
	uint64_t deadline_ns;     /* 0 = none */
	uint64_t now_ns;          /* read once per pass of run_phase, for the deadline */
	bool wrote;               /* a write or discard was issued */
	bool flush_only;          /* the closing flush: one FLUSH, even when stopping */
};

static bool overlaps_inflight(const struct qrun *qr, const struct vf_io_desc *d)
{
	for (unsigned i = 0; i < qr->nios; i++) {
		const struct vf_io *o = &qr->ios[i];

		if (o->busy && o->d.len && d->len && d->off < o->d.off + o->d.len &&
		    o->d.off < d->off + d->len)
			return true;
	}
	return false;
}

static struct vf_io *free_io(struct qrun *qr)
{
	for (unsigned i = 0; i < qr->nios; i++)
		if (!qr->ios[i].busy)
			return &qr->ios[i];
	return NULL;
}

/* Generate the next I/O of the phase, or false when its budget is spent. */
static bool next_io(struct qrun *qr, struct phase *ph, struct vf_io_desc *out)
{
	struct vf_dev *d = qr->d;

	if (ph->flush_only) {
		if (ph->ios_gen++)
			return false;
		*out = (struct vf_io_desc){ .op = VF_OP_FLUSH };
		return true;
	}
	for (;;) {
		if ((ph->ios && ph->ios_gen >= ph->ios) || (ph->bytes && ph->bytes_gen >= ph->bytes))
			return false;
		if (ph->deadline_ns && ph->now_ns >= ph->deadline_ns)
			return false;
		vf_workload_next(&ph->wl, out);
		if (out->op == VF_OP_FLUSH && !(d->flush || d->barrier))
			continue;
		if (out->op == VF_OP_DISCARD && !d->discard)
			continue;
		ph->ios_gen++;
		ph->bytes_gen += out->len;
		ph->wrote |= out->op == VF_OP_WRITE || out->op == VF_OP_DISCARD;
		return true;
	}
}

/* How long a queue keeps collecting responses after the backend left
 * Connected (it still answers what it had taken, as blkback does). */
#define GONE_GRACE_NS 2000000000ull

static void run_phase(struct qrun *qr, struct phase *ph)
{
	struct vf_queue *q = qr->q;
	struct vf_io_desc pend;
	bool have = false, stopping = false;
	uint64_t last = now_ns(), gone_at = 0;

	for (;;) {
		/* One clock read per pass for the deadline, not one per I/O
		 * (it was a fifth of the front's time at 4 KiB). */
		ph->now_ns = now_ns();
		if (atomic_load(&qr->d->backend_gone) && !gone_at)
			gone_at = now_ns();
		if ((atomic_load(&vf_stop) && !ph->flush_only) || q->broken || gone_at)
			stopping = true;
		while (!stopping) {
			struct vf_io *io;

			if (!have && !(have = next_io(qr, ph, &pend))) {
				stopping = true;
				break;
			}
			if (qr->d->opts->verify && overlaps_inflight(qr, &pend))
				break;
			io = free_io(qr);
			if (!io)
				break;
			io->d = pend;
			io->pgoff = 0;
			if (qr->d->opts->unaligned && qr->d->sector_size == VF_SECTOR &&
			    (pend.op == VF_OP_READ || pend.op == VF_OP_WRITE))
				io->pgoff = (unsigned)vf_rng_below(&qr->rng, VF_SECTORS_PER_PAGE);
			if (submit_io(qr, io) == -EAGAIN)
				break;
			have = false;
		}
		push(qr);
		if (gone_at && (!qr->inflight || now_ns() - gone_at > GONE_GRACE_NS)) {
			/* The workload did not complete: always a problem. */
			if (qr->inflight)
				queue_break(q, "backend left Connected with %u I/Os outstanding",
					    qr->inflight);
			else
				queue_break(q, "backend left Connected during the %s phase", ph->name);
			break;
		}
		if (qr->inflight == 0 && stopping)
			break;
		if (q->broken)
			break;
		if (reap(qr)) {
			last = ph->now_ns;
			continue;
		}
		if (q->broken)
			break;
		wait_event(qr, 100);
		if (qr->inflight && now_ns() - last > qr->d->opts->timeout_ns) {
			queue_break(q, "backend stopped answering: %u I/Os outstanding for %.1f s",
				    qr->inflight, (double)(now_ns() - last) / 1e9);
			break;
		}
	}
}

static void init_phase(struct qrun *qr, struct phase *ph, const char *name, enum vf_pattern_kind pat,
		       enum vf_rw rw, bool whole)
{
	struct vf_dev *d = qr->d;
	const struct vf_opts *o = d->opts;
	unsigned nq = d->nr_queues;
	char err[160];

	memset(ph, 0, sizeof(*ph));
	ph->name = name;
	ph->wl.pattern = pat;
	ph->wl.rw = rw;
	ph->wl.read_pct = o->read_pct;
	ph->wl.bs = o->bs;
	ph->wl.start = qr->q->slice_start;
	ph->wl.len = qr->q->slice_len;
	ph->wl.align = d->sector_size;
	ph->wl.discard_align = d->discard_gran;
	if (!whole) {
		ph->wl.flush_every = o->no_flush ? 0 : o->flush_every;
		ph->wl.discard_every = o->no_discard ? 0 : o->discard_every;
		if (o->ios)
			ph->ios = o->ios / nq + (qr->q->index < o->ios % nq);
		if (o->bytes)
			ph->bytes = o->bytes / nq;
		if (o->duration_ns)
			ph->deadline_ns = now_ns() + o->duration_ns;
	}
	if (whole || (!o->ios && !o->bytes && !o->duration_ns))
		ph->bytes = qr->q->slice_len;
	if (ph->wl.bs > ph->wl.len)
		ph->wl.bs = ph->wl.len;
	if (vf_workload_init(&ph->wl, o->seed + qr->q->index, err, sizeof(err)))
		queue_break(qr->q, "%s", err);
}

/* After a phase that wrote: one flush, as a guest syncs before it calls
 * its work done (so the data survives a crash of the backend). */
static void closing_flush(struct qrun *qr, const struct phase *done)
{
	struct vf_dev *d = qr->d;
	struct phase ph;

	if (!done->wrote || !(d->flush || d->barrier) || d->opts->no_flush || qr->q->broken)
		return;
	memset(&ph, 0, sizeof(ph));
	ph.name = "flush";
	ph.flush_only = true;
	run_phase(qr, &ph);
}

void *vf_queue_main(void *arg)
{
	struct vf_queue *q = arg;
	struct vf_dev *d = q->dev;
	const struct vf_opts *o = d->opts;
	struct qrun qr = { .q = q, .d = d };
	struct phase ph;

	qr.nios = o->qd ? o->qd : 1;
	qr.ios = calloc(qr.nios, sizeof(*qr.ios));
	qr.rng = vf_mix(o->seed, 0x756e616c ^ q->index);
	if (!qr.ios) {
		queue_break(q, "out of memory");
		return NULL;
	}
	if (o->fill && !q->broken) {
		init_phase(&qr, &ph, "fill", VF_SEQ, VF_RW_WRITE, true);
		qr.fill_gen = VF_FILL_GEN;
		if (!q->broken)
			run_phase(&qr, &ph);
		qr.fill_gen = 0;
		closing_flush(&qr, &ph);
	}
	if ((!o->fill || o->ios || o->bytes || o->duration_ns) && !q->broken) {
		init_phase(&qr, &ph, "workload", o->pattern, o->rw, false);
		if (!q->broken)
			run_phase(&qr, &ph);
		closing_flush(&qr, &ph);
	}
	if ((o->verify || o->fill) && !q->broken && !atomic_load(&vf_stop)) {
		init_phase(&qr, &ph, "verify", VF_SEQ, VF_RW_READ, true);
		if (!q->broken)
			run_phase(&qr, &ph);
	}
	free(qr.ios);
	return NULL;
}

void vf_dev_run(struct vf_dev *d)
{
	uint64_t t0 = now_ns();

	for (unsigned i = 0; i < d->nr_queues; i++) {
		struct vf_queue *q = &d->queue[i];

		q->thread_started = pthread_create(&q->thread, NULL, vf_queue_main, q) == 0;
		if (!q->thread_started)
			queue_break(q, "cannot start a thread");
	}
	for (unsigned i = 0; i < d->nr_queues; i++)
		if (d->queue[i].thread_started)
			pthread_join(d->queue[i].thread, NULL);
	d->elapsed_ns += now_ns() - t0;
}

/* ---- synchronous requests (evil modes) ---- */

int vf_queue_sync(struct vf_queue *q, struct blkif_req *req, uint64_t timeout_ns)
{
	struct vf_dev *d = q->dev;
	struct qrun qr = { .q = q, .d = d };
	uint64_t deadline = now_ns() + timeout_ns;
	unsigned id;

	if (!shadow_get(q, &id))
		return -1000;
	req->id = id;
	q->states[id].pending = true;
	q->states[id].operation = req->operation == BLKIF_OP_INDIRECT ? req->indirect_op : req->operation;
	q->shadow[id].io = NULL;
	vf_ring_put(&q->ring, req);
	atomic_fetch_add(&d->stats.reqs, 1);
	qr.pushed = true;
	push(&qr);
	while (now_ns() < deadline && !atomic_load(&vf_stop)) {
		struct vf_rsp rsp;
		int n = vf_ring_take(&q->ring, &rsp, 1);

		if (n < 0)
			return -1001;
		if (n == 1) {
			/* The operation may legitimately differ for nonsense ops;
			 * only the id must be the one outstanding. */
			if (rsp.id != id)
				return -1001;
			count_status(d, rsp.status);
			shadow_put(q, id);
			return rsp.status;
		}
		if (vf_ring_final_check(&q->ring))
			continue;
		wait_event(&qr, 50);
	}
	return -1000;
}
