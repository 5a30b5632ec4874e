/* Unit tests: blkif request validation (blkback/request.c), one request
 * per rule that breaks it; ring index helpers (blkback/ring.c); the
 * persistent grant cache (blkback/pgrant.c) on a fake transport: single
 * gets, and a request's batch (misses reserved under the lock, mapped
 * without it), also from several threads at once. */
#include "t/engine-fake.h"

#include "blkback/pgrant.h"
#include "blkback/request.h"
#include "blkback/ring.h"
#include "util/tap.h"

static struct req_limits LIM = {
	.flush = true, .barrier = true, .discard = true, .discard_secure = false,
	.readonly = false, .max_indirect_segs = 256, .sector_size = 512,
	.discard_granularity = 4096,
};
#define SIZE 2048u /* device size in 512-byte sectors (1 MiB) */

static struct blkif_req rw(uint8_t op, uint64_t sector, unsigned nseg)
{
	struct blkif_req r;
	uint32_t g[11] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 };

	fk_rw(&r, op, 42, sector, g, nseg > 11 ? 11 : nseg);
	r.nr_segments = (uint16_t)nseg;
	return r;
}

/* Header check, then (if okay and the request has direct segments) the
 * segment check: the status the engine would answer. */
static int16_t check(const struct blkif_req *r, const struct req_limits *lim, uint64_t live)
{
	struct req_verdict v = req_check_header(r, lim, live);
	uint64_t sectors;

	if (v.status != BLKIF_RSP_OKAY || r->operation == BLKIF_OP_DISCARD ||
	    r->operation == BLKIF_OP_INDIRECT || !r->nr_segments)
		return v.status;
	return req_check_segments(r->seg, r->nr_segments, r->sector_number, lim, live, &sectors)
		.status;
}

static void test_ops(void)
{
	struct blkif_req r = rw(BLKIF_OP_READ, 0, 1);
	struct req_limits none = LIM;

	is_int(check(&r, &LIM, SIZE), BLKIF_RSP_OKAY, "valid READ is okay");
	r.operation = BLKIF_OP_WRITE;
	is_int(check(&r, &LIM, SIZE), BLKIF_RSP_OKAY, "valid WRITE is okay");

	/* rule 7 */
	none.flush = none.barrier = none.discard = false;
	none.max_indirect_segs = 0;
	r.operation = BLKIF_OP_RESERVED_1;
	is_int(check(&r, &LIM, SIZE), BLKIF_RSP_EOPNOTSUPP, "rule 7: op 4 (reserved) -> EOPNOTSUPP");
	r.operation = 99;
	is_int(check(&r, &LIM, SIZE), BLKIF_RSP_EOPNOTSUPP, "rule 7: unknown op -> EOPNOTSUPP");
	r.operation = BLKIF_OP_FLUSH_DISKCACHE;
	is_int(check(&r, &none, SIZE), BLKIF_RSP_EOPNOTSUPP, "rule 7: unadvertised flush");
	r.operation = BLKIF_OP_WRITE_BARRIER;
	is_int(check(&r, &none, SIZE), BLKIF_RSP_EOPNOTSUPP, "rule 7: unadvertised barrier");
	r.operation = BLKIF_OP_DISCARD;
	r.nr_sectors = 8;
	is_int(check(&r, &none, SIZE), BLKIF_RSP_EOPNOTSUPP, "rule 7: unadvertised discard");
	r = rw(BLKIF_OP_INDIRECT, 0, 20);
	r.indirect_op = BLKIF_OP_READ;
	is_int(check(&r, &none, SIZE), BLKIF_RSP_EOPNOTSUPP, "rule 7: unadvertised indirect");
	is_int(check(&r, &LIM, SIZE), BLKIF_RSP_OKAY, "advertised indirect READ header is okay");

	/* rule 9 */
	r.indirect_op = BLKIF_OP_DISCARD;
	is_int(check(&r, &LIM, SIZE), BLKIF_RSP_ERROR, "rule 9: indirect DISCARD -> ERROR");
	r.indirect_op = BLKIF_OP_INDIRECT;
	is_int(check(&r, &LIM, SIZE), BLKIF_RSP_ERROR, "rule 9: indirect INDIRECT -> ERROR");

	/* rule 17: the operation echoed */
	r.indirect_op = BLKIF_OP_WRITE;
	is_int(req_response_op(&r), BLKIF_OP_WRITE, "rule 17: INDIRECT answers with indirect_op");
	r = rw(BLKIF_OP_FLUSH_DISKCACHE, 0, 0);
	is_int(req_response_op(&r), BLKIF_OP_FLUSH_DISKCACHE, "rule 17: others echo their op");
}

