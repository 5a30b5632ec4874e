/*
 * handshake.c - the frontend side of the XenBus handshake, as Linux 6.1
 * xen-blkfront does it (see /work/shared/research/blkif-anchors.md s.2):
 *
 *   wait for backend InitWait (2); read max-ring-page-order and
 *   multi-queue-max-queues; grant the rings and allocate the event
 *   channels; in ONE transaction write ring-page-order (if > 0), ring-ref
 *   or ring-refN, event-channel (or multi-queue-num-queues + queue-N/...),
 *   protocol and feature-persistent; switch to Initialised (3); wait for
 *   backend Connected (4); read sectors, info, sector-size,
 *   physical-sector-size and the feature-* keys; switch to Connected (4).
 *
 * Closing is blkfront's: Closing (5), wait for the backend to leave
 * Connected, Closed (6), wait for backend Closed, then release grants.
 */
#include "dev.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stdarg.h>

#include <xenstore.h>
#include <xen/io/xenbus.h>

#include "blkback/sim/guest.h"
#include "util/log.h"

static char *xs_get(struct xs_handle *xs, const char *dir, const char *key)
{
	char path[256];
	unsigned len;

	snprintf(path, sizeof(path), "%s/%s", dir, key);
	return xs_read(xs, XBT_NULL, path, &len);
}

/* An unsigned key, or def if absent or not a number. */
static uint64_t xs_get_u64(struct xs_handle *xs, const char *dir, const char *key, uint64_t def)
{
	char *v = xs_get(xs, dir, key), *end;
	unsigned long long n;

	if (!v)
		return def;
	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno || end == v || *end || v[0] == '-')
		n = def;
	free(v);
	return n;
}

static bool dir_exists(struct xs_handle *xs, const char *dir)
{
	unsigned n;
	char **ents = xs_directory(xs, XBT_NULL, dir, &n);

	free(ents);
	return ents != NULL;
}

int vf_read_state(struct xs_handle *xs, const char *dir)
{
	return (int)xs_get_u64(xs, dir, "state", (uint64_t)-1);
}

static int set_state(struct xs_handle *xs, const char *dir, int state)
{
	char path[256], val[8];

	snprintf(path, sizeof(path), "%s/state", dir);
	snprintf(val, sizeof(val), "%d", state);
	return xs_write(xs, XBT_NULL, path, val, (unsigned)strlen(val)) ? 0 : -errno;
}

int vf_wait_state(struct xs_handle *xs, const char *dir, unsigned want_mask, uint64_t timeout_ns,
		  bool interruptible)
{
	char path[256], token[64];
	uint64_t deadline = now_ns() + timeout_ns;
	int st;

	snprintf(path, sizeof(path), "%s/state", dir);
	snprintf(token, sizeof(token), "vf-state-%p", (void *)dir);
	xs_watch(xs, path, token);
	for (;;) {
		uint64_t now;
		struct pollfd pfd = { .fd = xs_fileno(xs), .events = POLLIN };
		char **ev;

		st = vf_read_state(xs, dir);
		if (st < 0 && (want_mask & VF_STATE_GONE))
			break;
		if (st >= 0 && st < 31 && (want_mask & (1u << st)))
			break;
		now = now_ns();
		if (now >= deadline || (interruptible && atomic_load(&vf_stop)))
			break;
		/* Watch events only wake us; the state is re-read above.  A
		 * 100 ms cap keeps us going should a watch be lost. */
		uint64_t left = (deadline - now) / 1000000 + 1;
		poll(&pfd, 1, left > 100 ? 100 : (int)left);
		while ((ev = xs_check_watch(xs)))
			free(ev);
	}
	xs_unwatch(xs, path, token);
	return st;
}

int vf_dev_probe(struct xs_handle *xs, struct vf_dev *d, uint16_t domid, const char *devname)
{
	char *be, *vdev;
	char *end;

	d->devid = (uint32_t)strtoul(devname, &end, 10);
	snprintf(d->fe, sizeof(d->fe), "/local/domain/%u/device/vbd/%s", domid, devname);
	be = xs_get(xs, d->fe, "backend");
	if (!be) {
		snprintf(d->error, sizeof(d->error), "%s/backend: %s", d->fe, strerror(errno));
		return -1;
	}
	snprintf(d->be, sizeof(d->be), "%s", be);
	free(be);
	d->be_domid = (uint16_t)xs_get_u64(xs, d->fe, "backend-id", 0);
	vdev = xs_get(xs, d->be, "dev");
	snprintf(d->vdev, sizeof(d->vdev), "%s", vdev ? vdev : "");
	free(vdev);
	return 0;
}

