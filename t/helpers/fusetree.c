/*
 * fusetree - mount the /vbd tree over devices made from real images, and
 * drive it from a test script (no request engine needed).
 *
 *   fusetree [-w] [-a] [-g GID] [-t THREADS] [-r MIB] MOUNTPOINT CONTROL
 *
 * -w writable disks, -a allow_other, -g group (with -a), -t FUSE threads,
 * -r read-ahead MiB (0 keeps the default).  CONTROL is a FIFO (created if
 * missing) from which commands are read, one per line, each starting with a
 * sequence number; after each command "done SEQ" or "fail SEQ message" is
 * printed on stdout (line-buffered), so a script can wait for it:
 *
 *   SEQ add DOMID DEVID FMT PATH [VDEV [DOMAIN [ro]]]
 *                                      open the image, create + register a vbd
 *   SEQ del NAME                       unregister and drop it
 *   SEQ io NAME OP COUNT SECTOR NSECT [STATUS [QUEUE]]
 *                                      simulate COUNT completed requests
 *                                      (OP read|write|discard|flush) at
 *                                      consecutive sectors: stats + trace
 *   SEQ pwrite NAME OFF LEN BYTE       a "guest" write of LEN bytes of BYTE,
 *                                      through the image, counted as a write
 *   SEQ batch NAME N OCCUPANCY         stats_batch()
 *   SEQ spin NAME SECONDS              mixed reads/writes every 10 ms for
 *                                      SECONDS, in the background
 *   SEQ quit                           unmount and exit 0
 * SIGTERM/SIGINT also unmount and exit.  Prints "ready" once mounted.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blkback/vbd.h"
#include "formats/image.h"
#include "fusefs/fs.h"
#include "util/log.h"
#include "util/stats.h"
#include "util/trace.h"

#define MAX_DEVS 64

static struct vbd *devs[MAX_DEVS];
static pthread_mutex_t devs_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile sig_atomic_t got_signal;
static pthread_t spin_threads[16];
static unsigned nr_spin;

static struct vbd *find_dev(const char *name)
{
	struct vbd *v = NULL;

	pthread_mutex_lock(&devs_lock);
	for (int i = 0; i < MAX_DEVS; i++)
		if (devs[i] && !strcmp(vbd_name(devs[i]), name)) {
			v = devs[i];
			vbd_get(v);
			break;
		}
	pthread_mutex_unlock(&devs_lock);
	return v;
}

static int op_of(const char *s, enum stat_op *sop, enum trace_op *top)
{
	static const struct { const char *n; enum stat_op s; enum trace_op t; } m[] = {
		{ "read", STAT_READ, TRACE_READ }, { "write", STAT_WRITE, TRACE_WRITE },
		{ "discard", STAT_DISCARD, TRACE_DISCARD }, { "flush", STAT_FLUSH, TRACE_FLUSH },
	};
	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++)
		if (!strcmp(s, m[i].n)) {
			*sop = m[i].s;
			*top = m[i].t;
			return 0;
		}
	return -1;
}

/* One simulated request, as the engine accounts it. */
static void sim_req(struct vbd *v, enum stat_op sop, enum trace_op top, uint64_t sector,
		    uint32_t nsect, int status, unsigned queue)
{
	struct trace_rec r = { 0 };
	uint64_t start = stats_start(vbd_stats(v));

	stats_end(vbd_stats(v), sop, start, sop == STAT_FLUSH ? 0 : nsect, status == 0);
	r.start_ns = start;
	r.done_ns = now_ns();
	r.sector = sector;
	r.nr_sectors = nsect;
	r.domid = vbd_domid(v);
	r.queue = (uint16_t)queue;
	r.op = (uint8_t)top;
	r.status = (int16_t)status;
	trace_add(vbd_trace(v), &r);
}

struct spin {
	struct vbd *v;
	int seconds;
};