static void test_segments(void)
{
	struct blkif_req r = rw(BLKIF_OP_READ, 0, 0);

	/* rule 8 */
	is_int(check(&r, &LIM, SIZE), BLKIF_RSP_ERROR, "rule 8: READ with 0 segments");
	r = rw(BLKIF_OP_WRITE, 0, 12);
	is_int(check(&r, &LIM, SIZE), BLKIF_RSP_ERROR, "rule 8: WRITE with 12 segments");
	r = rw(BLKIF_OP_READ, 0, 11);
	is_int(check(&r, &LIM, SIZE), BLKIF_RSP_OKAY, "rule 8: 11 segments are fine");
	r = rw(BLKIF_OP_FLUSH_DISKCACHE, 0, 0);
	is_int(check(&r, &LIM, SIZE), BLKIF_RSP_OKAY, "rule 8: pure flush with 0 segments");
	r = rw(BLKIF_OP_WRITE_BARRIER, 0, 0);
	is_int(check(&r, &LIM, SIZE), BLKIF_RSP_OKAY, "rule 8: pure barrier with 0 segments");
	r = rw(BLKIF_OP_FLUSH_DISKCACHE, 0, 12);
	is_int(check(&r, &LIM, SIZE), BLKIF_RSP_ERROR, "rule 8: flush with 12 segments");
	r = rw(BLKIF_OP_INDIRECT, 0, 0);
	r.indirect_op = BLKIF_OP_READ;
	is_int(check(&r, &LIM, SIZE), BLKIF_RSP_ERROR, "rule 8: INDIRECT with 0 segments");
	r.nr_segments = 257;
	is_int(check(&r, &LIM, SIZE), BLKIF_RSP_ERROR, "rule 8: INDIRECT above advertised max");
	struct req_limits big = LIM;
	big.max_indirect_segs = 65535;
	r.nr_segments = 4097;
	is_int(check(&r, &big, 1u << 30), BLKIF_RSP_ERROR, "rule 8: more than 8 indirect pages");
	r.nr_segments = 4096;
	is_int(check(&r, &big, 1u << 30), BLKIF_RSP_OKAY, "rule 8: exactly 8 indirect pages");
	is_int(req_indirect_pages(512), 1, "rule 6: 512 segments use 1 indirect page");
	is_int(req_indirect_pages(513), 2, "rule 6: 513 segments use 2 indirect pages");

	/* rule 10 */
	r = rw(BLKIF_OP_READ, 0, 2);
	r.seg[1].first_sect = 5;
	r.seg[1].last_sect = 4;
	is_int(check(&r, &LIM, SIZE), BLKIF_RSP_ERROR, "rule 10: first > last");
	r.seg[1].first_sect = 0;
	r.seg[1].last_sect = 8;
	is_int(check(&r, &LIM, SIZE), BLKIF_RSP_ERROR, "rule 10: last beyond the page");
	r.seg[1].first_sect = 255;
	r.seg[1].last_sect = 255;
	is_int(check(&r, &LIM, SIZE), BLKIF_RSP_ERROR, "rule 10: first beyond the page");

	/* rule 11 */
	r = rw(BLKIF_OP_READ, SIZE - 8, 1);
	is_int(check(&r, &LIM, SIZE), BLKIF_RSP_OKAY, "rule 11: last page of the device");
	r.sector_number = SIZE - 7;
	is_int(check(&r, &LIM, SIZE), BLKIF_RSP_ERROR, "rule 11: one sector past the end");
	r.sector_number = UINT64_MAX - 3;
	is_int(check(&r, &LIM, UINT64_MAX), BLKIF_RSP_ERROR, "rule 11: range wraps in u64");
	r.sector_number = SIZE - 8;
	is_int(check(&r, &LIM, SIZE - 8), BLKIF_RSP_ERROR,
	       "rule 11: checked against the live (shrunk) size");

	/* rule 12 */
	struct req_limits k4 = LIM;
	k4.sector_size = 4096;
	r = rw(BLKIF_OP_WRITE, 8, 1);
	is_int(check(&r, &k4, SIZE), BLKIF_RSP_OKAY, "rule 12: 4K-aligned write on 4Kn");
	r.sector_number = 4;
	is_int(check(&r, &k4, SIZE), BLKIF_RSP_ERROR, "rule 12: sector_number not 4K aligned");
	r = rw(BLKIF_OP_WRITE, 8, 1);
	r.seg[0].first_sect = 0;
	r.seg[0].last_sect = 3;
	is_int(check(&r, &k4, SIZE), BLKIF_RSP_ERROR, "rule 12: segment shorter than a block");
	r.seg[0].first_sect = 4;
	r.seg[0].last_sect = 7;
	is_int(check(&r, &LIM, SIZE), BLKIF_RSP_OKAY, "rule 12: 512-byte device takes any sector");
	is_int(check(&r, &k4, SIZE), BLKIF_RSP_ERROR, "rule 12: first_sect not block aligned");

	/* rule 10 for indirect entries: decoded once from the private copy */
	unsigned char page[16] = { 0x78, 0x56, 0x34, 0x12, 1, 6, 0, 0, 9, 0, 0, 0, 0, 7, 0, 0 };
	struct blkif_request_segment seg[2];
	uint64_t sectors = 0;
	req_decode_indirect(page, 2, seg);
	ok(seg[0].gref == 0x12345678 && seg[0].first_sect == 1 && seg[0].last_sect == 6 &&
	   seg[1].gref == 9 && seg[1].first_sect == 0 && seg[1].last_sect == 7,
	   "indirect entries decoded little endian");
	is_int(req_check_segments(seg, 2, 0, &LIM, SIZE, &sectors).status, BLKIF_RSP_OKAY,
	       "indirect segments checked");
	is_int(sectors, 14, "sectors summed over segments");
}

