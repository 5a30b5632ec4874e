/*
 * Fuzz target: the blkif request path.  A guest's shared ring (either
 * ABI, order 0..2), its memory (data pages, indirect pages) and its grant
 * table come from the input; the engine serves the ring with its real
 * code (abi.c copy, request.c validation, io.c indirect fetch, grant copy
 * or persistent grants through pgrant.c, ring.c responses) against a small
 * raw or qcow2 image, driven synchronously through engine_start_sync() and
 * queue_serve_once(), the consumer loop's own step.
 *
 * Input layout (missing bytes read as zero):
 *   [0]  bit 0 x86_32 ABI; bits 1-2 ring order (3: an invalid order the
 *        engine must refuse); bit 3 persistent grants; bit 4 read-only
 *        device; bit 5 qcow2 image; bit 6 4096-byte sectors; bit 7 a raw
 *        image in a disk file (read-only device: reads come from the page
 *        cache, which the engine serves on its intake thread)
 *   [1]  bit 0 flush, 1 barrier, 2 discard, 3 secure discard; bits 4-5
 *        discard granularity (0, 512, 4096, 65536); bits 6-7 max indirect
 *        segments (0, 16, 256, ENGINE_MAX_SEGS: then ring order 0)
 *   [2]  bits 0-1 image size (64 KiB, 64 KiB + 512, 256 KiB, 4 KiB), bit 6
 *        1 MiB instead; bits 2-3 qcow2 cluster bits (9, 12, 16, 16); bits
 *        4-5 extra rounds; bit 7 the image grows by 64 KiB (online resize)
 *        before the last round
 *   [3..5]  per extra round, how far the guest then moves req_prod
 *   [6..9]  the grant refs of the ring pages
 *   [10..12] per extra round, a grant table edit before it: bits 0-4 the
 *        ref; bit 5 toggles read-only, bit 6 permit access, bit 7 moves the
 *        frame on by one
 *   [13..15] reserved
 *   [16..79] grant table: FZ_GRANTS entries of 2 bytes: flags (bit 0
 *        permit access, bit 1 read-only, bit 2 granted to another domain),
 *        frame (& 31: frames 16..31 are outside guest memory)
 *   [80..]  guest memory writes, each: frame (u8, % FZ_PAGES), offset
 *        (u16 le, & 4095), length (u16 le), then the bytes (may run on
 *        into the next frames, clipped at the end of memory and input)
 *
 * Checks (each a trap, beyond the sanitizers): every response the engine
 * published answers the request in its slot with its id and operation
 * and a known status; the guest is notified exactly when its rsp_event
 * asks; nothing is left in flight; rsp_prod never passes req_cons; a
 * read-only device is not written and writes to it are not acknowledged;
 * the image keeps its size; a qcow2 image passes vbdfs' own check; frames
 * the guest granted only read-only (or not at all) are unchanged; every
 * mapping and event channel is released at stop.  (Responses are checked
 * only while the engine's data writes cannot have landed in the ring.)
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blkback/engine_priv.h"
#include "formats/image.h"
#include "formats/qcow2_create.h"
#include "fuzz.h"
#include "hv_fuzz.h"
#include "util/log.h"
#include "util/stats.h"
#include "util/trace.h"

#define GUEST_DOMID 7
#define GUEST_PORT 5
#define HDR_BYTES 16
#define GRANT_BYTES (2 * FZ_GRANTS)
#define MAX_ROUNDS 4
#define MAX_IMG (1u << 20)
#define GROW_BYTES (64u << 10)
#define MAX_RING_SLOTS 128 /* order 2, x86_64 */

#define trap_unless(c) do { if (!(c)) __builtin_trap(); } while (0)

static struct fz_hv fhv;
/* FUZZ_VERBOSE=1: print each response checked (to see what a seed does). */
static bool verbose;

struct config {
	enum blkif_abi abi;
	unsigned order;
	bool persistent, readonly, qcow2, big_sectors, cached, grow;
	bool flush, barrier, discard, secure;
	uint32_t granularity;
	unsigned max_indirect;
	unsigned size_index;  /* into SIZES */
	uint64_t img_bytes;
	unsigned cluster_bits;
	unsigned rounds;
	uint8_t prod_step[MAX_ROUNDS - 1];
	uint8_t grant_edit[MAX_ROUNDS - 1];
	hv_gref_t ring_ref[4];
};