/* Grant the ring pages and allocate the event channel of queue q. */
int vf_queue_ring_up(struct vf_dev *d, struct vf_queue *q)
{
	unsigned pages = 1u << d->ring_order;
	int r;

	r = vf_mem_alloc(d->mem, pages, &q->ring_frame);
	if (r) {
		snprintf(d->error, sizeof(d->error), "guest memory exhausted (use --mem)");
		return r;
	}
	for (unsigned i = 1; i < pages; i++)
		if ((char *)vf_mem_page(d->mem, q->ring_frame + i) !=
		    (char *)vf_mem_page(d->mem, q->ring_frame) + i * VF_PAGE) {
			snprintf(d->error, sizeof(d->error), "guest frames are not contiguous in memory");
			return -EINVAL;
		}
	vf_ring_init(&q->ring, vf_mem_page(d->mem, q->ring_frame), pages, d->abi);
	for (unsigned i = 0; i < pages; i++) {
		r = vf_grant(d->mem, d->be_domid, q->ring_frame + i, false);
		if (r < 0) {
			snprintf(d->error, sizeof(d->error), "grant of ring page: %s", strerror(-r));
			return r;
		}
		q->ring_ref[i] = (grant_ref_t)r;
	}
	q->port = sim_guest_evtchn_alloc(vf_mem_guest(d->mem), d->be_domid);
	if (q->port < 0) {
		snprintf(d->error, sizeof(d->error), "event channel: %s", strerror(-q->port));
		return q->port;
	}
	q->evfd = sim_guest_evtchn_fd(vf_mem_guest(d->mem), (uint32_t)q->port);
	return 0;
}

void vf_end_or_leak(struct vf_dev *d, uint32_t gref, const char *what)
{
	int r = vf_end_grant(d->mem, gref);

	if (r == 0)
		return;
	atomic_fetch_add(&d->stats.grant_leaks, 1);
	log_warn("%s: %s grant %u cannot be ended: %s (flags %#x)", d->be, what, gref,
		 r == -EBUSY ? "the backend still has it mapped" : strerror(-r),
		 (unsigned)sim_guest_grant_flags(vf_mem_guest(d->mem), gref));
}

void vf_queue_ring_down(struct vf_dev *d, struct vf_queue *q)
{
	unsigned pages = 1u << d->ring_order;

	for (unsigned i = 0; i < pages; i++)
		if (q->ring_ref[i])
			vf_end_or_leak(d, q->ring_ref[i], "ring");
	memset(q->ring_ref, 0, sizeof(q->ring_ref));
	if (q->ring_frame)
		vf_mem_release(d->mem, q->ring_frame, pages);
	q->ring_frame = 0;
	if (q->port > 0)
		sim_guest_evtchn_close(vf_mem_guest(d->mem), (uint32_t)q->port);
	q->port = -1;
	q->evfd = -1;
}