static void test_readonly_discard(void)
{
	struct req_limits ro = LIM;
	struct blkif_req r;

	/* rule 13 */
	ro.readonly = true;
	r = rw(BLKIF_OP_WRITE, 0, 1);
	is_int(check(&r, &ro, SIZE), BLKIF_RSP_ERROR, "rule 13: WRITE on read-only");
	r = rw(BLKIF_OP_READ, 0, 1);
	is_int(check(&r, &ro, SIZE), BLKIF_RSP_OKAY, "rule 13: READ on read-only is fine");
	r = rw(BLKIF_OP_INDIRECT, 0, 20);
	r.indirect_op = BLKIF_OP_WRITE;
	is_int(check(&r, &ro, SIZE), BLKIF_RSP_ERROR, "rule 13: indirect WRITE on read-only");
	r = rw(BLKIF_OP_WRITE_BARRIER, 0, 1);
	is_int(check(&r, &ro, SIZE), BLKIF_RSP_ERROR, "rule 13: barrier with data on read-only");
	r = rw(BLKIF_OP_FLUSH_DISKCACHE, 0, 1);
	is_int(check(&r, &ro, SIZE), BLKIF_RSP_ERROR, "rule 13: flush with data on read-only");
	r = rw(BLKIF_OP_FLUSH_DISKCACHE, 0, 0);
	is_int(check(&r, &ro, SIZE), BLKIF_RSP_OKAY, "rule 13: pure flush on read-only is fine");

	/* rule 14 */
	memset(&r, 0, sizeof(r));
	r.operation = BLKIF_OP_DISCARD;
	r.sector_number = 8;
	r.nr_sectors = 16;
	is_int(check(&r, &ro, SIZE), BLKIF_RSP_ERROR, "rule 13: DISCARD on read-only");
	is_int(check(&r, &LIM, SIZE), BLKIF_RSP_OKAY, "valid DISCARD is okay");
	r.sector_number = 4;
	is_int(check(&r, &LIM, SIZE), BLKIF_RSP_OKAY,
	       "rule 14: start not granularity aligned is fine (Linux blkfront sends it)");
	r.sector_number = SIZE - 8;
	is_int(check(&r, &LIM, SIZE), BLKIF_RSP_ERROR, "rule 14: discard past the end");
	r.sector_number = 8;
	r.nr_sectors = UINT64_MAX - 4;
	is_int(check(&r, &LIM, UINT64_MAX), BLKIF_RSP_ERROR, "rule 14: bytes above INT64_MAX");
	r.sector_number = UINT64_MAX - 7;
	r.nr_sectors = 16;
	is_int(check(&r, &LIM, UINT64_MAX), BLKIF_RSP_ERROR, "rule 14: discard range wraps");
	r.sector_number = 8;
	r.nr_sectors = 16;
	r.discard_flag = BLKIF_DISCARD_SECURE;
	is_int(check(&r, &LIM, SIZE), BLKIF_RSP_EOPNOTSUPP, "rule 14: secure not advertised");
	struct req_limits sec = LIM;
	sec.discard_secure = true;
	is_int(check(&r, &sec, SIZE), BLKIF_RSP_OKAY, "rule 14: secure when advertised");
	struct req_limits k4 = LIM;
	k4.sector_size = 4096;
	r.discard_flag = 0;
	r.nr_sectors = 12;
	is_int(check(&r, &k4, SIZE), BLKIF_RSP_ERROR, "rule 12: discard length not 4K multiple");
}

