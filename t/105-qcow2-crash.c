/*
 * Crash consistency of the qcow2 writer: a child process does random writes
 * and write_zeroes with periodic flushes, reporting each completed flush on
 * a pipe; the parent kills it with SIGKILL at a random moment, many times.
 * After each kill:
 *   - `qemu-img check` finds no corruption (leaks are allowed);
 *   - every write acknowledged before the last reported flush is on disk:
 *     each byte holds the value of the durable model, or a value written by
 *     one of the operations after that flush (which may or may not have
 *     landed, possibly in part).
 * Runs on 4 KiB and 64 KiB clusters, with and without a backing file
 * (copy-on-write), ~20 s in all.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "formats/image.h"
#include "util/log.h"
#include "util/tap.h"

#define DISK (8u << 20)
#define MAX_OP (256u << 10)

#include "write-ops.h" /* struct op, mix(), op_of(), op_byte() */

/* Flush after op j? (deterministic from the seed) */
static bool flush_after(uint64_t seed, uint64_t j)
{
	return mix(seed ^ (j * 7919)) % 6 == 0;
}

static void apply(uint8_t *m, const struct op *o)
{
	for (uint64_t p = o->off; p < o->off + o->len; p++)
		m[p] = op_byte(o, p);
}

static void child(const char *path, uint64_t seed, int wfd)
{
	char err[256];
	struct img *img;
	uint8_t *buf = malloc(MAX_OP + 512);

	if (!buf || img_open(path, "qcow2", 0, &img, err, sizeof(err)) < 0) {
		fprintf(stderr, "child: %s\n", err);
		_exit(1);
	}
	for (uint64_t j = 0;; j++) {
		struct op o = op_of(seed, j);
		int r;
		if (o.zero) {
			r = img_write_zeroes(img, o.off, o.len);
		} else {
			for (uint64_t p = 0; p < o.len; p++)
				buf[p] = op_byte(&o, o.off + p);
			r = img_pwrite(img, buf, o.len, o.off);
		}
		if (r < 0) {
			fprintf(stderr, "child: op %llu: %s\n", (unsigned long long)j, strerror(-r));
			_exit(1);
		}
		if (flush_after(seed, j)) {
			if (img_flush(img) < 0)
				_exit(1);
			uint64_t done = j + 1;   /* ops [0, done) are durable */
			if (write(wfd, &done, sizeof(done)) != sizeof(done))
				_exit(1);
		}
	}
}

static int read_all(const char *path, uint8_t *out)
{
	char err[256];
	struct img *img;
	int r = img_open(path, "qcow2", IMG_RDONLY, &img, err, sizeof(err));

	if (r < 0) {
		diag("open after crash: %s", err);
		return r;
	}
	r = img_pread(img, out, DISK, 0);
	img_close(img);
	return r;
}

