/*
 * 460-hv-xen: the real-Xen transport (blkback/hv_xen.c).
 *
 * Off Xen (no /dev/xen/evtchn): hv_open_xen fails with a message that
 * names the missing device, and nothing crashes.
 *
 * In a Xen dom0 (the xenlab runs this binary there, see t/xen/): dom0
 * plays both sides.  It grants its own pages to itself through gntalloc
 * (xengntshr) and opens an unbound event channel port for itself, then
 * drives every hv op against them: grant copy both ways, batched map and
 * unmap, read-only maps, bind/notify/ack, and the errors for bad grant
 * references, bad ports and malformed segments.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <xenevtchn.h>
#include <xengnttab.h>

#include "blkback/hv.h"
#include "util/tap.h"

#define NPAGES 4
#define BOGUS_GREF 0x7ffffff0u

static void test_no_xen(void)
{
	char err[256] = "";
	struct hv *hv;

	plan(2);
	hv = hv_open_xen(err, sizeof(err));
	ok(hv == NULL, "hv_open_xen fails without /dev/xen");
	ok(strstr(err, "/dev/xen/evtchn") != NULL, "the message names /dev/xen/evtchn");
	diag("message: %s", err);
}

static void test_grant_copy(struct hv *hv, uint8_t *shared, const uint32_t *refs)
{
	uint8_t buf[HV_PAGE_SIZE], back[HV_PAGE_SIZE];
	struct hv_copy_seg seg[3];
	unsigned i;
	int rc;

	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7 + 3);
	/* to the guest: a whole page and a sub-page piece */
	memset(seg, 0, sizeof(seg));
	seg[0] = (struct hv_copy_seg){ .gref = refs[0], .offset = 0, .len = HV_PAGE_SIZE,
				       .local = buf, .to_guest = true };
	seg[1] = (struct hv_copy_seg){ .gref = refs[1], .offset = 512, .len = 1024,
				       .local = buf + 100, .to_guest = true };
	rc = hv->ops->grant_copy(hv, 0, seg, 2);
	is_int(rc, 0, "grant copy to granted pages succeeds");
	ok(seg[0].status == 0 && seg[1].status == 0, "both segment statuses are 0");
	ok(memcmp(shared, buf, HV_PAGE_SIZE) == 0, "page 0 holds the copied data");
	ok(memcmp(shared + HV_PAGE_SIZE + 512, buf + 100, 1024) == 0,
	   "page 1 holds the sub-page copy at its offset");

	/* from the guest */
	memset(back, 0, sizeof(back));
	seg[0] = (struct hv_copy_seg){ .gref = refs[0], .offset = 0, .len = HV_PAGE_SIZE,
				       .local = back, .to_guest = false };
	rc = hv->ops->grant_copy(hv, 0, seg, 1);
	ok(rc == 0 && memcmp(back, buf, sizeof(back)) == 0, "grant copy from a granted page");

	/* one bad segment among good ones: only it fails */
	seg[0] = (struct hv_copy_seg){ .gref = refs[2], .offset = 0, .len = 512, .local = back,
				       .to_guest = false };
	seg[1] = (struct hv_copy_seg){ .gref = BOGUS_GREF, .offset = 0, .len = 512, .local = back,
				       .to_guest = false };
	seg[2] = (struct hv_copy_seg){ .gref = refs[3], .offset = 3584, .len = 1024, .local = back,
				       .to_guest = false };
	rc = hv->ops->grant_copy(hv, 0, seg, 3);
	is_int(rc, -EIO, "a batch with bad segments reports -EIO");
	is_int(seg[0].status, 0, "the good segment succeeded");
	ok(seg[1].status < 0, "the bad grant reference failed its segment");
	is_int(seg[2].status, -EINVAL, "a segment crossing its page is refused");

	/* unknown domain */
	seg[0] = (struct hv_copy_seg){ .gref = refs[0], .offset = 0, .len = 512, .local = back,
				       .to_guest = false };
	rc = hv->ops->grant_copy(hv, 31000, seg, 1);
	ok(rc == -EIO && seg[0].status < 0, "grant copy from a missing domain fails");

	/* many segments: more than one kernel batch */
	{
		static struct hv_copy_seg many[300];
		static uint8_t dst[300][16];
		unsigned bad = 0;

		for (i = 0; i < 300; i++)
			many[i] = (struct hv_copy_seg){ .gref = refs[i % NPAGES],
							.offset = (uint16_t)((i * 16) % HV_PAGE_SIZE),
							.len = 16, .local = dst[i], .to_guest = false };
		rc = hv->ops->grant_copy(hv, 0, many, 300);
		for (i = 0; i < 300; i++)
			if (many[i].status != 0 ||
			    memcmp(dst[i], shared + (i % NPAGES) * HV_PAGE_SIZE + (i * 16) % HV_PAGE_SIZE,
				   16) != 0)
				bad++;
		ok(rc == 0 && bad == 0, "300-segment grant copy (several batches) is exact");
	}
}