static void test_ring(void)
{
	static char mem[4096] __attribute__((aligned(4096)));
	volatile uint32_t *h = (volatile uint32_t *)mem;
	struct blk_ring r;
	struct blkif_req in = rw(BLKIF_OP_WRITE, 77, 3), out;

	memset(mem, 0, sizeof(mem));
	h[1] = h[3] = 1; /* SHARED_RING_INIT */
	ring_init(&r, mem, BLKIF_ABI_X86_32, 4096);
	is_int(r.size, 32, "ring of one page: 32 slots");

	/* rule 2 + 3 + 4 */
	h[0] = 33;
	is_int(ring_req_prod(&r), 33, "rule 2: req_prod snapshot");
	ok(ring_prod_overflow(&r, 33), "rule 3: 33 requests on a 32-slot ring is bogus");
	ok(!ring_prod_overflow(&r, 32), "rule 3: 32 requests are fine");
	ok(ring_cons_overflow(&r, 32), "rule 4: cannot take a 33rd unanswered request");
	ok(!ring_cons_overflow(&r, 31), "rule 4: 32nd is fine");

	/* rule 1: the copy is private */
	blkif_put_request(BLKIF_ABI_X86_32, blkif_slot(BLKIF_ABI_X86_32, mem, 0), &in);
	h[0] = 1;
	ring_take_request(&r, &out);
	memset(blkif_slot(BLKIF_ABI_X86_32, mem, 0), 0xff, 108);
	ok(out.id == 42 && out.sector_number == 77 && out.nr_segments == 3 && r.req_cons == 1,
	   "rule 1: request copied once, unaffected by later changes");

	/* rule 18: push notifies only when rsp_event is in the pushed range */
	h[0] = 4;
	for (int i = 0; i < 3; i++)
		ring_take_request(&r, &out);
	ring_put_response(&r, 42, BLKIF_OP_WRITE, BLKIF_RSP_OKAY);
	ok(ring_push_responses(&r), "rule 18: rsp_event 1 -> notify for response 1");
	is_int(h[2], 1, "rsp_prod published");
	ring_put_response(&r, 43, BLKIF_OP_WRITE, BLKIF_RSP_OKAY);
	ok(!ring_push_responses(&r), "rule 18: frontend not waiting -> no notify");
	h[3] = 4;
	ring_put_response(&r, 44, BLKIF_OP_WRITE, BLKIF_RSP_OKAY);
	ok(!ring_push_responses(&r), "rule 18: rsp_event ahead -> no notify yet");
	ring_put_response(&r, 45, BLKIF_OP_WRITE, BLKIF_RSP_OKAY);
	ok(ring_push_responses(&r), "rule 18: reaching rsp_event -> notify");
	uint64_t id;
	uint8_t op;
	int16_t st;
	blkif_get_response(BLKIF_ABI_X86_32, blkif_slot(BLKIF_ABI_X86_32, mem, 3), &id, &op, &st);
	ok(id == 45 && op == BLKIF_OP_WRITE && st == 0, "rule 17: response fields in the slot");

	/* rule 18: final check re-arms req_event */
	ok(!ring_final_check(&r), "final check: no work");
	is_int(h[1], 5, "final check set req_event = req_cons + 1");
	h[0] = 5;
	ok(ring_final_check(&r), "final check sees a new request");
	is_int(ring_unconsumed(&r), 1, "one unconsumed request");
	h[0] = 1000;
	ok(ring_unconsumed(&r) <= r.size, "unconsumed bounded by ring size for a bogus req_prod");
}