static void *spin_main(void *arg)
{
	struct spin *sp = arg;
	struct timespec ts = { 0, 10 * 1000 * 1000 };
	uint64_t end = now_ns() + (uint64_t)sp->seconds * 1000000000ull, sector = 0;

	while (now_ns() < end && !got_signal) {
		for (int i = 0; i < 10; i++)
			sim_req(sp->v, STAT_READ, TRACE_READ, sector += 8, 8, 0, 0);
		for (int i = 0; i < 5; i++)
			sim_req(sp->v, STAT_WRITE, TRACE_WRITE, sector += 8, 8, 0, 0);
		nanosleep(&ts, NULL);
	}
	vbd_put(sp->v);
	free(sp);
	return NULL;
}

static int cmd_add(char **a, int n, char *err, size_t errlen)
{
	struct img *img;
	struct vbd *v;
	bool ro = n > 7 && !strcmp(a[7], "ro");
	int rc, slot = -1;

	if (n < 5)
		return snprintf(err, errlen, "usage: add DOMID DEVID FMT PATH [VDEV [DOMAIN [ro]]]"), -1;
	rc = img_open(a[4], a[3], ro ? IMG_RDONLY : 0, &img, err, errlen);
	if (rc < 0)
		return -1;
	v = vbd_create((uint16_t)atoi(a[1]), (uint32_t)strtoul(a[2], NULL, 0), img, ro);
	if (!v) {
		img_close(img);
		return snprintf(err, errlen, "vbd_create failed"), -1;
	}
	if (n > 5 && strcmp(a[5], "-"))
		vbd_set_vdev(v, a[5]);
	if (n > 6 && strcmp(a[6], "-"))
		vbd_set_domain_name(v, a[6]);
	pthread_mutex_lock(&devs_lock);
	for (int i = 0; i < MAX_DEVS && slot < 0; i++)
		if (!devs[i])
			slot = i;
	if (slot >= 0)
		devs[slot] = v;
	pthread_mutex_unlock(&devs_lock);
	if (slot < 0) {
		vbd_put(v);
		return snprintf(err, errlen, "too many devices"), -1;
	}
	vbd_register(v);
	return 0;
}

static int cmd_del(const char *name, char *err, size_t errlen)
{
	struct vbd *v = NULL;

	pthread_mutex_lock(&devs_lock);
	for (int i = 0; i < MAX_DEVS; i++)
		if (devs[i] && !strcmp(vbd_name(devs[i]), name)) {
			v = devs[i];
			devs[i] = NULL;
			break;
		}
	pthread_mutex_unlock(&devs_lock);
	if (!v)
		return snprintf(err, errlen, "no device %s", name), -1;
	vbd_unregister(v);
	vbd_put(v);
	return 0;
}

static int run(char **a, int n, char *err, size_t errlen)
{
	struct vbd *v;
	enum stat_op sop;
	enum trace_op top;
	int rc = 0;

	if (n < 1)
		return snprintf(err, errlen, "empty command"), -1;
	if (!strcmp(a[0], "add"))
		return cmd_add(a, n, err, errlen);
	if (!strcmp(a[0], "del") && n == 2)
		return cmd_del(a[1], err, errlen);
	if (n < 2 || !(v = find_dev(a[1])))
		return snprintf(err, errlen, "unknown command or device"), -1;
	if (!strcmp(a[0], "io") && n >= 6 && op_of(a[2], &sop, &top) == 0) {
		uint64_t count = strtoull(a[3], NULL, 0), sector = strtoull(a[4], NULL, 0);
		uint32_t nsect = (uint32_t)strtoul(a[5], NULL, 0);
		int status = n > 6 ? atoi(a[6]) : 0;
		unsigned queue = n > 7 ? (unsigned)atoi(a[7]) : 0;
		for (uint64_t i = 0; i < count; i++)
			sim_req(v, sop, top, sector + i * nsect, nsect, status, queue);
	} else if (!strcmp(a[0], "pwrite") && n == 5) {
		uint64_t off = strtoull(a[2], NULL, 0), len = strtoull(a[3], NULL, 0);
		char *buf = malloc(len ? len : 1);
		uint64_t start = stats_start(vbd_stats(v));
		if (!buf) {
			rc = -ENOMEM;
		} else {
			memset(buf, (int)strtoul(a[4], NULL, 0), len);
			rc = img_pwrite(vbd_image(v), buf, len, off);
			free(buf);
		}
		stats_end(vbd_stats(v), STAT_WRITE, start, len / 512, rc >= 0);
		if (rc < 0)
			snprintf(err, errlen, "pwrite: %s", strerror(-rc));
	} else if (!strcmp(a[0], "batch") && n == 4) {
		stats_batch(vbd_stats(v), (unsigned)atoi(a[2]), (unsigned)atoi(a[3]));
	} else if (!strcmp(a[0], "spin") && n == 3 && nr_spin < 16) {
		struct spin *sp = calloc(1, sizeof(*sp));
		vbd_get(v);
		sp->v = v;
		sp->seconds = atoi(a[2]);
		if (pthread_create(&spin_threads[nr_spin], NULL, spin_main, sp) == 0)
			nr_spin++;
	} else {
		snprintf(err, errlen, "bad command");
		rc = -1;
	}
	vbd_put(v);
	return rc < 0 ? -1 : 0;
}

