/*
 * Grants in use, as on Xen: while the backend (hv_sim) maps a grant the
 * guest's entry shows GTF_reading (and GTF_writing for a writable map) and
 * the guest cannot end it (-EBUSY); the last unmap clears the bits and the
 * grant can be ended.  A map that fails part-way leaves no grant marked.
 * Refs come from a free list: every ref can be granted, an ended one is
 * granted again.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xen/grant_table.h>

#include "blkback/hv.h"
#include "blkback/sim/guest.h"
#include "blkback/sim/sim.h"
#include "util/log.h"
#include "util/tap.h"
#include "simtest.h"

#define DOMID 7
#define PAGES 8
#define GRANTS 16
#define INUSE (GTF_reading | GTF_writing)

static int inuse(struct sim_guest *g, int gref)
{
	return sim_guest_grant_flags(g, (uint32_t)gref) & INUSE;
}

int main(void)
{
	char err[256], dir[64];
	struct sim *sim = simtest_start(dir, sizeof(dir), "213", 27);
	struct sim_guest *g = sim_guest_connect(dir, DOMID, "inuse", PAGES, GRANTS, err, sizeof(err));
	if (!g)
		bail_out(err);
	struct hv *hv = hv_open_sim(dir, err, sizeof(err));
	if (!hv)
		bail_out(err);
	memset(sim_guest_page(g, 1), 0x41, 4096);
	int rw = sim_guest_grant(g, 0, 1, false);
	int ro = sim_guest_grant(g, 0, 2, true);
	int other = sim_guest_grant(g, 0, 3, false);
	ok(rw > 0 && ro > 0 && other > 0, "guest granted three pages");
	is_int(inuse(g, rw), 0, "a fresh grant is not in use");

	/* A writable map: reading and writing. */
	hv_gref_t r1[1] = { (hv_gref_t)rw };
	int e = 0;
	uint8_t *w = hv->ops->map(hv, DOMID, r1, 1, true, &e);
	ok(w && w[0] == 0x41, "backend maps the grant writable");
	is_int(inuse(g, rw), INUSE, "entry shows GTF_reading|GTF_writing");
	is_int(sim_guest_end_grant(g, (uint32_t)rw), -EBUSY, "guest cannot end it: -EBUSY");
	is_int(sim_guest_grant_flags(g, (uint32_t)rw) & GTF_type_mask, GTF_permit_access,
	       "the refused end left the grant valid");
	/* A second, read-only map of the same grant: counted. */
	uint8_t *r = hv->ops->map(hv, DOMID, r1, 1, false, &e);
	ok(r && r[0] == 0x41, "mapped a second time, read-only");
	is_int(hv->ops->unmap(hv, w, 1), 0, "unmap the writable mapping");
	is_int(inuse(g, rw), GTF_reading, "GTF_writing cleared, GTF_reading kept for the other map");
	is_int(sim_guest_end_grant(g, (uint32_t)rw), -EBUSY, "still mapped: -EBUSY");
	is_int(hv->ops->unmap(hv, r, 1), 0, "unmap the last mapping");
	is_int(inuse(g, rw), 0, "the last unmap clears the bits");
	is_int(sim_guest_end_grant(g, (uint32_t)rw), 0, "now the guest ends it");
	is_int(sim_guest_end_grant(g, (uint32_t)rw), -EINVAL, "ending it twice: -EINVAL");
	hv_gref_t c[1] = { (hv_gref_t)rw };
	ok(hv->ops->map(hv, DOMID, c, 1, false, &e) == NULL && e == EPERM,
	   "an ended grant cannot be mapped");

	/* A read-only grant mapped read-only: only GTF_reading. */
	hv_gref_t r2[1] = { (hv_gref_t)ro };
	r = hv->ops->map(hv, DOMID, r2, 1, false, &e);
	ok(r != NULL, "read-only grant mapped read-only");
	is_int(inuse(g, ro), GTF_reading, "entry shows only GTF_reading");
	is_int(sim_guest_end_grant(g, (uint32_t)ro), -EBUSY, "guest cannot end it");
	if (r)
		hv->ops->unmap(hv, r, 1);
	is_int(sim_guest_end_grant(g, (uint32_t)ro), 0, "after unmap it ends");

	/* A map failing part-way releases what it had marked. */
	sim_guest_set_grant_raw(g, GRANTS - 1, GTF_permit_access, 0, 1000); /* frame out of range */
	hv_gref_t bad[2] = { (hv_gref_t)other, GRANTS - 1 };
	ok(hv->ops->map(hv, DOMID, bad, 2, true, &e) == NULL && e == EINVAL,
	   "a map with a bad second grant fails");
	is_int(inuse(g, other), 0, "and leaves the good first grant unmarked");
	is_int(sim_guest_end_grant(g, (uint32_t)other), 0, "which the guest can end");
	sim_guest_set_grant_raw(g, GRANTS - 1, 0, 0, 0);

	/* A guest clearing the bits itself only hurts itself; the backend's
	 * count still decides, and unmapping stays harmless. */
	int x = sim_guest_grant(g, 0, 4, false);
	hv_gref_t r3[1] = { (hv_gref_t)x };
	w = hv->ops->map(hv, DOMID, r3, 1, true, &e);
	sim_guest_set_grant_raw(g, (uint32_t)x, GTF_permit_access, 0, 4);
	is_int(sim_guest_end_grant(g, (uint32_t)x), 0, "a guest that cleared the bits can end the grant");
	ok(w && hv->ops->unmap(hv, w, 1) == 0, "the backend's unmap is still fine");

	/* The free list: every ref 1..GRANTS-1 can be granted, then ENOSPC;
	 * an ended ref comes back. */
	int n = 0, last = 0;
	for (int i = 0; i < GRANTS; i++) {
		int ref = sim_guest_grant(g, 0, 5, false);
		if (ref < 0)
			break;
		last = ref;
		n++;
	}
	is_int(n, GRANTS - 1, "every ref 1..GRANTS-1 was granted once");
	is_int(sim_guest_grant(g, 0, 5, false), -ENOSPC, "then the table is full");
	sim_guest_end_grant(g, (uint32_t)last);
	is_int(sim_guest_grant(g, 0, 5, false), last, "an ended ref is granted again");

	hv_close(hv);
	sim_guest_disconnect(g);
	return simtest_end(sim, dir);
}