static void test_map(struct hv *hv, uint8_t *shared, const uint32_t *refs)
{
	hv_gref_t r[NPAGES], bad[2];
	uint8_t *m;
	int err = 0;
	unsigned i;

	for (i = 0; i < NPAGES; i++)
		r[i] = refs[i];
	m = hv->ops->map(hv, 0, r, NPAGES, true, &err);
	ok(m != NULL, "batched map of 4 grants");
	if (m) {
		ok(memcmp(m, shared, NPAGES * HV_PAGE_SIZE) == 0, "the mapping shows the granted pages");
		m[3 * HV_PAGE_SIZE + 5] = 0xa5;
		ok(shared[3 * HV_PAGE_SIZE + 5] == 0xa5, "writes through the mapping reach the page");
		is_int(hv->ops->unmap(hv, m, NPAGES), 0, "unmap");
	} else {
		diag("map failed: %s", strerror(-err));
		skip(2, "no mapping");
		ok(0, "unmap");
	}
	m = hv->ops->map(hv, 0, r, 1, false, &err);
	ok(m != NULL && m[0] == shared[0], "read-only map");
	if (m)
		hv->ops->unmap(hv, m, 1);

	bad[0] = r[0];
	bad[1] = BOGUS_GREF;
	err = 0;
	m = hv->ops->map(hv, 0, bad, 2, true, &err);
	ok(m == NULL && err < 0, "map with one bad grant reference fails as a whole");
	if (m)
		hv->ops->unmap(hv, m, 2);
	/* the good grant is usable again: nothing stayed mapped */
	m = hv->ops->map(hv, 0, r, 1, true, &err);
	ok(m != NULL, "the good grant maps again after the failed batch");
	if (m)
		hv->ops->unmap(hv, m, 1);
	m = hv->ops->map(hv, 0, r, 0, true, &err);
	ok(m == NULL && err == -EINVAL, "map of zero grants is refused");
	is_int(hv->ops->unmap(hv, NULL, 1), -EINVAL, "unmap of NULL is refused");
}

static int wait_readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

static void test_evtchn_errors(struct hv *hv);

static void test_evtchn(struct hv *hv)
{
	xenevtchn_handle *other = xenevtchn_open(NULL, 0);
	struct hv_evtchn *ch;
	int err = 0, port, fd, local;

	ok(other != NULL, "second evtchn handle for the other side");
	if (!other) {
		skip(10, "no evtchn handle");
		return;
	}
	port = xenevtchn_bind_unbound_port(other, 0);
	ok(port > 0, "unbound port for dom0");
	ch = hv->ops->evtchn_bind(hv, 0, (uint32_t)port, &err);
	ok(ch != NULL, "evtchn_bind to it");
	if (!ch) {
		diag("bind: %s", strerror(-err));
		skip(6, "not bound");
		xenevtchn_close(other);
		test_evtchn_errors(hv);
		return;
	}
	fd = hv->ops->evtchn_fd(ch);
	/* Xen raises the local port when it binds an interdomain channel
	 * (so nothing sent before the bind is lost): one ack may find it. */
	hv->ops->evtchn_ack(ch);
	is_int(hv->ops->evtchn_ack(ch), 0, "nothing pending after the bind's own event is acked");
	xenevtchn_notify(other, (evtchn_port_t)port);
	ok(wait_readable(fd, 5000), "the channel's fd becomes readable on a notification");
	is_int(hv->ops->evtchn_ack(ch), 1, "ack consumes it");
	/* re-armed: a second notification is delivered again */
	xenevtchn_notify(other, (evtchn_port_t)port);
	ok(wait_readable(fd, 5000) && hv->ops->evtchn_ack(ch) == 1, "re-armed after ack");
	/* our notify reaches the other side */
	is_int(hv->ops->evtchn_notify(ch), 0, "evtchn_notify");
	local = xenevtchn_pending(other);
	ok(local == port, "the other side received it");
	if (local >= 0)
		xenevtchn_unmask(other, (evtchn_port_t)local);
	hv->ops->evtchn_unbind(ch);
	xenevtchn_close(other);
	test_evtchn_errors(hv);
}

static void test_evtchn_errors(struct hv *hv)
{
	struct hv_evtchn *ch;
	int err = 0;

	ch = hv->ops->evtchn_bind(hv, 0, 0x7ffffff, &err);
	ok(ch == NULL && err < 0, "binding a bad port fails with an error");
	if (ch)
		hv->ops->evtchn_unbind(ch);
	ch = hv->ops->evtchn_bind(hv, 31000, 1, &err);
	ok(ch == NULL && err < 0, "binding to a missing domain fails with an error");
	if (ch)
		hv->ops->evtchn_unbind(ch);
}

static void test_xen(void)
{
	char err[256] = "";
	struct hv *hv = hv_open_xen(err, sizeof(err));
	xengntshr_handle *gs;
	uint32_t refs[NPAGES];
	uint8_t *shared;
	unsigned i;

	plan(35);
	ok(hv != NULL, "hv_open_xen in a Xen domain");
	if (!hv) {
		bail_out(err);
		return;
	}
	is_str(hv->ops->name, "xen", "transport name");
	gs = xengntshr_open(NULL, 0);
	ok(gs != NULL, "gntalloc opened (dom0 grants pages to itself)");
	if (!gs) {
		bail_out("no /dev/xen/gntalloc");
		return;
	}
	shared = xengntshr_share_pages(gs, 0, NPAGES, refs, 1);
	ok(shared != NULL, "4 pages granted to dom0");
	if (!shared) {
		bail_out("xengntshr_share_pages failed");
		return;
	}
	for (i = 0; i < NPAGES * HV_PAGE_SIZE; i++)
		shared[i] = (uint8_t)(i ^ (i >> 8));
	test_grant_copy(hv, shared, refs);
	test_map(hv, shared, refs);
	test_evtchn(hv);
	xengntshr_unshare(gs, shared, NPAGES);
	xengntshr_close(gs);
	hv_close(hv);
}

int main(void)
{
	if (access("/dev/xen/evtchn", F_OK) != 0)
		test_no_xen();
	else
		test_xen();
	return done_testing();
}