static void test_pgrant(void)
{
	struct fake_hv *f = fk_new(16);
	struct pgrant_cache *c = pgrant_new(&f->hv, 7, 2);
	struct pgrant *a, *b, *x;
	void *pa, *pb, *px;
	struct pgrant_use use;
	int owner1, owner2;
	uint32_t g1 = fk_grant(f, fk_alloc_frame(f), false);
	uint32_t g2 = fk_grant(f, fk_alloc_frame(f), false);
	uint32_t g3 = fk_grant(f, fk_alloc_frame(f), true);

	is_int(pgrant_get(c, g1, false, &owner1, &a, &pa, &use), 0, "rule 16: map a new grant");
	ok(!use.hit && use.maps == 1, "first use maps");
	is_int(pgrant_get(c, g1, false, &owner2, &x, &px, &use), -EBUSY,
	       "rule 16: grant in use by another request is refused");
	is_int(pgrant_get(c, g1, false, &owner1, &x, &px, &use), 0,
	       "same request may use a grant twice");
	pgrant_put(c, x);
	pgrant_put(c, a);
	is_int(pgrant_get(c, g1, false, &owner2, &a, &pa, &use), 0, "released grant reusable");
	ok(use.hit && use.maps == 0, "second use is a cache hit");
	memcpy(fk_page(f, f->grant[g1].frame), "hello", 6);
	is_str((char *)pa, "hello", "mapping shows guest memory");
	pgrant_put(c, a);
	is_int(pgrant_get(c, g2, true, &owner1, &b, &pb, &use), 0, "second grant");
	is_int(pgrant_get(c, g3, true, &owner1, &x, &px, &use) < 0, 1,
	       "read-only grant cannot be mapped writable");
	is_int(pgrant_get(c, g3, false, &owner1, &x, &px, &use), -ENOSPC,
	       "cache full: the caller copies instead");
	is_int(pgrant_count(c), 2, "cache capped at its maximum");
	is_int(pgrant_purge(c, UINT64_MAX), 1, "after an overflow a purge evicts the LRU idle grant");
	is_int(pgrant_get(c, g3, false, &owner1, &x, &px, &use), 0, "then the new grant fits");
	is_int(pgrant_purge(c, UINT64_MAX), 0, "no overflow, nothing idle long: no purge");
	pgrant_put(c, b);
	pgrant_put(c, x);
	is_int(pgrant_purge(c, 0), 2, "idle grants purged");
	is_int(atomic_load(&f->maps_live), 0, "nothing left mapped after purge");
	is_int(pgrant_get(c, g3, false, &owner1, &a, &pa, &use), 0, "read-only grant for a write");
	ok(use.maps == 2, "tried writable first, then mapped read-only");
	is_int(pgrant_get(c, g3, true, &owner1, &x, &px, &use), -EBUSY,
	       "same request cannot need it writable too");
	pgrant_put(c, a);
	f->grant[g3].readonly = false; /* the guest re-grants it read-write */
	is_int(pgrant_get(c, g3, true, &owner2, &a, &pa, &use), 0, "upgrade to writable");
	ok(use.maps == 1 && !use.hit, "upgrade remaps");
	pgrant_put(c, a);
	is_int(pgrant_get(c, g1, false, &owner1, &a, &pa, &use), 0, "rw grant for a write");
	pgrant_put(c, a);
	is_int(pgrant_get(c, g1, true, &owner2, &a, &pa, &use), 0, "then for a read");
	ok(use.hit, "rw grant mapped writable at once: the read is a hit");
	pgrant_put(c, a);
	pgrant_free(c);
	is_int(atomic_load(&f->maps_live), 0, "pgrant_free unmaps everything");
	fk_free(f);
}