static void on_signal(int sig)
{
	got_signal = 1;
}

static pthread_t main_thread;

/* From a FUSE thread: interrupt the main thread's FIFO read. */
static void on_unmount(void *arg)
{
	got_signal = 1;
	pthread_kill(main_thread, SIGUSR1);
}

int main(int argc, char **argv)
{
	struct vbdfs_fuse_opts o = { .writable = false };
	char err[512], line[4096];
	struct sigaction sa;
	int c;

	log_init("fusetree", VLOG_WARN, false);
	while ((c = getopt(argc, argv, "wag:t:r:d")) != -1) {
		switch (c) {
		case 'w': o.writable = true; break;
		case 'a': o.allow_other = true; break;
		case 'g': o.has_group = true; o.group = (gid_t)atoi(optarg); break;
		case 't': o.threads = (unsigned)atoi(optarg); break;
		case 'r': o.readahead_mib = (unsigned)atoi(optarg); break;
		case 'd': o.debug = true; break;
		default:
			fprintf(stderr, "usage: fusetree [-w] [-a] [-g GID] [-t N] [-r MIB] MOUNT CONTROL\n");
			return 2;
		}
	}
	if (argc - optind != 2) {
		fprintf(stderr, "usage: fusetree [-w] [-a] [-g GID] [-t N] [-r MIB] MOUNT CONTROL\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;   /* no SA_RESTART: the FIFO read returns */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	main_thread = pthread_self();
	signal(SIGPIPE, SIG_IGN);
	if (mkfifo(argv[optind + 1], 0600) < 0 && errno != EEXIST) {
		perror(argv[optind + 1]);
		return 1;
	}
	o.on_unmount = on_unmount;
	if (vbdfs_fuse_start(argv[optind], &o, err, sizeof(err)) < 0) {
		fprintf(stderr, "fusetree: %s\n", err);
		return 1;
	}
	printf("ready\n");
	while (!got_signal) {
		/* O_RDWR: the FIFO never reports EOF when a writer leaves. */
		FILE *f = fopen(argv[optind + 1], "r+");
		if (!f)
			break;
		while (!got_signal && fgets(line, sizeof(line), f)) {
			char *a[16], *save = NULL, *seq;
			int n = 0;
			seq = strtok_r(line, " \t\n", &save);
			if (!seq)
				continue;
			while (n < 16 && (a[n] = strtok_r(NULL, " \t\n", &save)))
				n++;
			if (n >= 1 && !strcmp(a[0], "quit")) {
				got_signal = 1;
				printf("done %s\n", seq);
				break;
			}
			err[0] = 0;
			if (run(a, n, err, sizeof(err)) == 0)
				printf("done %s\n", seq);
			else
				printf("fail %s %s\n", seq, err);
		}
		fclose(f);
	}
	for (unsigned i = 0; i < nr_spin; i++)
		pthread_join(spin_threads[i], NULL);
	vbdfs_fuse_stop();
	for (int i = 0; i < MAX_DEVS; i++)
		if (devs[i]) {
			vbd_unregister(devs[i]);
			vbd_put(devs[i]);
		}
	return 0;
}
