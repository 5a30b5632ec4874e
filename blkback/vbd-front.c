/*
 * vbd-front - a simulated Xen guest that drives vbdfs like Linux
 * xen-blkfront: registers as domain N with the simulator, connects to its
 * VBDs over XenBus, runs a workload (or a misbehaviour) and reports.
 * See man/vbd-front.1.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xenstore.h>
#include <xen/io/xenbus.h>

#include "blkback/front/dev.h"
#include "blkback/sim/guest.h"
#include "blkback/vdev.h"
#include "util/log.h"
#include "util/version.h"

#define MAX_DEVS 16
#define VERIFY_MAX_REGION (16ull << 30)

static void usage(FILE *f)
{
	fprintf(f,
"Usage: vbd-front --sim DIR --domid N [options] [VDEV|DEVID]...\n"
"A simulated Xen guest: connects to its virtual block devices like Linux\n"
"xen-blkfront and runs a workload against the backend.\n"
"\n"
"Guest:\n"
"  --sim DIR            the simulated hypervisor (vbdfs --sim DIR)\n"
"  --domid N            register as domain N (1..32751)\n"
"  --name NAME          domain name (default vbd-front-N)\n"
"  --wait               wait for the named devices (or any) to appear\n"
"  --list               connect, print devices and negotiated features, close\n"
"  --timeout T          how long the backend may take to act (default 30s)\n"
"  --mem SIZE           guest memory (default: enough for the options)\n"
"Negotiation (defaults are Linux 6.1 blkfront's):\n"
"  --ring-order K       ring pages 2^K, capped by the backend (default 0)\n"
"  --queues Q           rings, capped by the backend (default min(4, CPUs))\n"
"  --abi x86_64|x86_32  ring ABI written as 'protocol' (default x86_64)\n"
"  --persistent on|off  offer persistent grants (default on)\n"
"  --indirect N         max segments per INDIRECT request, 0 = off (default 32)\n"
"  --no-flush           never send flushes; --no-discard: never discards\n"
"Workload:\n"
"  --pattern seq|rand   (default seq)\n"
"  --rw read|write|mix  (default read); --mix P: percentage of reads\n"
"  --bs SIZE            bytes per I/O, multiple of the sector size (default 4k)\n"
"  --qd N               I/Os in flight per queue (default 32)\n"
"  --duration T | --bytes SIZE | --ios N   when to stop (default: one region)\n"
"  --offset SIZE --size SIZE               the region (default: whole disk)\n"
"  --flush-every N      a flush after every N I/Os\n"
"  --discard-every N    every Nth I/O is a discard\n"
"  --unaligned          data may start at any sector of a page\n"
"  --verify             write patterns, check every read, read back at the end\n"
"  --fill               write the whole region, then verify it\n"
"  --filled             the region holds an earlier --fill (same --seed): verify\n"
"  --seed N             (default 1)\n"
"  --reconnect N        N more cycles of connect, I/O, close\n"
"  --evil MODE          sector-range, bad-grant, bad-segs, bad-op, storm,\n"
"                       ring-overrun, die, or all (the first five)\n"
"  --json               machine-readable report\n"
"  -v, --verbose        more messages;  -h, --help  this text;  -V, --version\n");
}

enum {
	O_SIM = 256, O_DOMID, O_NAME, O_WAIT, O_LIST, O_TIMEOUT, O_MEM, O_RING_ORDER, O_QUEUES,
	O_ABI, O_PERSISTENT, O_INDIRECT, O_NO_FLUSH, O_NO_DISCARD, O_PATTERN, O_RW, O_MIX, O_BS,
	O_QD, O_DURATION, O_BYTES, O_IOS, O_OFFSET, O_SIZE, O_FLUSH_EVERY, O_DISCARD_EVERY,
	O_UNALIGNED, O_VERIFY, O_FILL, O_FILLED, O_SEED, O_RECONNECT, O_EVIL, O_JSON,
};

static const struct option longopts[] = {
	{ "sim", required_argument, NULL, O_SIM },
	{ "domid", required_argument, NULL, O_DOMID },
	{ "name", required_argument, NULL, O_NAME },
	{ "wait", no_argument, NULL, O_WAIT },
	{ "list", no_argument, NULL, O_LIST },
	{ "timeout", required_argument, NULL, O_TIMEOUT },
	{ "mem", required_argument, NULL, O_MEM },
	{ "ring-order", required_argument, NULL, O_RING_ORDER },
	{ "queues", required_argument, NULL, O_QUEUES },
	{ "abi", required_argument, NULL, O_ABI },
	{ "persistent", required_argument, NULL, O_PERSISTENT },
	{ "indirect", required_argument, NULL, O_INDIRECT },
	{ "no-flush", no_argument, NULL, O_NO_FLUSH },
	{ "no-discard", no_argument, NULL, O_NO_DISCARD },
	{ "pattern", required_argument, NULL, O_PATTERN },
	{ "rw", required_argument, NULL, O_RW },
	{ "mix", required_argument, NULL, O_MIX },
	{ "bs", required_argument, NULL, O_BS },
	{ "qd", required_argument, NULL, O_QD },
	{ "duration", required_argument, NULL, O_DURATION },
	{ "bytes", required_argument, NULL, O_BYTES },
	{ "ios", required_argument, NULL, O_IOS },
	{ "offset", required_argument, NULL, O_OFFSET },
	{ "size", required_argument, NULL, O_SIZE },
	{ "flush-every", required_argument, NULL, O_FLUSH_EVERY },
	{ "discard-every", required_argument, NULL, O_DISCARD_EVERY },
	{ "unaligned", no_argument, NULL, O_UNALIGNED },
	{ "verify", no_argument, NULL, O_VERIFY },
	{ "fill", no_argument, NULL, O_FILL },
	{ "filled", no_argument, NULL, O_FILLED },
	{ "seed", required_argument, NULL, O_SEED },
	{ "reconnect", required_argument, NULL, O_RECONNECT },
	{ "evil", required_argument, NULL, O_EVIL },
	{ "json", no_argument, NULL, O_JSON },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

static void die_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "vbd-front: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry 'vbd-front --help'.\n");
	exit(2);
}

static uint64_t num(const char *opt, const char *s, uint64_t max)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v > max) {
		fprintf(stderr, "vbd-front: %s: '%s' is not a number in 0..%llu\nTry 'vbd-front --help'.\n",
			opt, s, (unsigned long long)max);
		exit(2);
	}
	return v;
}

static uint64_t size_arg(const char *opt, const char *s)
{
	uint64_t v;

	if (vf_parse_size(s, &v)) {
		fprintf(stderr, "vbd-front: %s: '%s' is not a size (e.g. 4k, 1M, 2G)\n", opt, s);
		exit(2);
	}
	return v;
}

static uint64_t duration_arg(const char *opt, const char *s)
{
	uint64_t v;

	if (vf_parse_duration(s, &v)) {
		fprintf(stderr, "vbd-front: %s: '%s' is not a duration (e.g. 5s, 100ms, 2m)\n", opt, s);
		exit(2);
	}
	return v;
}

static void parse(int argc, char **argv, struct vf_opts *o, char ***want, int *nwant)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int c;

	memset(o, 0, sizeof(*o));
	o->queues = ncpu < 1 ? 1 : ncpu > 4 ? 4 : (unsigned)ncpu; /* Linux: min(4, CPUs) */
	o->abi = BLKIF_ABI_X86_64;
	o->persistent = true;
	o->indirect = 32;
	o->rw = VF_RW_READ;
	o->read_pct = 50;
	o->bs = 4096;
	o->qd = 32;
	o->seed = 1;
	o->timeout_ns = 30000000000ull;
	while ((c = getopt_long(argc, argv, "vhV", longopts, NULL)) != -1) {
		switch (c) {
		case O_SIM: o->sim_dir = optarg; break;
		case O_DOMID: o->domid = (uint16_t)num("--domid", optarg, 32751); break;
		case O_NAME: o->name = optarg; break;
		case O_WAIT: o->wait = true; break;
		case O_LIST: o->list = true; break;
		case O_TIMEOUT: o->timeout_ns = duration_arg("--timeout", optarg); break;
		case O_MEM: o->mem_bytes = size_arg("--mem", optarg); break;
		case O_RING_ORDER: o->ring_order = (unsigned)num("--ring-order", optarg, 4); break;
		case O_QUEUES: o->queues = (unsigned)num("--queues", optarg, 16); break;
		case O_ABI:
			if (strcmp(optarg, "x86_64") == 0 || strcmp(optarg, "x86_64-abi") == 0)
				o->abi = BLKIF_ABI_X86_64;
			else if (strcmp(optarg, "x86_32") == 0 || strcmp(optarg, "x86_32-abi") == 0)
				o->abi = BLKIF_ABI_X86_32;
			else
				die_usage("--abi: '%s' is not x86_64 or x86_32", optarg);
			break;
		case O_PERSISTENT:
			if (strcmp(optarg, "on") && strcmp(optarg, "off"))
				die_usage("--persistent: '%s' is not on or off", optarg);
			o->persistent = strcmp(optarg, "on") == 0;
			break;
		case O_INDIRECT: o->indirect = (unsigned)num("--indirect", optarg, 4096); break;
		case O_NO_FLUSH: o->no_flush = true; break;
		case O_NO_DISCARD: o->no_discard = true; break;
		case O_PATTERN:
			if (strcmp(optarg, "seq") == 0)
				o->pattern = VF_SEQ;
			else if (strcmp(optarg, "rand") == 0)
				o->pattern = VF_RAND;
			else
				die_usage("--pattern: '%s' is not seq or rand", optarg);
			break;
		case O_RW:
			if (strcmp(optarg, "read") == 0)
				o->rw = VF_RW_READ;
			else if (strcmp(optarg, "write") == 0)
				o->rw = VF_RW_WRITE;
			else if (strcmp(optarg, "mix") == 0)
				o->rw = VF_RW_MIX;
			else
				die_usage("--rw: '%s' is not read, write or mix", optarg);
			break;
		case O_MIX: o->read_pct = (unsigned)num("--mix", optarg, 100); o->rw = VF_RW_MIX; break;
		case O_BS: o->bs = size_arg("--bs", optarg); break;
		case O_QD: o->qd = (unsigned)num("--qd", optarg, 4096); break;
		case O_DURATION: o->duration_ns = duration_arg("--duration", optarg); break;
		case O_BYTES: o->bytes = size_arg("--bytes", optarg); break;
		case O_IOS: o->ios = num("--ios", optarg, UINT64_MAX); break;
		case O_OFFSET: o->offset = size_arg("--offset", optarg); break;
		case O_SIZE: o->size = size_arg("--size", optarg); break;
		case O_FLUSH_EVERY: o->flush_every = (unsigned)num("--flush-every", optarg, 1u << 30); break;
		case O_DISCARD_EVERY:
			o->discard_every = (unsigned)num("--discard-every", optarg, 1u << 30);
			break;
		case O_UNALIGNED: o->unaligned = true; break;
		case O_VERIFY: o->verify = true; break;
		case O_FILL: o->fill = true; break;
		case O_FILLED: o->filled = true; break;
		case O_SEED: o->seed = num("--seed", optarg, UINT64_MAX); break;
		case O_RECONNECT: o->reconnect = (unsigned)num("--reconnect", optarg, 100000); break;
		case O_EVIL:
			if (!vf_evil_mode_known(optarg))
				die_usage("--evil: unknown mode '%s' (see --help)", optarg);
			o->evil = optarg;
			break;
		case O_JSON: o->json = true; break;
		case 'v': log_set_level(VLOG_DEBUG); break;
		case 'h': usage(stdout); exit(0);
		case 'V': printf("vbd-front (vbdfs) %s\n", VBDFS_VERSION); exit(0);
		default: fprintf(stderr, "Try 'vbd-front --help'.\n"); exit(2);
		}
	}
	if (!o->sim_dir)
		die_usage("--sim DIR is required%s", "");
	if (!o->domid)
		die_usage("--domid N (1..32751) is required%s", "");
	*want = argv + optind;
	*nwant = argc - optind;
	if (*nwant > MAX_DEVS)
		die_usage("at most 16 devices may be named%s", "");
	for (int i = 0; i < *nwant; i++) {
		uint32_t devid;

		if (vdev_parse((*want)[i], &devid))
			die_usage("'%s' is not a disk name (xvda, sdb...) or device id", (*want)[i]);
	}
	if (!o->bs || o->bs % VF_SECTOR)
		die_usage("--bs must be a non-zero multiple of 512%s", "");
	if (!o->qd)
		die_usage("--qd must be at least 1%s", "");
	if (!o->queues)
		die_usage("--queues must be at least 1%s", "");
	if (o->fill || o->filled)
		o->verify = true;
}

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
	got_signal = sig;
	atomic_store(&vf_stop, true);
}