/* One request's grants the way io_hold_grants() takes them: lookups and
 * reservations under the lock, then the misses mapped without it.
 * Returns the first error (-EBUSY/map failure) or 0; pg[i] NULL when
 * segment i found the cache full.  *held: how many pg[] to put. */
static int take(struct pgrant_cache *c, const uint32_t *grefs, unsigned n, bool writable,
		 const void *owner, struct pgrant **pg, void **addr, unsigned *held,
		 unsigned *maps, unsigned *reserved)
{
	struct pgrant_batch b = PGRANT_BATCH_INIT;
	struct pgrant_use use;
	int r = 0;

	*held = *maps = 0;
	pgrant_begin(c);
	for (unsigned i = 0; i < n; i++) {
		r = pgrant_get_locked(c, grefs[i], writable, owner, &b, &pg[i], &addr[i], &use);
		*maps += use.maps;
		if (r == -ENOSPC)
			pg[i] = NULL;
		else if (r < 0)
			break;
		*held = i + 1;
	}
	pgrant_end(c);
	*reserved = b.n;
	if (r < 0 && r != -ENOSPC)
		return r;
	r = 0;
	if (b.n) {
		unsigned m;
		r = pgrant_map_reserved(c, &b, &m);
		*maps += m;
	}
	for (unsigned i = 0; i < *held; i++)
		if (pg[i])
			addr[i] = pgrant_addr(pg[i]);
	return r;
}

static void give_back(struct pgrant_cache *c, struct pgrant **pg, unsigned held)
{
	pgrant_begin(c);
	for (unsigned i = 0; i < held; i++)
		if (pg[i])
			pgrant_put_locked(c, pg[i], now_ns());
	pgrant_end(c);
}

