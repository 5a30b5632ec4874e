/*
 * hvprobe - prove blkback/hv_xen.c against a real Linux xen-blkfront.
 *
 * A deliberately small, single-threaded blkif backend for ONE device, built
 * only from the project's transport (hv.h: map, grant copy, event channels)
 * and ABI helpers (abi.h), with libxenstore for the control plane.  It is a
 * lab tool, not the product (that is blkback/engine.c + xenbus.c): it serves
 * READ, WRITE and FLUSH from a raw image file and counts what it did.
 *
 * usage: hvprobe [options] BACKEND_ROOT IMAGE
 *   BACKEND_ROOT  e.g. /local/domain/0/backend/vbd: serve the first device
 *                 that appears there in state 1 with online=1
 *   --ring-order N  advertise max-ring-page-order=N (default 0: not written)
 *   --map           move data by mapping each segment's grant (the
 *                   persistent-grant path of hv.h) instead of grant copy
 *   --wait S        seconds to wait for the device (default 60)
 * Runs until the frontend or the toolstack closes the device, then prints
 * one line "hvprobe: served reads=.. writes=.. flushes=.. errors=.." and
 * exits 0 if nothing failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xenstore.h>

#include "blkback/abi.h"
#include "blkback/hv.h"

#define MAX_RING_PAGES 16

static struct xs_handle *xs;

struct dev {
	char be[512], fe[256];
	uint16_t domid;
	enum blkif_abi abi;
	unsigned ring_pages;
	hv_gref_t ring_ref[MAX_RING_PAGES];
	uint32_t evtchn;
	void *sring;
	unsigned slots;
	uint32_t req_cons, rsp_prod_pvt;
	struct hv_evtchn *ch;
	int img_fd;
	uint64_t sectors;
	bool use_map;
	unsigned long reads, writes, flushes, other, errors, notifies;
};

static char *xs_get(const char *dir, const char *key)
{
	char path[1024];
	unsigned int len;

	snprintf(path, sizeof(path), "%s/%s", dir, key);
	return xs_read(xs, XBT_NULL, path, &len);
}

static int xs_put(const char *dir, const char *key, const char *fmt, ...)
{
	char path[1024], val[128];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(val, sizeof(val), fmt, ap);
	va_end(ap);
	snprintf(path, sizeof(path), "%s/%s", dir, key);
	return xs_write(xs, XBT_NULL, path, val, strlen(val)) ? 0 : -1;
}

static long xs_get_long(const char *dir, const char *key, long def)
{
	char *v = xs_get(dir, key);
	long r = def;

	if (v) {
		char *end;
		long x = strtol(v, &end, 10);
		if (end != v && *end == '\0')
			r = x;
		free(v);
	}
	return r;
}

/* First device under root (root/<domid>/<devid>) in state 1, online. */
static int find_device(const char *root, struct dev *d, int wait_s)
{
	for (int i = 0; i < wait_s * 10; i++, usleep(100000)) {
		unsigned nd, nv;
		char **doms = xs_directory(xs, XBT_NULL, root, &nd);

		for (unsigned a = 0; doms && a < nd; a++) {
			char p[256];
			snprintf(p, sizeof(p), "%s/%s", root, doms[a]);
			char **devs = xs_directory(xs, XBT_NULL, p, &nv);
			for (unsigned b = 0; devs && b < nv; b++) {
				snprintf(d->be, sizeof(d->be), "%s/%s", p, devs[b]);
				if (xs_get_long(d->be, "state", 0) == 1 &&
				    xs_get_long(d->be, "online", 0) == 1) {
					char *fe = xs_get(d->be, "frontend");
					d->domid = (uint16_t)atoi(doms[a]);
					snprintf(d->fe, sizeof(d->fe), "%s", fe ? fe : "");
					free(fe);
					free(devs);
					free(doms);
					return d->fe[0] ? 0 : -1;
				}
			}
			free(devs);
		}
		free(doms);
	}
	return -1;
}