/* Is the directory entry (a devid) one the user named?  Names are disk
 * names ("xvdb") or devids; no names means every device. */
static bool wanted(const char *ent, char **want, int nwant)
{
	uint32_t a, b;

	if (!nwant)
		return true;
	if (vdev_parse(ent, &a))
		return false;
	for (int i = 0; i < nwant; i++)
		if (vdev_parse(want[i], &b) == 0 && a == b)
			return true;
	return false;
}

/* The devices under /local/domain/N/device/vbd, waiting if asked. */
static int find_devices(struct xs_handle *xs, const struct vf_opts *o, char **want, int nwant,
			struct vf_dev *devs)
{
	char dir[64];
	uint64_t deadline = now_ns() + o->timeout_ns;
	int n = 0;

	snprintf(dir, sizeof(dir), "/local/domain/%u/device/vbd", o->domid);
	if (o->wait)
		xs_watch(xs, dir, "vf-devs");
	for (;;) {
		unsigned cnt = 0;
		char **ents = xs_directory(xs, XBT_NULL, dir, &cnt);

		n = 0;
		for (unsigned i = 0; ents && i < cnt && n < MAX_DEVS; i++) {
			char be[256];
			unsigned len;
			char *v;

			if (!wanted(ents[i], want, nwant))
				continue;
			/* Complete only once the toolstack wrote the backend link
			 * and state (it writes them in one transaction). */
			snprintf(be, sizeof(be), "%s/%s/backend", dir, ents[i]);
			v = xs_read(xs, XBT_NULL, be, &len);
			if (!v)
				continue;
			free(v);
			memset(&devs[n], 0, sizeof(devs[n]));
			if (vf_dev_probe(xs, &devs[n], o->domid, ents[i]) == 0)
				n++;
		}
		free(ents);
		/* With --wait: until every named device (or any) is there. */
		if ((nwant ? n >= nwant : n > 0) || !o->wait || now_ns() >= deadline ||
		    atomic_load(&vf_stop))
			break;
		struct pollfd pfd = { .fd = xs_fileno(xs), .events = POLLIN };
		char **ev;

		poll(&pfd, 1, 200);
		while ((ev = xs_check_watch(xs)))
			free(ev);
	}
	if (o->wait)
		xs_unwatch(xs, dir, "vf-devs");
	return n;
}