static void test_pgrant_batch(void)
{
	struct fake_hv *f = fk_new(16);
	struct pgrant_cache *c = pgrant_new(&f->hv, 7, 4);
	struct pgrant_batch b = PGRANT_BATCH_INIT;
	struct pgrant *pg[8], *x;
	void *addr[8], *px;
	struct pgrant_use use;
	unsigned held, maps, reserved;
	int owner1, owner2;
	uint32_t g[6];

	for (int i = 0; i < 6; i++) {
		g[i] = fk_grant(f, fk_alloc_frame(f), i == 4);
		snprintf(fk_page(f, f->grant[g[i]].frame), 16, "page %d", i);
	}

	/* A miss reserves without mapping; the same grant again in the same
	 * request shares the reservation. */
	pgrant_begin(c);
	is_int(pgrant_get_locked(c, g[0], true, &owner1, &b, &pg[0], &addr[0], &use), 0,
	       "batch: a miss is reserved");
	ok(addr[0] == NULL && use.maps == 0 && !use.hit, "reserved, not mapped under the lock");
	is_int(pgrant_get_locked(c, g[1], true, &owner1, &b, &pg[1], &addr[1], &use), 0,
	       "batch: second miss reserved");
	is_int(pgrant_get_locked(c, g[0], true, &owner1, &b, &pg[2], &addr[2], &use), 0,
	       "batch: the same grant twice in one request");
	ok(pg[2] == pg[0] && b.n == 2, "one entry, reserved once");
	pgrant_end(c);
	is_int(atomic_load(&f->maps_live), 0, "nothing mapped before pgrant_map_reserved");

	/* Meanwhile another request misses on the same grant: it is in use. */
	is_int(pgrant_get(c, g[0], true, &owner2, &x, &px, &use), -EBUSY,
	       "rule 16: a grant reserved by another request is refused, no wait");
	/* A third grant idle in the cache, then the cache overflows. */
	is_int(pgrant_get(c, g[2], true, &owner2, &x, &px, &use), 0, "a third grant");
	pgrant_put(c, x);
	is_int(pgrant_get(c, g[3], true, &owner2, &x, &px, &use), 0, "a fourth grant");
	is_int(pgrant_get(c, g[5], true, &owner2, &pg[3], &addr[3], &use), -ENOSPC,
	       "cache full (two reserved, one idle, one held): copy instead");
	is_int(pgrant_purge(c, UINT64_MAX), 1,
	       "purge under pressure evicts the idle grant only, never a reserved one");
	pgrant_put(c, x);
	is_int(pgrant_purge(c, 0), 1, "an idle purge also leaves reserved entries alone");
	is_int(pgrant_count(c), 2, "the two reservations remain");

	unsigned m;
	is_int(pgrant_map_reserved(c, &b, &m), 0, "batch mapped outside the lock");
	is_int(m, 2, "one map per reserved grant (the statistics count refs)");
	is_int(atomic_load(&f->maps_live), 2, "two pages mapped");
	is_str((char *)pgrant_addr(pg[0]), "page 0", "reserved entry shows its guest page");
	is_str((char *)pgrant_addr(pg[1]), "page 1", "second entry shows its guest page");
	ok(pgrant_addr(pg[2]) == pgrant_addr(pg[0]), "the repeated grant gets the same page");
	is_int(pgrant_get(c, g[0], true, &owner2, &x, &px, &use), -EBUSY,
	       "still in use once mapped, until put");
	give_back(c, pg, 3);
	is_int(pgrant_get(c, g[0], true, &owner2, &x, &px, &use), 0, "released: a hit for others");
	ok(use.hit && use.maps == 0, "published entry is a plain cache hit");
	pgrant_put(c, x);
	is_int(pgrant_purge(c, 0), 2, "published entries are ordinary idle grants");

	/* One bad ref in a batch: it alone fails, the request fails, the
	 * others are good cached grants; the bad entry is freed on put. */
	uint32_t bad[4] = { g[0], g[4], 4000 /* never granted */, g[1] };
	is_int(take(c, bad, 4, true, &owner1, pg, addr, &held, &maps, &reserved) < 0, 1,
	       "a read-only and an unknown grant in a READ's batch fail it");
	is_int(reserved, 4, "all four were reserved");
	is_int(maps, 4, "every ref tried once, each with its own status");
	ok(addr[0] && !addr[1] && !addr[2] && addr[3], "good refs mapped, bad ones not");
	is_int(atomic_load(&f->maps_live), 2, "failed maps leave nothing mapped");
	is_int(pgrant_get(c, g[4], false, &owner2, &x, &px, &use), -EBUSY,
	       "a failed entry stays its request's until put");
	give_back(c, pg, held);
	is_int(pgrant_count(c), 2, "failed entries went back to the free list on put");
	is_int(pgrant_get(c, g[4], false, &owner2, &x, &px, &use), 0,
	       "the read-only grant then maps for a WRITE");
	ok(use.maps == 2 && !use.hit, "writable tried first, then read-only");
	is_str((char *)px, "page 4", "read-only mapping shows the page");
	pgrant_put(c, x);

	/* A request that fails on -EBUSY after reserving: its reservations
	 * are dropped by the puts, nothing mapped. */
	is_int(pgrant_get(c, g[1], true, &owner2, &x, &px, &use), 0, "owner2 holds g1");
	uint32_t busy[3] = { g[5], g[1], g[2] };
	is_int(take(c, busy, 3, true, &owner1, pg, addr, &held, &maps, &reserved), -EBUSY,
	       "request meets a grant in use after a miss");
	is_int(held, 1, "holding only the reservation made before");
	is_int(maps, 0, "a failing request maps nothing");
	give_back(c, pg, held);
	pgrant_put(c, x);
	is_int(pgrant_count(c), 3, "the dropped reservation is free again");
	is_int(atomic_load(&f->maps_live), 3, "only the published grants are mapped");
	pgrant_free(c);
	is_int(atomic_load(&f->maps_live), 0, "pgrant_free unmaps everything");
	fk_free(f);
}

