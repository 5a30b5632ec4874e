/*
 * Two domains' grants mapped and unmapped at once by one hv_sim (as two
 * guests' engines in one vbdfs do): when unmap returns, that grant is no
 * longer marked in use, every time.  The kernel hands a range freed by
 * munmap() straight to the next mmap(), so an unmap that looked up its
 * mapping by address after giving the range back could release the other
 * domain's grants instead of its own, and a guest ending its grants right
 * after the backend closed found them still in use.  Also: an unmap of a
 * range that is not a mapping of ours (or of another size) is refused and
 * leaves the range alone.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xen/grant_table.h>

#include "blkback/hv.h"
#include "blkback/sim/guest.h"
#include "blkback/sim/sim.h"
#include "util/log.h"
#include "util/tap.h"
#include "simtest.h"

#define PAGES 8
#define GRANTS 16
#define ROUNDS 20000
#define INUSE (GTF_reading | GTF_writing)

struct racer {
	struct hv *hv;
	struct sim_guest *g;
	uint16_t domid;
	hv_gref_t gref;
	unsigned failed_maps, still_marked;
};

static void *race(void *arg)
{
	struct racer *r = arg;

	for (int i = 0; i < ROUNDS; i++) {
		int e = 0;
		void *p = r->hv->ops->map(r->hv, r->domid, &r->gref, 1, true, &e);

		if (!p) {
			r->failed_maps++;
			continue;
		}
		r->hv->ops->unmap(r->hv, p, 1);
		if (sim_guest_grant_flags(r->g, r->gref) & INUSE)
			r->still_marked++;
	}
	return NULL;
}

int main(void)
{
	char err[256], dir[64];
	struct racer rc[2];
	pthread_t t[2];

	struct sim *sim = simtest_start(dir, sizeof(dir), "214", 7);
	struct hv *hv = hv_open_sim(dir, err, sizeof(err));
	if (!hv)
		bail_out(err);
	for (int i = 0; i < 2; i++) {
		rc[i] = (struct racer){ .hv = hv, .domid = (uint16_t)(7 + i) };
		rc[i].g = sim_guest_connect(dir, rc[i].domid, i ? "b" : "a", PAGES, GRANTS, err,
					    sizeof(err));
		if (!rc[i].g)
			bail_out(err);
		int ref = sim_guest_grant(rc[i].g, 0, 1, false);
		if (ref <= 0)
			bail_out("grant");
		rc[i].gref = (hv_gref_t)ref;
	}
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, race, &rc[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	is_int(rc[0].failed_maps + rc[1].failed_maps, 0, "every map of either domain worked");
	is_int(rc[0].still_marked, 0, "domain 7: after each unmap its grant is no longer in use");
	is_int(rc[1].still_marked, 0, "domain 8: after each unmap its grant is no longer in use");

	/* Unmaps that do not name a mapping of ours. */
	int e = 0;
	uint8_t *m = hv->ops->map(hv, rc[0].domid, &rc[0].gref, 1, true, &e);
	ok(m != NULL, "map the grant once more");
	void *mine = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	is_int(hv->ops->unmap(hv, mine, 1), -EINVAL, "unmap of a range hv did not map: -EINVAL");
	((volatile char *)mine)[0] = 1; /* and the range is still there */
	is_int(hv->ops->unmap(hv, m, 2), -EINVAL, "unmap of a mapping with the wrong size: -EINVAL");
	is_int(hv->ops->unmap(hv, m, 1), 0, "the right unmap still works");
	munmap(mine, 4096);

	hv_close(hv);
	for (int i = 0; i < 2; i++)
		sim_guest_disconnect(rc[i].g);
	return simtest_end(sim, dir);
}