static const uint64_t SIZES[] = { 64u << 10, (64u << 10) + 512, 256u << 10, 4096, MAX_IMG };
#define NSIZES (sizeof(SIZES) / sizeof(SIZES[0]))

/* The input's byte i, zero past its end. */
static uint8_t in_byte(const uint8_t *d, size_t n, size_t i)
{
	return i < n ? d[i] : 0;
}

static void parse_config(const uint8_t *d, size_t n, struct config *c)
{
	static const uint32_t gran[] = { 0, 512, 4096, 65536 };
	static const unsigned ind[] = { 0, 16, 256, ENGINE_MAX_SEGS };
	static const unsigned cbits[] = { 9, 12, 16, 16 };
	uint8_t b0 = in_byte(d, n, 0), b1 = in_byte(d, n, 1), b2 = in_byte(d, n, 2);

	memset(c, 0, sizeof(*c));
	c->abi = (b0 & 1) ? BLKIF_ABI_X86_32 : BLKIF_ABI_X86_64;
	c->order = (b0 >> 1) & 3;
	if (c->order == 3)
		c->order = ENGINE_MAX_RING_ORDER + 1;
	c->persistent = b0 & 8;
	c->readonly = b0 & 16;
	c->qcow2 = b0 & 32;
	c->big_sectors = b0 & 64;
	c->cached = b0 & 128;
	if (c->cached) {
		c->qcow2 = false;
		c->readonly = true; /* the file is made once for every input */
	}
	c->flush = b1 & 1;
	c->barrier = b1 & 2;
	c->discard = b1 & 4;
	c->secure = b1 & 8;
	c->granularity = gran[(b1 >> 4) & 3];
	c->max_indirect = ind[b1 >> 6];
	if (c->max_indirect == ENGINE_MAX_SEGS && c->order <= ENGINE_MAX_RING_ORDER)
		c->order = 0; /* keep the per-input pool small */
	c->size_index = (b2 & 64) ? NSIZES - 1 : b2 & 3u;
	c->img_bytes = SIZES[c->size_index];
	c->cluster_bits = cbits[(b2 >> 2) & 3];
	c->rounds = 1 + ((b2 >> 4) & 3);
	c->grow = (b2 & 128) && !c->readonly;
	for (unsigned i = 0; i < MAX_ROUNDS - 1; i++) {
		c->prod_step[i] = in_byte(d, n, 3 + i);
		c->grant_edit[i] = in_byte(d, n, 10 + i);
	}
	for (unsigned i = 0; i < 4; i++)
		c->ring_ref[i] = in_byte(d, n, 6 + i);
}

/* Frames some grant has let the backend write, this input. */
static bool frame_writable[FZ_PAGES];

static void note_writable_frames(void)
{
	for (unsigned g = 0; g < FZ_GRANTS; g++) {
		long at = fz_granted(&fhv, g, true);
		if (at >= 0)
			frame_writable[at / HV_PAGE_SIZE] = true;
	}
}

/* The guest changes one grant entry between rounds (see [10..12]). */
static void edit_grant(uint8_t edit)
{
	struct fz_grant *g = &fhv.grant[edit & 31];

	if (edit & 32)
		g->readonly = !g->readonly;
	if (edit & 64)
		g->permit = !g->permit;
	if (edit & 128)
		g->frame = (g->frame + 1) & 31;
	note_writable_frames();
}

/* The grant table and guest memory of the input. */
static void load_guest(const uint8_t *d, size_t n, const struct config *c)
{
	const size_t mem_bytes = (size_t)FZ_PAGES * HV_PAGE_SIZE;
	size_t i = HDR_BYTES + GRANT_BYTES;

	for (unsigned g = 0; g < FZ_GRANTS; g++) {
		uint8_t fl = in_byte(d, n, HDR_BYTES + 2 * g), fr = in_byte(d, n, HDR_BYTES + 2 * g + 1);
		fhv.grant[g] = (struct fz_grant){
			.permit = fl & 1, .readonly = fl & 2, .domid = (fl & 4) ? 3 : 0,
			.frame = fr & 31,
		};
	}
	memset(frame_writable, 0, sizeof(frame_writable));
	note_writable_frames();
	while (i + 5 <= n) {
		size_t at = (size_t)(d[i] % FZ_PAGES) * HV_PAGE_SIZE + ((d[i + 1] | d[i + 2] << 8) & 4095);
		size_t len = d[i + 3] | d[i + 4] << 8;

		i += 5;
		if (len > n - i)
			len = n - i;
		if (len > mem_bytes - at)
			len = mem_bytes - at;
		memcpy(fhv.mem + at, d + i, len);
		i += len;
	}
	for (unsigned p = 0; p < (1u << (c->order & 3)) && c->order <= ENGINE_MAX_RING_ORDER; p++) {
		long at = fz_granted(&fhv, c->ring_ref[p], true);
		if (at < 0)
			continue;
		/* A frame twice in the ring: a response in one slot rewrites
		 * another, so the slots cannot be checked exactly. */
		if (fhv.ring_frame[at / HV_PAGE_SIZE])
			fhv.ring_clobbered = true;
		fhv.ring_frame[at / HV_PAGE_SIZE] = true;
	}
}