/* Region, queue slices and the verify map, once the size is known. */
static int plan_region(struct vf_dev *d)
{
	const struct vf_opts *o = d->opts;
	uint64_t disk = d->sectors * VF_SECTOR, ss = d->sector_size, len, slice;

	if (o->offset % ss || o->offset >= disk) {
		snprintf(d->error, sizeof(d->error), "--offset %llu is not a multiple of %llu inside "
			 "the %llu-byte disk", (unsigned long long)o->offset, (unsigned long long)ss,
			 (unsigned long long)disk);
		return -1;
	}
	len = o->size ? o->size : disk - o->offset;
	if (len % ss || len > disk - o->offset || len < ss) {
		snprintf(d->error, sizeof(d->error), "--size %llu does not fit the disk or is not a "
			 "multiple of %llu", (unsigned long long)len, (unsigned long long)ss);
		return -1;
	}
	if (o->bs % ss) {
		snprintf(d->error, sizeof(d->error), "--bs %llu is not a multiple of the sector size %llu",
			 (unsigned long long)o->bs, (unsigned long long)ss);
		return -1;
	}
	slice = len / d->nr_queues / ss * ss;
	if (!slice) {
		snprintf(d->error, sizeof(d->error), "region too small for %u queues", d->nr_queues);
		return -1;
	}
	for (unsigned i = 0; i < d->nr_queues; i++) {
		d->queue[i].slice_start = o->offset + i * slice;
		d->queue[i].slice_len = i + 1 == d->nr_queues ? len - i * slice : slice;
	}
	if (o->verify && !d->gens) {
		if (len > VERIFY_MAX_REGION) {
			snprintf(d->error, sizeof(d->error), "--verify keeps 4 bytes per sector: limit "
				 "the region to 16G with --size");
			return -1;
		}
		d->gens = calloc(len / VF_SECTOR, sizeof(uint32_t));
		if (!d->gens) {
			snprintf(d->error, sizeof(d->error), "out of memory for the verify map");
			return -1;
		}
		atomic_store(&d->next_gen, VF_FILL_GEN);
		for (uint64_t i = 0; o->filled && i < len / VF_SECTOR; i++)
			d->gens[i] = VF_FILL_GEN;
		d->region_start = o->offset;
		d->region_len = len;
	} else if (o->verify && (d->region_start != o->offset || d->region_len != len)) {
		snprintf(d->error, sizeof(d->error), "the disk changed size between connections");
		return -1;
	}
	if ((d->info & VDISK_READONLY) && !o->evil && !o->list &&
	    (o->rw != VF_RW_READ || o->fill || o->discard_every)) {
		snprintf(d->error, sizeof(d->error), "device is read-only (info %u) and the workload "
			 "writes", d->info);
		return -1;
	}
	return 0;
}