/* One crash round; returns false on a consistency failure. */
static bool round_trip(const char *path, uint64_t seed, uint8_t *model, uint8_t *got,
		       unsigned kill_ms)
{
	int p[2];
	pid_t pid;
	uint64_t done = 0, rec;
	char cmd[512];

	if (pipe(p) < 0)
		return false;
	pid = fork();
	if (pid == 0) {
		close(p[0]);
		child(path, seed, p[1]);
	}
	close(p[1]);
	struct timespec ts = { .tv_sec = kill_ms / 1000, .tv_nsec = (kill_ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	while (read(p[0], &rec, sizeof(rec)) == sizeof(rec))
		done = rec;
	close(p[0]);

	snprintf(cmd, sizeof(cmd), "qemu-img check -q '%s' >/dev/null 2>&1", path);
	int st = system(cmd);
	int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	if (code != 0 && code != 3) {
		diag("qemu-img check exit %d after crash (seed %llu, %llu ops durable)", code,
		     (unsigned long long)seed, (unsigned long long)done);
		snprintf(cmd, sizeof(cmd), "qemu-img check '%s' >&2", path);
		(void)system(cmd);
		return false;
	}
	/* the durable model, and the ops that may have landed after it */
	uint64_t maybe_end = done;
	for (uint64_t j = 0; j < done; j++) {
		struct op o = op_of(seed, j);
		apply(model, &o);
	}
	while (!flush_after(seed, maybe_end))
		maybe_end++;
	maybe_end++;
	if (read_all(path, got) < 0)
		return false;
	uint64_t bad = 0;
	for (uint64_t b = 0; b < DISK; b++) {
		if (got[b] == model[b])
			continue;
		bool explained = false;
		for (uint64_t j = done; j < maybe_end && !explained; j++) {
			struct op o = op_of(seed, j);
			explained = b >= o.off && b < o.off + o.len && op_byte(&o, b) == got[b];
		}
		if (!explained && bad++ < 5)
			diag("byte %llu is 0x%02x, durable value 0x%02x (seed %llu, %llu ops durable)",
			     (unsigned long long)b, got[b], model[b], (unsigned long long)seed,
			     (unsigned long long)done);
	}
	/* whatever landed is the base of the next round */
	memcpy(model, got, DISK);
	return bad == 0;
}

int main(void)
{
	char dir[] = "/tmp/vbdfs-crash.XXXXXX", path[256], cmd[1024];
	uint8_t *model = malloc(DISK), *got = malloc(DISK);
	static const struct { unsigned cs; bool backing; } cfg[] = {
		{ 4096, false }, { 65536, false }, { 4096, true }, { 65536, true },
	};
	time_t start = time(NULL);
	unsigned rounds = 0;

	log_init("105-qcow2-crash", VLOG_WARN, false);
	if (system("qemu-img --version >/dev/null 2>&1") != 0)
		plan_skip_all("needs qemu-img (qemu-utils)");
	if (!model || !got || !mkdtemp(dir))
		bail_out("setup");
	plan(4 * 2);
	srand((unsigned)getpid());
	for (unsigned c = 0; c < 4; c++) {
		snprintf(path, sizeof(path), "%s/c%u.qcow2", dir, c);
		if (cfg[c].backing)
			snprintf(cmd, sizeof(cmd),
				 "qemu-img create -q -f raw %s/base%u.raw 8M && "
				 "qemu-io -f raw -c 'write -P 0x5c 0 8M' %s/base%u.raw >/dev/null && "
				 "qemu-img create -q -f qcow2 -o cluster_size=%u -b base%u.raw -F raw %s",
				 dir, c, dir, c, cfg[c].cs, c, path);
		else
			snprintf(cmd, sizeof(cmd), "qemu-img create -q -f qcow2 -o cluster_size=%u %s 8M",
				 cfg[c].cs, path);
		if (system(cmd) != 0)
			bail_out("qemu-img create failed");
		memset(model, cfg[c].backing ? 0x5c : 0, DISK);
		unsigned n = 0, fails = 0;
		/* ~5 s per configuration */
		while (time(NULL) - start < (time_t)(5 * (c + 1)) || n < 3) {
			uint64_t seed = (uint64_t)rand() << 16 ^ (uint64_t)rand();
			if (!round_trip(path, seed, model, got, 5 + (unsigned)(rand() % 150)))
				fails++;
			n++;
		}
		rounds += n;
		ok(fails == 0, cfg[c].backing ? "crashes over a backing file: acknowledged data kept"
					      : "crashes: acknowledged data kept, image not corrupt");
		snprintf(cmd, sizeof(cmd), "qemu-img check -q %s >/dev/null 2>&1", path);
		int st = system(cmd);
		ok(WIFEXITED(st) && (WEXITSTATUS(st) == 0 || WEXITSTATUS(st) == 3),
		   "final image: no corruption (leaks allowed)");
		diag("cluster %u%s: %u crash rounds", cfg[c].cs, cfg[c].backing ? " + backing" : "", n);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	(void)system(cmd);
	free(model);
	free(got);
	diag("%u crash rounds in all", rounds);
	return done_testing();
}