static int wait_state(const char *dir, long want, int wait_s)
{
	for (int i = 0; i < wait_s * 10; i++, usleep(100000))
		if (xs_get_long(dir, "state", 0) == want)
			return 0;
	return -1;
}

/* Read ring-ref / ring-refN, event-channel, protocol (flat keys only:
 * hvprobe advertises no multi-queue). */
static int read_frontend(struct dev *d, unsigned max_order)
{
	long order = xs_get_long(d->fe, "ring-page-order", 0);
	char *proto;

	if (order < 0 || order > (long)max_order) {
		fprintf(stderr, "hvprobe: bad ring-page-order %ld\n", order);
		return -1;
	}
	d->ring_pages = 1u << order;
	if (xs_get_long(d->fe, "multi-queue-num-queues", 1) != 1) {
		fprintf(stderr, "hvprobe: frontend chose several queues\n");
		return -1;
	}
	for (unsigned i = 0; i < d->ring_pages; i++) {
		char key[32];
		long r;

		if (order == 0)
			snprintf(key, sizeof(key), "ring-ref");
		else
			snprintf(key, sizeof(key), "ring-ref%u", i);
		r = xs_get_long(d->fe, key, -1);
		if (r < 0) {
			fprintf(stderr, "hvprobe: frontend has no %s\n", key);
			return -1;
		}
		d->ring_ref[i] = (hv_gref_t)r;
	}
	long ev = xs_get_long(d->fe, "event-channel", -1);
	if (ev < 0) {
		fprintf(stderr, "hvprobe: frontend has no event-channel\n");
		return -1;
	}
	d->evtchn = (uint32_t)ev;
	proto = xs_get(d->fe, "protocol");
	if (blkif_abi_parse(proto, &d->abi) < 0) {
		fprintf(stderr, "hvprobe: unknown protocol %s\n", proto);
		free(proto);
		return -1;
	}
	free(proto);
	return 0;
}

/* Move one segment's data between the guest and buf, by copy or by map. */
static int move_seg(struct hv *hv, struct dev *d, hv_gref_t gref, unsigned off, unsigned len,
		    void *buf, bool to_guest)
{
	if (!d->use_map) {
		struct hv_copy_seg s = { .gref = gref, .offset = (uint16_t)off, .len = (uint16_t)len,
					 .local = buf, .to_guest = to_guest };
		return hv->ops->grant_copy(hv, d->domid, &s, 1) == 0 && s.status == 0 ? 0 : -1;
	}
	int err;
	char *page = hv->ops->map(hv, d->domid, &gref, 1, to_guest, &err);
	if (!page)
		return -1;
	if (to_guest)
		memcpy(page + off, buf, len);
	else
		memcpy(buf, page + off, len);
	hv->ops->unmap(hv, page, 1);
	return 0;
}

/* READ or WRITE (also a FLUSH carrying write data, as blkfront sends for
 * REQ_FUA / REQ_PREFLUSH writes). */
static int16_t do_rw(struct hv *hv, struct dev *d, const struct blkif_req *r, bool write)
{
	static char buf[BLKIF_MAX_SEGMENTS_PER_REQUEST * HV_PAGE_SIZE];
	uint64_t pos = r->sector_number * 512, total = 0;
	unsigned n = r->nr_segments;

	if (n == 0 || n > BLKIF_MAX_SEGMENTS_PER_REQUEST)
		return BLKIF_RSP_ERROR;
	for (unsigned i = 0; i < n; i++) {
		const struct blkif_request_segment *s = &r->seg[i];
		if (s->first_sect > s->last_sect || s->last_sect > 7)
			return BLKIF_RSP_ERROR;
		total += (uint64_t)(s->last_sect - s->first_sect + 1) * 512;
	}
	if (r->sector_number > d->sectors || total / 512 > d->sectors - r->sector_number)
		return BLKIF_RSP_ERROR;
	if (!write && pread(d->img_fd, buf, total, (off_t)pos) != (ssize_t)total)
		return BLKIF_RSP_ERROR;
	uint64_t at = 0;
	for (unsigned i = 0; i < n; i++) {
		const struct blkif_request_segment *s = &r->seg[i];
		unsigned len = (s->last_sect - s->first_sect + 1) * 512u;
		if (move_seg(hv, d, s->gref, s->first_sect * 512u, len, buf + at, !write) < 0)
			return BLKIF_RSP_ERROR;
		at += len;
	}
	if (write && pwrite(d->img_fd, buf, total, (off_t)pos) != (ssize_t)total)
		return BLKIF_RSP_ERROR;
	return BLKIF_RSP_OKAY;
}