/* ---- the image ---- */

static uint8_t img_pattern(uint64_t o)
{
	return (uint8_t)(o * 131 + (o >> 9) * 7 + 1);
}

/* An empty qcow2 image of c's size and cluster size, made once by vbdfs'
 * own creator and kept (a few KiB) for every later input. */
static const uint8_t *qcow2_template(const struct config *c, size_t *len)
{
	static uint8_t *tmpl[NSIZES][3];
	static size_t tlen[NSIZES][3];
	unsigned si = c->size_index;
	unsigned ci = c->cluster_bits == 9 ? 0 : c->cluster_bits == 12 ? 1 : 2;

	if (!tmpl[si][ci]) {
		struct qcow2_create_opts o;
		char path[64], err[256];
		struct stat st;
		int fd = memfd_create("fuzz-qcow2", MFD_CLOEXEC);

		if (fd < 0)
			return NULL;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		qcow2_create_opts_default(&o, c->img_bytes);
		o.cluster_bits = c->cluster_bits;
		if (qcow2_create(path, &o, err, sizeof(err)) < 0 || fstat(fd, &st) < 0 ||
		    !(tmpl[si][ci] = malloc((size_t)st.st_size)) ||
		    pread(fd, tmpl[si][ci], (size_t)st.st_size, 0) != st.st_size) {
			fprintf(stderr, "fuzz_blkif_req: cannot make a qcow2 template: %s\n", err);
			abort(); /* harness setup, not input-driven */
		}
		tlen[si][ci] = (size_t)st.st_size;
		close(fd);
	}
	*len = tlen[si][ci];
	return tmpl[si][ci];
}

/* The image's initial file bytes: a pattern for raw, the template for
 * qcow2. */
static const uint8_t *image_bytes(const struct config *c, size_t *len)
{
	static uint8_t raw[MAX_IMG];

	if (c->qcow2)
		return qcow2_template(c, len);
	if (!raw[0])
		for (uint64_t o = 0; o < MAX_IMG; o++)
			raw[o] = img_pattern(o);
	*len = c->img_bytes;
	return raw;
}

/*
 * The file of a c->cached image: an unlinked file in $TMPDIR (a disk file
 * system: the page cache serves its reads without waiting, which memfds do
 * not offer), written once per size and then only read (the device is
 * read-only, and check_image() traps if it changed).  -1 if it cannot be
 * made: then the image is a memfd like the others.
 */
static int cached_file(const struct config *c, const uint8_t *bytes, size_t len)
{
	static int fds[NSIZES] = { -1, -1, -1, -1, -1 };
	const char *dir = getenv("TMPDIR");
	int fd = fds[c->size_index];

	if (fd >= 0)
		return dup(fd);
	fd = open(dir && *dir ? dir : "/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	if (pwrite(fd, bytes, len, 0) != (ssize_t)len || fsync(fd) < 0) {
		close(fd);
		return -1;
	}
	fds[c->size_index] = fd;
	return dup(fd);
}