static bool txn_write(struct xs_handle *xs, xs_transaction_t t, const char *dir, const char *key,
		      const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static bool txn_write(struct xs_handle *xs, xs_transaction_t t, const char *dir, const char *key,
		      const char *fmt, ...)
{
	char path[256], val[64];
	va_list ap;

	snprintf(path, sizeof(path), "%s/%s", dir, key);
	va_start(ap, fmt);
	vsnprintf(val, sizeof(val), fmt, ap);
	va_end(ap);
	return xs_write(xs, t, path, val, (unsigned)strlen(val));
}

/* The ring keys of one queue under dir (the device dir or queue-N). */
static bool write_queue_keys(struct xs_handle *xs, xs_transaction_t t, struct vf_dev *d,
			     struct vf_queue *q, const char *dir)
{
	unsigned pages = 1u << d->ring_order;
	bool ok = true;

	if (pages == 1) {
		ok &= txn_write(xs, t, dir, "ring-ref", "%u", q->ring_ref[0]);
	} else {
		for (unsigned i = 0; i < pages; i++) {
			char key[24];

			snprintf(key, sizeof(key), "ring-ref%u", i);
			ok &= txn_write(xs, t, dir, key, "%u", q->ring_ref[i]);
		}
	}
	ok &= txn_write(xs, t, dir, "event-channel", "%d", q->port);
	return ok;
}

/* Remove keys an earlier connection (maybe with other parameters) left. */
static void remove_stale_keys(struct xs_handle *xs, xs_transaction_t t, struct vf_dev *d)
{
	static const char *const keys[] = { "ring-ref", "event-channel", "ring-page-order",
					    "multi-queue-num-queues", "num-ring-pages" };
	char path[256];
	unsigned n = 0;
	char **ents = xs_directory(xs, t, d->fe, &n);

	for (unsigned i = 0; ents && i < n; i++)
		if (strncmp(ents[i], "ring-ref", 8) == 0 || strncmp(ents[i], "queue-", 6) == 0) {
			snprintf(path, sizeof(path), "%s/%s", d->fe, ents[i]);
			xs_rm(xs, t, path);
		}
	free(ents);
	for (unsigned i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", d->fe, keys[i]);
		xs_rm(xs, t, path);
	}
}

static int write_frontend_keys(struct xs_handle *xs, struct vf_dev *d)
{
	for (int attempt = 0; attempt < 20; attempt++) {
		xs_transaction_t t = xs_transaction_start(xs);
		bool ok = true;

		if (t == XBT_NULL) {
			snprintf(d->error, sizeof(d->error), "transaction start: %s", strerror(errno));
			return -1;
		}
		remove_stale_keys(xs, t, d);
		if (d->ring_order > 0)
			ok &= txn_write(xs, t, d->fe, "ring-page-order", "%u", d->ring_order);
		if (d->nr_queues == 1) {
			ok &= write_queue_keys(xs, t, d, &d->queue[0], d->fe);
		} else {
			ok &= txn_write(xs, t, d->fe, "multi-queue-num-queues", "%u", d->nr_queues);
			for (unsigned i = 0; i < d->nr_queues; i++) {
				char dir[160];

				snprintf(dir, sizeof(dir), "%s/queue-%u", d->fe, i);
				ok &= write_queue_keys(xs, t, d, &d->queue[i], dir);
			}
		}
		ok &= txn_write(xs, t, d->fe, "protocol", "%s", blkif_abi_name(d->abi));
		ok &= txn_write(xs, t, d->fe, "feature-persistent", "%u", d->opts->persistent ? 1 : 0);
		if (!ok) {
			int e = errno;

			xs_transaction_end(xs, t, true);
			snprintf(d->error, sizeof(d->error), "writing %s: %s", d->fe, strerror(e));
			return -1;
		}
		if (xs_transaction_end(xs, t, false))
			return 0;
		if (errno != EAGAIN) {
			snprintf(d->error, sizeof(d->error), "transaction end: %s", strerror(errno));
			return -1;
		}
	}
	snprintf(d->error, sizeof(d->error), "transaction kept conflicting (EAGAIN)");
	return -1;
}

/* Negotiate from the backend's limits and our options (Linux 6.1 rules). */
static void negotiate_rings(struct xs_handle *xs, struct vf_dev *d)
{
	const struct vf_opts *o = d->opts;

	d->be_max_order = (unsigned)xs_get_u64(xs, d->be, "max-ring-page-order", 0);
	d->be_max_queues = (unsigned)xs_get_u64(xs, d->be, "multi-queue-max-queues", 1);
	d->ring_order = o->ring_order < d->be_max_order ? o->ring_order : d->be_max_order;
	if (d->ring_order > 4)
		d->ring_order = 4; /* our ring_ref[] and Linux's XENBUS_MAX_RING_GRANT_ORDER */
	d->nr_queues = o->queues < d->be_max_queues ? o->queues : d->be_max_queues;
	if (d->nr_queues < 1)
		d->nr_queues = 1;
	if (d->nr_queues > 16)
		d->nr_queues = 16;
	d->abi = o->abi;
}

/* After the backend is Connected: what it offers (blkfront_gather_backend_features). */
static int read_backend_facts(struct xs_handle *xs, struct vf_dev *d)
{
	const struct vf_opts *o = d->opts;
	unsigned ind;

	d->sectors = xs_get_u64(xs, d->be, "sectors", 0);
	d->info = (unsigned)xs_get_u64(xs, d->be, "info", 0);
	d->sector_size = (unsigned)xs_get_u64(xs, d->be, "sector-size", 512);
	d->phys_sector_size = (unsigned)xs_get_u64(xs, d->be, "physical-sector-size", d->sector_size);
	d->barrier = xs_get_u64(xs, d->be, "feature-barrier", 0) != 0;
	d->flush = xs_get_u64(xs, d->be, "feature-flush-cache", 0) != 0;
	d->flush_op = d->flush ? BLKIF_OP_FLUSH_DISKCACHE : BLKIF_OP_WRITE_BARRIER;
	d->discard = xs_get_u64(xs, d->be, "feature-discard", 0) != 0;
	d->discard_gran = (uint32_t)xs_get_u64(xs, d->be, "discard-granularity", d->sector_size);
	d->discard_align = (uint32_t)xs_get_u64(xs, d->be, "discard-alignment", 0);
	d->discard_secure = xs_get_u64(xs, d->be, "discard-secure", 0) != 0;
	d->be_persistent = xs_get_u64(xs, d->be, "feature-persistent", 0) != 0;
	d->persistent = o->persistent && d->be_persistent;
	d->be_max_indirect = (unsigned)xs_get_u64(xs, d->be, "feature-max-indirect-segments", 0);
	ind = o->indirect < d->be_max_indirect ? o->indirect : d->be_max_indirect;
	if (ind > BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST * BLKIF_SEGS_PER_INDIRECT_PAGE)
		ind = BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST * BLKIF_SEGS_PER_INDIRECT_PAGE;
	/* Linux: no INDIRECT unless it carries more than a direct request. */
	d->indirect = ind > BLKIF_MAX_SEGMENTS_PER_REQUEST ? ind : 0;
	d->max_segs = d->indirect ? d->indirect : BLKIF_MAX_SEGMENTS_PER_REQUEST;
	if (d->sector_size < 512 || (d->sector_size & (d->sector_size - 1)) || d->sector_size > 65536) {
		snprintf(d->error, sizeof(d->error), "backend sector-size %u is not a power of two >= 512",
			 d->sector_size);
		return -1;
	}
	if (d->discard_gran < d->sector_size || d->discard_gran % d->sector_size)
		d->discard_gran = d->sector_size;
	return 0;
}

int vf_dev_connect(struct xs_handle *xs, struct vf_dev *d)
{
	uint64_t to = d->opts->timeout_ns;
	int st;

	d->error[0] = 0;
	st = vf_read_state(xs, d->fe);
	if (st != XenbusStateInitialising && st != XenbusStateClosed && st != XenbusStateUnknown)
		log_warn("%s: frontend state is %d at connect", d->fe, st);
	if (st != XenbusStateInitialising)
		set_state(xs, d->fe, XenbusStateInitialising);
	st = vf_wait_state(xs, d->be, 1u << XenbusStateInitWait, to, true);
	if (st != XenbusStateInitWait) {
		snprintf(d->error, sizeof(d->error), "backend %s did not reach InitWait (state %d)", d->be, st);
		return -1;
	}
	negotiate_rings(xs, d);
	for (unsigned i = 0; i < d->nr_queues; i++) {
		struct vf_queue *q = &d->queue[i];

		q->dev = d;
		q->index = i;
		q->broken = false;
		q->why[0] = 0;
		if (vf_queue_ring_up(d, q))
			goto fail;
	}
	if (write_frontend_keys(xs, d))
		goto fail;
	set_state(xs, d->fe, XenbusStateInitialised);
	st = vf_wait_state(xs, d->be, 1u << XenbusStateConnected | 1u << XenbusStateClosing |
					      1u << XenbusStateClosed, to, true);
	if (st != XenbusStateConnected) {
		snprintf(d->error, sizeof(d->error), "backend %s did not connect (state %d)", d->be, st);
		goto fail;
	}
	if (read_backend_facts(xs, d))
		goto fail;
	for (unsigned i = 0; i < d->nr_queues; i++)
		if (vf_queue_setup(&d->queue[i])) {
			snprintf(d->error, sizeof(d->error), "guest memory exhausted (use --mem)");
			goto fail;
		}
	atomic_store(&d->backend_gone, false);
	set_state(xs, d->fe, XenbusStateConnected);
	d->connected = true;
	return 0;
fail:
	for (unsigned i = 0; i < d->nr_queues; i++) {
		vf_queue_teardown(&d->queue[i]);
		vf_queue_ring_down(d, &d->queue[i]);
	}
	set_state(xs, d->fe, XenbusStateClosed);
	return -1;
}

void vf_dev_close(struct xs_handle *xs, struct vf_dev *d)
{
	/* Like xenbus_dev_shutdown(): give the backend a few seconds. */
	uint64_t to = d->opts->timeout_ns < 5000000000ull ? d->opts->timeout_ns : 5000000000ull;
	int st;

	if (!dir_exists(xs, d->fe)) {
		/* The toolstack removed the device: nothing to say, and writing
		 * state would re-create the frontend directory. */
		goto teardown;
	}
	set_state(xs, d->fe, XenbusStateClosing);
	st = vf_wait_state(xs, d->be, 1u << XenbusStateClosing | 1u << XenbusStateClosed | VF_STATE_GONE,
			   to, false);
	if (st != XenbusStateClosing && st != XenbusStateClosed && st >= 0)
		log_warn("%s: backend did not start closing (state %d)", d->be, st);
	set_state(xs, d->fe, XenbusStateClosed);
	st = vf_wait_state(xs, d->be, 1u << XenbusStateClosed | 1u << XenbusStateInitWait | VF_STATE_GONE,
			   to, false);
	if (st != XenbusStateClosed && st != XenbusStateInitWait && st >= 0)
		log_warn("%s: backend did not close (state %d)", d->be, st);
teardown:
	/* Only now is the backend done with the rings and data pages. */
	for (unsigned i = 0; i < d->nr_queues; i++) {
		vf_queue_teardown(&d->queue[i]);
		vf_queue_ring_down(d, &d->queue[i]);
	}
	vf_evil_release(d);
	d->connected = false;
}