static int16_t do_request(struct hv *hv, struct dev *d, const struct blkif_req *r)
{
	int16_t st;

	switch (r->operation) {
	case BLKIF_OP_READ:
		d->reads++;
		st = do_rw(hv, d, r, false);
		break;
	case BLKIF_OP_WRITE:
		d->writes++;
		st = do_rw(hv, d, r, true);
		break;
	case BLKIF_OP_FLUSH_DISKCACHE:
		d->flushes++;
		st = r->nr_segments ? do_rw(hv, d, r, true) : BLKIF_RSP_OKAY;
		if (st == BLKIF_RSP_OKAY && fdatasync(d->img_fd) < 0)
			st = BLKIF_RSP_ERROR;
		break;
	default:
		d->other++;
		return BLKIF_RSP_EOPNOTSUPP;
	}
	if (st != BLKIF_RSP_OKAY)
		d->errors++;
	return st;
}

#define SRING_U32(d, off) (*(volatile uint32_t *)((char *)(d)->sring + (off)))
#define REQ_PROD(d) SRING_U32(d, 0)
#define REQ_EVENT(d) SRING_U32(d, 4)
#define RSP_PROD(d) SRING_U32(d, 8)
#define RSP_EVENT(d) SRING_U32(d, 12)

/* Serve everything on the ring; returns -1 if the frontend broke it. */
static int serve_ring(struct hv *hv, struct dev *d)
{
	for (;;) {
		uint32_t prod = REQ_PROD(d);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (prod - d->rsp_prod_pvt > d->slots) {
			fprintf(stderr, "hvprobe: frontend req_prod %u too far ahead\n", prod);
			return -1;
		}
		while (d->req_cons != prod && d->req_cons - d->rsp_prod_pvt < d->slots) {
			struct blkif_req r;
			unsigned idx = d->req_cons & (d->slots - 1);
			blkif_copy_request(d->abi, blkif_slot(d->abi, d->sring, idx), &r);
			d->req_cons++;
			int16_t st = do_request(hv, d, &r);
			uint8_t op = r.operation == BLKIF_OP_INDIRECT ? r.indirect_op : r.operation;
			idx = d->rsp_prod_pvt & (d->slots - 1);
			blkif_put_response(d->abi, blkif_slot(d->abi, d->sring, idx), r.id, op, st);
			d->rsp_prod_pvt++;
		}
		/* RING_PUSH_RESPONSES_AND_CHECK_NOTIFY */
		uint32_t old = RSP_PROD(d), new = d->rsp_prod_pvt;
		__atomic_thread_fence(__ATOMIC_RELEASE);
		RSP_PROD(d) = new;
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if ((uint32_t)(new - RSP_EVENT(d)) < (uint32_t)(new - old)) {
			hv->ops->evtchn_notify(d->ch);
			d->notifies++;
		}
		/* RING_FINAL_CHECK_FOR_REQUESTS */
		REQ_EVENT(d) = d->req_cons + 1;
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (REQ_PROD(d) == d->req_cons)
			return 0;
	}
}

static bool closing(struct dev *d)
{
	long fe = xs_get_long(d->fe, "state", 6), be = xs_get_long(d->be, "state", 6);
	long on = xs_get_long(d->be, "online", 0);
	return fe >= 5 || be >= 5 || on == 0;
}