/* A fresh image file (memfd) opened read-write; -1 if it cannot be. */
static int open_image(const struct config *c, struct img **img)
{
	char path[64], err[256];
	size_t len;
	const uint8_t *bytes = image_bytes(c, &len);
	int fd = c->cached ? cached_file(c, bytes, len) : -1;

	if (fd < 0) {
		fd = memfd_create("fuzz-image", MFD_CLOEXEC);
		if (fd < 0)
			return -1;
		if (pwrite(fd, bytes, len, 0) != (ssize_t)len) {
			close(fd);
			return -1;
		}
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (img_open(path, c->qcow2 ? "qcow2" : "raw", 0, img, err, sizeof(err)) < 0) {
		fprintf(stderr, "fuzz_blkif_req: %s\n", err);
		abort(); /* our own fresh image must open */
	}
	return fd;
}

/* After the engine stopped: the image has its size, a read-only device's
 * file is untouched, a qcow2 image is consistent. */
static void check_image(const struct config *c, struct img *img, int fd, uint64_t bytes_now)
{
	size_t len;
	const uint8_t *bytes = image_bytes(c, &len);
	struct stat st;

	trap_unless(img_size(img) == bytes_now);
	trap_unless(fstat(fd, &st) == 0);
	if (!c->qcow2)
		trap_unless((uint64_t)st.st_size == bytes_now); /* nothing past the end */
	if (c->readonly) {
		static uint8_t now[MAX_IMG];
		trap_unless((size_t)st.st_size == len && len <= sizeof(now));
		trap_unless(pread(fd, now, len, 0) == (ssize_t)len);
		trap_unless(memcmp(now, bytes, len) == 0);
	}
	if (c->qcow2) {
		struct img_check_result res;
		memset(&res, 0, sizeof(res));
		img_check(img, false, &res);
		trap_unless(res.corruptions == 0 && res.check_errors == 0);
	}
}

/* ---- serving the ring ---- */

struct expect {
	uint64_t id;
	uint8_t op;
	bool write; /* changes the disk */
};

/* What the guest published: the requests in [req_cons, req_prod) as the
 * engine will copy them; -1 if req_prod is beyond what the ring holds. */
static int published(struct eng_queue *q, struct expect *ex)
{
	struct blk_ring *r = &q->ring;
	ring_idx_t rp = ((volatile uint32_t *)r->sring)[0];
	unsigned n = rp - r->req_cons;

	if (ring_prod_overflow(r, rp))
		return -1;
	for (unsigned k = 0; k < n; k++) {
		struct blkif_req req;
		uint8_t dop;

		blkif_copy_request(r->abi, blkif_slot(r->abi, r->sring, (r->req_cons + k) & (r->size - 1)),
				   &req);
		dop = req_data_op(&req);
		ex[k] = (struct expect){ req.id, req_response_op(&req),
					 dop == BLKIF_OP_WRITE || req.operation == BLKIF_OP_DISCARD };
	}
	return (int)n;
}

/* Nothing in flight or queued, every pool slot free, all published. */
static void check_quiet(struct engine *e, struct eng_queue *q)
{
	unsigned free_slots = 0;

	trap_unless(q->inflight == 0 && q->batch_n == 0 && !q->work_head && !q->pushing);
	trap_unless(q->unpushed == 0); /* inline answers published too */
	for (struct blkreq *rq = q->free_list; rq && free_slots <= q->nreqs; rq = rq->next)
		free_slots++;
	trap_unless(free_slots == q->nreqs);
	trap_unless(q->ring.rsp_prod_pvt == q->ring.req_cons);
	trap_unless(q->ring.rsp_pushed == q->ring.rsp_prod_pvt);
	trap_unless(e->p.stats->in_flight == 0);
}

static void serve_round(const struct config *c, struct engine *e)
{
	struct eng_queue *q = &e->q[0];
	struct expect ex[MAX_RING_SLOTS];
	ring_idx_t cons0 = q->ring.req_cons, rsp0 = q->ring.rsp_prod_pvt;
	ring_idx_t rsp_event = ((volatile uint32_t *)q->ring.sring)[3];
	unsigned notifies0 = fhv.notifies;
	int n = published(q, ex);
	enum drain_result r = queue_serve_once(q);

	trap_unless(r == DRAIN_IDLE || r == DRAIN_MORE || r == DRAIN_BROKEN);
	check_quiet(e, q);
	/* rule 3: req_prod too far ahead breaks the ring, which is then not
	 * served at all (nothing wrote the ring since published() looked) */
	trap_unless((n < 0) == (r == DRAIN_BROKEN));
	if (r == DRAIN_BROKEN) {
		trap_unless(q->ring.req_cons == cons0 && q->broken);
		return;
	}
	if (fhv.ring_clobbered)
		return; /* data went into the ring's frames: slots are not ours */
	trap_unless(q->ring.req_cons - cons0 == (ring_idx_t)n);
	/* published: rsp_prod (the guest's own value if nothing was taken) */
	trap_unless(n == 0 || ((volatile uint32_t *)q->ring.sring)[2] == q->ring.rsp_prod_pvt);
	/* rule 18: however the responses were pushed, exactly one
	 * notification iff rsp_event lies in the range answered */
	trap_unless(fhv.notifies - notifies0 == ((ring_idx_t)(rsp_event - rsp0 - 1) < (ring_idx_t)n));
	for (int k = 0; k < n; k++) {
		uint64_t id;
		uint8_t op;
		int16_t st;

		blkif_get_response(c->abi, blkif_slot(c->abi, q->ring.sring,
						      (rsp0 + (unsigned)k) & (q->ring.size - 1)),
				   &id, &op, &st);
		if (verbose)
			fprintf(stderr, "response id %llu op %u status %d\n",
				(unsigned long long)id, op, st);
		trap_unless(id == ex[k].id && op == ex[k].op);
		trap_unless(st == BLKIF_RSP_OKAY || st == BLKIF_RSP_ERROR ||
			    st == BLKIF_RSP_EOPNOTSUPP);
		/* rule 13 */
		trap_unless(!(c->readonly && ex[k].write && st == BLKIF_RSP_OKAY));
	}
}

/* Frames no grant ever let the backend write must be as the input left
 * them. */
static void check_readonly_frames(const uint8_t *before)
{
	for (unsigned p = 0; p < FZ_PAGES; p++)
		if (!frame_writable[p])
			trap_unless(memcmp(fhv.mem + (size_t)p * HV_PAGE_SIZE,
					   before + (size_t)p * HV_PAGE_SIZE, HV_PAGE_SIZE) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t before[FZ_PAGES * HV_PAGE_SIZE];
	struct config c;
	struct engine_params p;
	struct dev_stats st;
	struct img *img = NULL;
	struct engine *e;
	char err[256];
	uint64_t bytes_now;
	int fd;

	verbose = getenv("FUZZ_VERBOSE") != NULL;
	log_init("fuzz", verbose ? VLOG_DEBUG : VLOG_NONE, false); /* bad requests are expected */
	parse_config(data, size, &c);
	if (!fz_hv_reset(&fhv, GUEST_DOMID, GUEST_PORT))
		return 0;
	load_guest(data, size, &c);
	memcpy(before, fhv.mem, sizeof(before));
	fd = open_image(&c, &img);
	if (fd < 0)
		return 0;
	bytes_now = c.img_bytes;

	memset(&p, 0, sizeof(p));
	p.hv = &fhv.hv;
	p.domid = GUEST_DOMID;
	p.devid = 51712;
	p.abi = c.abi;
	p.ring_order = c.order;
	p.nr_queues = 1;
	for (unsigned i = 0; i < 4; i++)
		p.queue[0].ring_ref[i] = c.ring_ref[i];
	p.queue[0].evtchn = GUEST_PORT;
	p.persistent = c.persistent;
	p.max_indirect_segs = c.max_indirect;
	p.feature_flush = c.flush;
	p.feature_barrier = c.barrier;
	p.feature_discard = c.discard;
	p.discard_secure = c.secure;
	p.discard_granularity = c.granularity;
	p.sector_size = c.big_sectors ? 4096 : 512;
	p.readonly = c.readonly;
	p.img = img;
	stats_init(&st);
	p.stats = &st;
	p.trace = trace_new(64);

	e = engine_start_sync(&p, err, sizeof(err));
	trap_unless(e || fhv.maps_live == 0); /* a failed start leaves nothing */
	if (e) {
		for (unsigned round = 0; round < c.rounds; round++) {
			if (round) { /* the guest publishes more (or garbage) */
				edit_grant(c.grant_edit[round - 1]);
				((volatile uint32_t *)e->q[0].sring)[0] += c.prod_step[round - 1];
			}
			if (c.grow && round && round == c.rounds - 1 &&
			    img_resize(img, bytes_now + GROW_BYTES) == 0) {
				/* as xenbus.c does on an online resize */
				bytes_now += GROW_BYTES;
				engine_set_sectors(e, bytes_now / 512);
			}
			serve_round(&c, e);
			if (e->q[0].broken)
				break;
		}
		engine_stop(e);
	}
	trap_unless(fhv.maps_live == 0 && fhv.nmap == 0 && fhv.binds_live == 0);
	check_readonly_frames(before);
	check_image(&c, img, fd, bytes_now);

	trace_free(p.trace);
	stats_destroy(&st);
	img_close(img);
	close(fd);
	return 0;
}