/* Memory the options can need for one device (pages), with margins. */
static uint64_t pages_per_dev(const struct vf_opts *o)
{
	unsigned segs = o->indirect > BLKIF_MAX_SEGMENTS_PER_REQUEST ? o->indirect
								     : BLKIF_MAX_SEGMENTS_PER_REQUEST;
	unsigned ind = o->indirect > BLKIF_MAX_SEGMENTS_PER_REQUEST ? vf_indirect_pages(segs) : 0;
	uint64_t slots = 32ull << o->ring_order;
	uint64_t k = vf_split_count(o->bs / VF_SECTOR, segs, o->unaligned ? 7 : 0);
	uint64_t sh = (uint64_t)o->qd * k + 2;

	if (sh < 8)
		sh = 8;
	if (sh > slots)
		sh = slots;
	return o->queues * ((1ull << o->ring_order) + sh * (segs + ind)) + 16;
}

struct runner {
	struct vf_queue *q;
	atomic_int *running;
};

static void *queue_thread(void *arg)
{
	struct runner *r = arg;

	vf_queue_main(r->q);
	atomic_fetch_sub(r->running, 1);
	return NULL;
}

/* Run the workload on every connected device at once, watching the
 * backends' state: a backend that leaves Connected stops its queues. */
static void run_all(struct xs_handle *xs, struct vf_dev *devs, int n)
{
	static struct runner runners[MAX_DEVS * 16];
	atomic_int running = 0;
	uint64_t t0 = now_ns();
	unsigned nr = 0;

	for (int i = 0; i < n; i++) {
		char path[256];

		if (!devs[i].connected)
			continue;
		snprintf(path, sizeof(path), "%s/state", devs[i].be);
		xs_watch(xs, path, "vf-run");
		for (unsigned j = 0; j < devs[i].nr_queues; j++) {
			struct vf_queue *q = &devs[i].queue[j];
			struct runner *r = &runners[nr++];

			r->q = q;
			r->running = &running;
			atomic_fetch_add(&running, 1);
			q->thread_started = pthread_create(&q->thread, NULL, queue_thread, r) == 0;
			if (!q->thread_started) {
				atomic_fetch_sub(&running, 1);
				q->broken = true;
				snprintf(q->why, sizeof(q->why), "cannot start a thread");
			}
		}
	}
	while (atomic_load(&running) > 0) {
		struct pollfd pfd = { .fd = xs_fileno(xs), .events = POLLIN };
		char **ev;

		poll(&pfd, 1, 100);
		while ((ev = xs_check_watch(xs)))
			free(ev);
		for (int i = 0; i < n; i++)
			if (devs[i].connected && vf_read_state(xs, devs[i].be) != XenbusStateConnected)
				atomic_store(&devs[i].backend_gone, true);
	}
	for (int i = 0; i < n; i++) {
		char path[256];

		if (!devs[i].connected)
			continue;
		for (unsigned j = 0; j < devs[i].nr_queues; j++)
			if (devs[i].queue[j].thread_started)
				pthread_join(devs[i].queue[j].thread, NULL);
		snprintf(path, sizeof(path), "%s/state", devs[i].be);
		xs_unwatch(xs, path, "vf-run");
		devs[i].elapsed_ns += now_ns() - t0;
	}
}