/* Several "requests" at once on a small cache over few grants: misses
 * of two requests on one grant, eviction by purges under pressure, the
 * same grant twice per request.  Every mapping must show its own page. */
#define MT_GRANTS 24
#define MT_THREADS 4
#define MT_ROUNDS 3000

struct mt {
	struct fake_hv *f;
	struct pgrant_cache *c;
	uint32_t g[MT_GRANTS];
	atomic_uint ok, busy, full, wrong;
};

static void *mt_main(void *arg)
{
	struct mt *t = arg;
	unsigned seed = (unsigned)(uintptr_t)&seed;
	struct pgrant *pg[4];
	void *addr[4];
	uint32_t refs[4];
	unsigned held, maps, reserved;

	for (int round = 0; round < MT_ROUNDS; round++) {
		for (int i = 0; i < 4; i++)
			refs[i] = t->g[rand_r(&seed) % MT_GRANTS];
		int r = take(t->c, refs, 4, rand_r(&seed) & 1, &seed, pg, addr, &held, &maps,
			     &reserved);
		if (r == -EBUSY)
			atomic_fetch_add(&t->busy, 1);
		else if (r < 0)
			atomic_fetch_add(&t->wrong, 1); /* every grant here is good */
		else
			atomic_fetch_add(&t->ok, 1);
		for (unsigned i = 0; r == 0 && i < held; i++) {
			if (!pg[i]) {
				atomic_fetch_add(&t->full, 1);
				continue;
			}
			uint32_t want = refs[i];
			if (!addr[i] || memcmp(addr[i], &want, sizeof(want)) != 0)
				atomic_fetch_add(&t->wrong, 1);
		}
		give_back(t->c, pg, held);
		if (round % 64 == 0)
			pgrant_purge(t->c, round % 128 ? UINT64_MAX : 0);
	}
	return NULL;
}

static void test_pgrant_threads(void)
{
	struct mt t = { .f = fk_new(MT_GRANTS) };
	pthread_t th[MT_THREADS];

	t.c = pgrant_new(&t.f->hv, 7, 12);
	for (int i = 0; i < MT_GRANTS; i++) {
		t.g[i] = fk_grant(t.f, fk_alloc_frame(t.f), false);
		memcpy(fk_page(t.f, t.f->grant[t.g[i]].frame), &t.g[i], sizeof(t.g[i]));
	}
	for (int i = 0; i < MT_THREADS; i++)
		pthread_create(&th[i], NULL, mt_main, &t);
	for (int i = 0; i < MT_THREADS; i++)
		pthread_join(th[i], NULL);
	is_int(atomic_load(&t.wrong), 0, "threads: every held grant showed its own page");
	ok(atomic_load(&t.ok) > 0, "threads: requests got their grants");
	diag("threads: %u ok, %u busy (rule 16), %u segments copied (cache full)",
	     atomic_load(&t.ok), atomic_load(&t.busy), atomic_load(&t.full));
	ok(pgrant_count(t.c) <= 12, "threads: the cache stayed within its maximum");
	unsigned left = pgrant_count(t.c);
	is_int(pgrant_purge(t.c, 0), (int)left, "threads: all grants idle at the end");
	is_int(atomic_load(&t.f->maps_live), 0, "threads: nothing left mapped");
	pgrant_free(t.c);
	fk_free(t.f);
}

int main(void)
{
	log_init("t250", VLOG_ERR, false);
	test_ops();
	test_segments();
	test_readonly_discard();
	test_ring();
	test_pgrant();
	test_pgrant_batch();
	test_pgrant_threads();
	return done_testing();
}
