/*
 * The request engine on the simulated hypervisor (hv_sim) with a real
 * guest process (t/helpers/engine-guest) and a real raw image (img_open):
 * writes, reads, flush, barrier, discard, direct and indirect requests on
 * both ABIs, rings of order 0 and 4, 1 and 4 queues, persistent grants on
 * and off; the guest checks what it reads, this test checks the image
 * file.  Then a guest killed with requests in flight.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "blkback/engine.h"
#include "blkback/hv.h"
#include "blkback/sim/sim.h"
#include "formats/image.h"
#include "util/log.h"
#include "util/stats.h"
#include "util/tap.h"
#include "util/trace.h"

#define QBASE 2048u
#define IMG_BYTES (8u << 20)

static char dir[64], guest_prog[512];
static struct hv *hv;
static uint16_t next_domid = 10;

struct child {
	pid_t pid;
	FILE *out; /* its stdout */
	int in;    /* its stdin */
};

static bool spawn(struct child *c, uint16_t domid, int abi, unsigned order, unsigned nq,
		  const char *mode)
{
	int to[2], from[2];
	char a[5][16];

	if (pipe(to) < 0 || pipe(from) < 0)
		return false;
	snprintf(a[0], 16, "%u", domid);
	snprintf(a[1], 16, "%d", abi);
	snprintf(a[2], 16, "%u", order);
	snprintf(a[3], 16, "%u", nq);
	c->pid = fork();
	if (c->pid == 0) {
		dup2(to[0], 0);
		dup2(from[1], 1);
		close(to[1]);
		close(from[0]);
		execl(guest_prog, guest_prog, dir, a[0], a[1], a[2], a[3], mode, (char *)NULL);
		_exit(127);
	}
	close(to[0]);
	close(from[1]);
	c->in = to[1];
	c->out = fdopen(from[0], "r");
	return c->pid > 0 && c->out;
}

static void reap(struct child *c, bool kill_it)
{
	int st;

	if (kill_it)
		kill(c->pid, SIGKILL);
	close(c->in);
	fclose(c->out);
	waitpid(c->pid, &st, 0);
}

/* Read the guest's "q ..." lines into p; false if it did not get ready. */
static bool read_rings(struct child *c, struct engine_params *p)
{
	char line[512];

	while (fgets(line, sizeof(line), c->out)) {
		unsigned q, port, n = 0;
		int off;
		if (strncmp(line, "ready", 5) == 0)
			return true;
		if (sscanf(line, "q %u %u%n", &q, &port, &off) != 2 || q >= ENGINE_MAX_QUEUES)
			return false;
		p->queue[q].evtchn = port;
		char *s = line + off, *end;
		for (unsigned long v; (v = strtoul(s, &end, 10)), end != s; s = end)
			p->queue[q].ring_ref[n++ % 16] = (hv_gref_t)v;
	}
	return false;
}

static bool file_pattern(int fd, uint64_t sector, uint64_t count, int salt)
{
	size_t len = count * 512;
	unsigned char *b = malloc(len);
	bool good = pread(fd, b, len, (off_t)(sector * 512)) == (ssize_t)len;

	for (size_t i = 0; good && i < len; i++) {
		uint64_t o = sector * 512 + i;
		uint8_t want = salt < 0 ? 0 : (uint8_t)(o * 7 + (o >> 9) * 13 + (unsigned)salt);
		good = b[i] == want;
	}
	free(b);
	return good;
}

static struct img *make_image(const char *name, char *path, size_t pathlen)
{
	char err[256];
	struct img *img = NULL;
	int fd;

	snprintf(path, pathlen, "%s/%s", dir, name);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, IMG_BYTES) < 0)
		bail_out("cannot create image");
	close(fd);
	if (img_open(path, "raw", 0, &img, err, sizeof(err)) < 0)
		bail_out(err);
	return img;
}

static void params(struct engine_params *p, uint16_t domid, int abi, unsigned order,
		   unsigned nq, bool persistent, struct img *img, struct dev_stats *st,
		   struct trace *tr)
{
	memset(p, 0, sizeof(*p));
	p->hv = hv;
	p->domid = domid;
	p->devid = 51712;
	p->abi = abi == 32 ? BLKIF_ABI_X86_32 : BLKIF_ABI_X86_64;
	p->ring_order = order;
	p->nr_queues = nq;
	p->persistent = persistent;
	p->max_indirect_segs = ENGINE_DEFAULT_INDIRECT;
	p->feature_flush = p->feature_barrier = p->feature_discard = true;
	p->discard_granularity = 4096;
	p->sector_size = 512;
	p->img = img;
	p->stats = st;
	p->trace = tr;
}