int main(int argc, char **argv)
{
	struct dev d = { .img_fd = -1 };
	unsigned ring_order = 0;
	int wait_s = 60, i, err;
	char msg[256];
	struct stat st;
	struct hv *hv;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--map"))
			d.use_map = true;
		else if (!strcmp(argv[i], "--ring-order") && i + 1 < argc)
			ring_order = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--wait") && i + 1 < argc)
			wait_s = atoi(argv[++i]);
		else
			break;
	}
	if (argc - i != 2 || ring_order > 4) {
		fprintf(stderr, "usage: hvprobe [--map] [--ring-order 0-4] [--wait S] BACKEND_ROOT IMAGE\n");
		return 2;
	}
	d.img_fd = open(argv[i + 1], O_RDWR);
	if (d.img_fd < 0 || fstat(d.img_fd, &st) < 0) {
		perror(argv[i + 1]);
		return 1;
	}
	d.sectors = (uint64_t)st.st_size / 512;
	hv = hv_open_xen(msg, sizeof(msg));
	if (!hv) {
		fprintf(stderr, "hvprobe: %s\n", msg);
		return 1;
	}
	xs = xs_open(0);
	if (!xs) {
		perror("xs_open");
		return 1;
	}
	if (find_device(argv[i], &d, wait_s) < 0) {
		fprintf(stderr, "hvprobe: no new device under %s\n", argv[i]);
		return 1;
	}
	printf("hvprobe: device %s frontend %s (dom%u), backend dom%u, data by %s\n", d.be,
	       d.fe, d.domid, hv->self_domid, d.use_map ? "grant map" : "grant copy");
	if (ring_order)
		xs_put(d.be, "max-ring-page-order", "%u", ring_order);
	xs_put(d.be, "state", "2");
	if (wait_state(d.fe, 3, 60) < 0 || read_frontend(&d, ring_order) < 0) {
		fprintf(stderr, "hvprobe: frontend did not initialise\n");
		return 1;
	}
	d.sring = hv->ops->map(hv, d.domid, d.ring_ref, d.ring_pages, true, &err);
	if (!d.sring) {
		fprintf(stderr, "hvprobe: mapping %u ring page(s): %s\n", d.ring_pages, strerror(-err));
		return 1;
	}
	d.slots = blkif_ring_slots(d.abi, (size_t)d.ring_pages * HV_PAGE_SIZE);
	d.ch = hv->ops->evtchn_bind(hv, d.domid, d.evtchn, &err);
	if (!d.ch) {
		fprintf(stderr, "hvprobe: binding port %u: %s\n", d.evtchn, strerror(-err));
		return 1;
	}
	printf("hvprobe: ring %u page(s), %u slots, %s, port %u\n", d.ring_pages, d.slots,
	       blkif_abi_name(d.abi), d.evtchn);
	xs_put(d.be, "sectors", "%llu", (unsigned long long)d.sectors);
	xs_put(d.be, "info", "0");
	xs_put(d.be, "sector-size", "512");
	xs_put(d.be, "feature-flush-cache", "1");
	xs_put(d.be, "state", "4");
	fflush(stdout);

	int broken = 0, idle = 0;
	while (!broken) {
		struct pollfd p = { .fd = hv->ops->evtchn_fd(d.ch), .events = POLLIN };
		int n = poll(&p, 1, 200);
		if (n > 0) {
			hv->ops->evtchn_ack(d.ch);
			idle = 0;
		}
		if (serve_ring(hv, &d) < 0)
			broken = 1;
		/* xenstore is polled, not watched: every ~second is enough here */
		if (n == 0 && ++idle % 5 == 0 && closing(&d))
			break;
	}
	hv->ops->evtchn_unbind(d.ch);
	hv->ops->unmap(hv, d.sring, d.ring_pages);
	if (xs_get_long(d.be, "state", 6) < 5)
		xs_put(d.be, "state", "5");
	xs_put(d.be, "state", "6");
	printf("hvprobe: served reads=%lu writes=%lu flushes=%lu other=%lu errors=%lu notifies=%lu\n",
	       d.reads, d.writes, d.flushes, d.other, d.errors, d.notifies);
	hv_close(hv);
	xs_close(xs);
	return broken || d.errors ? 1 : 0;
}