int main(int argc, char **argv)
{
	static struct vf_dev devs[MAX_DEVS];
	struct vf_opts o;
	char **want;
	int nwant;
	char err[256], name[64];
	struct sim_guest *g;
	struct xs_handle *xs;
	struct vf_mem *mem;
	struct sigaction sa = { .sa_handler = on_signal };
	uint64_t pages;
	int n, rc = 0, listed = 0;

	log_init("vbd-front", VLOG_WARN, false);
	parse(argc, argv, &o, &want, &nwant);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	pages = o.mem_bytes ? o.mem_bytes / VF_PAGE : 4 * pages_per_dev(&o) + 1024;
	if (pages > (1ull << 20))
		pages = 1ull << 20; /* 4 GiB of (sparse) guest memory at most */
	snprintf(name, sizeof(name), "vbd-front-%u", o.domid);
	/* With --wait, also wait for the simulator (it may be starting) and
	 * for an earlier incarnation of this domain to be gone. */
	for (uint64_t until = now_ns() + o.timeout_ns;;) {
		g = sim_guest_connect(o.sim_dir, o.domid, o.name ? o.name : name, (size_t)pages,
				      (unsigned)(pages + 1024), err, sizeof(err));
		if (g || !o.wait || now_ns() >= until || atomic_load(&vf_stop))
			break;
		usleep(50000);
	}
	if (!g) {
		fprintf(stderr, "vbd-front: cannot register as domain %u with %s/hypervisor: %s\n",
			o.domid, o.sim_dir, err);
		return 1;
	}
	xs = sim_guest_xs_open(g);
	if (!xs) {
		fprintf(stderr, "vbd-front: cannot connect to xenstore at %s: %s\n",
			sim_guest_xenstore_path(g), strerror(errno));
		sim_guest_disconnect(g);
		return 1;
	}
	mem = vf_mem_new(g);
	n = find_devices(xs, &o, want, nwant, devs);
	if (n == 0 || (nwant && n < nwant)) {
		fprintf(stderr, "vbd-front: domain %u has %s under /local/domain/%u/device/vbd%s\n",
			o.domid, nwant ? "not every device named" : "no devices", o.domid,
			o.wait ? " (waited)" : " (use --wait to wait for them)");
		rc = 1;
		goto out;
	}
	for (int i = 0; i < n; i++) {
		devs[i].mem = mem;
		devs[i].opts = &o;
		devs[i].xs = xs;
		if (!devs[i].vdev[0] && vdev_name(devs[i].devid, devs[i].vdev, sizeof(devs[i].vdev)))
			devs[i].vdev[0] = 0;
		for (int op = 0; op < VF_NR_OPS; op++)
			hist_init(&devs[i].stats.lat[op]);
	}

	if (o.list && o.json)
		printf("{\"devices\": [\n");
	for (unsigned cycle = 0; cycle <= o.reconnect && !atomic_load(&vf_stop); cycle++) {
		for (int i = 0; i < n; i++) {
			struct vf_dev *d = &devs[i];

			if (d->error[0])
				continue;
			if (vf_dev_connect(xs, d) || plan_region(d)) {
				fprintf(stderr, "vbd-front: device %u: %s\n", d->devid, d->error);
				rc = 1;
			}
		}
		if (o.list) {
			for (int i = 0; i < n; i++)
				if (devs[i].connected)
					vf_report_list(&devs[i], o.json, listed++ == 0);
		} else if (o.evil) {
			for (int i = 0; i < n; i++)
				if (devs[i].connected && vf_evil_run(&devs[i], o.evil))
					rc = 1;
		} else {
			run_all(xs, devs, n);
		}
		for (int i = 0; i < n; i++)
			if (devs[i].connected)
				vf_dev_close(xs, &devs[i]);
	}
	if (o.list && o.json)
		printf("\n]}\n");
	if (!o.list && !o.evil) {
		if (o.json)
			printf("{\"devices\": [\n");
		for (int i = 0; i < n; i++) {
			vf_report_dev(&devs[i], o.json, i == 0);
			if (!vf_dev_ok(&devs[i]))
				rc = 1;
		}
		if (o.json)
			printf("\n], \"ok\": %s}\n", rc ? "false" : "true");
	}
	for (int i = 0; i < n; i++) {
		if (o.evil && devs[i].error[0])
			fprintf(stderr, "vbd-front: device %u: %s\n", devs[i].devid, devs[i].error);
		uint64_t leaks = atomic_load(&devs[i].stats.grant_leaks);
		if (o.evil && leaks) {
			fprintf(stderr, "vbd-front: device %u: %llu grant(s) could not be ended "
				"(still mapped by the backend after it closed)\n",
				devs[i].devid, (unsigned long long)leaks);
			rc = 1;
		}
		for (unsigned j = 0; o.evil && j < devs[i].nr_queues; j++)
			if (devs[i].queue[j].broken && devs[i].queue[j].why[0])
				fprintf(stderr, "vbd-front: device %u: %s\n", devs[i].devid,
					devs[i].queue[j].why);
		free(devs[i].gens);
	}
	if (got_signal && !rc)
		fprintf(stderr, "vbd-front: stopped by signal %d\n", (int)got_signal);
out:
	xs_close(xs);
	vf_mem_free(mem);
	sim_guest_disconnect(g);
	return rc;
}