static void run(int abi, unsigned order, unsigned nq, bool persistent)
{
	char name[128], path[256], err[256], line[256];
	struct engine_params p;
	struct dev_stats st;
	struct trace *tr = trace_new(256);
	struct child c;
	uint16_t domid = next_domid++;
	struct img *img = make_image("disk.raw", path, sizeof(path));
	struct engine *e = NULL;
	bool good;

	snprintf(name, sizeof(name), "x86_%d order %u, %u queue%s, persistent %s", abi, order, nq,
		 nq > 1 ? "s" : "", persistent ? "on" : "off");
	stats_init(&st);
	params(&p, domid, abi, order, nq, persistent, img, &st, tr);
	good = spawn(&c, domid, abi, order, nq, "io") && read_rings(&c, &p);
	if (good)
		e = engine_start(&p, err, sizeof(err));
	if (!ok(e, name)) {
		diag("%s", good ? err : "guest did not start");
		skip(2, "no engine");
	} else {
		good = write(c.in, "go\n", 3) == 3 && fgets(line, sizeof(line), c.out);
		if (!ok(good && strncmp(line, "result ok", 9) == 0, "  guest: every request OKAY, data read back intact"))
			diag("guest said: %s", good ? line : "(nothing)");
		engine_stop(e);
		int fd = open(path, O_RDONLY);
		bool file = true;
		for (unsigned q = 0; q < nq; q++) {
			uint64_t base = (uint64_t)q * QBASE;
			file = file && file_pattern(fd, base, 64, -1) &&
			       file_pattern(fd, base + 64, 8 * 88 + 40 * 8 - 64, (int)q + 1) &&
			       file_pattern(fd, base + 1600, 8, (int)q + 4);
		}
		close(fd);
		ok(file, "  image file holds the written data and the discarded zeros");
	}
	if (persistent && e)
		diag("persistent hits %llu, grant ops %llu",
		     (unsigned long long)atomic_load(&st.persistent_hits),
		     (unsigned long long)atomic_load(&st.grant_ops));
	reap(&c, false);
	img_close(img);
	trace_free(tr);
	stats_destroy(&st);
}

/* The guest dies with the ring full of slow requests: stop must still be
 * clean (no hang, no crash, nothing leaked under ASan). */
static void killed_guest(void)
{
	char path[256], err[256], line[64];
	struct engine_params p;
	struct dev_stats st;
	struct child c;
	uint16_t domid = next_domid++;
	struct img *img = make_image("kill.raw", path, sizeof(path));
	struct engine *e = NULL;

	stats_init(&st);
	params(&p, domid, 64, 4, 2, true, img, &st, NULL);
	if (spawn(&c, domid, 64, 4, 2, "inflight") && read_rings(&c, &p))
		e = engine_start(&p, err, sizeof(err));
	ok(e, "engine for a guest that will be killed");
	if (e) {
		bool sub = write(c.in, "go\n", 3) == 3 && fgets(line, sizeof(line), c.out) &&
			   strncmp(line, "submitted", 9) == 0;
		ok(sub, "guest filled its rings");
		for (int i = 0; i < 500 && atomic_load(&st.batched_reqs) == 0; i++)
			usleep(10000);
		kill(c.pid, SIGKILL);
		waitpid(c.pid, NULL, 0);
		c.pid = 0;
		engine_stop(e);
		ok(1, "engine_stop after the guest was killed returns");
		ok(atomic_load(&st.batched_reqs) > 0, "requests were in flight when it died");
	} else {
		skip(3, "no engine");
	}
	if (c.pid)
		reap(&c, true);
	else {
		close(c.in);
		fclose(c.out);
	}
	img_close(img);
	stats_destroy(&st);
}

int main(void)
{
	char err[256];
	const char *build = getenv("VBDFS_BUILD");
	struct sim *sim;

	signal(SIGPIPE, SIG_IGN);
	log_init("t253", VLOG_ERR, false);
	snprintf(guest_prog, sizeof(guest_prog), "%s/t/helpers/engine-guest", build ? build : "build");
	if (access(guest_prog, X_OK) != 0)
		plan_skip_all("t/helpers/engine-guest not built");
	snprintf(dir, sizeof(dir), "/tmp/vbdfs-253.XXXXXX");
	if (!mkdtemp(dir))
		bail_out("mkdtemp");
	sim = sim_start(dir, err, sizeof(err));
	if (!sim)
		bail_out(err);
	hv = hv_open_sim(dir, err, sizeof(err));
	if (!hv)
		bail_out(err);

	for (int abi = 64; abi >= 32; abi -= 32)
		for (unsigned order = 0; order <= 4; order += 4)
			for (unsigned nq = 1; nq <= 4; nq += 3)
				for (int pers = 0; pers < 2; pers++)
					run(abi, order, nq, pers);
	killed_guest();

	hv_close(hv);
	sim_stop(sim);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		diag("could not remove %s", dir);
	return done_testing();
}
