/*
 * Concurrency: several threads do random writes, write_zeroes, reads and
 * flushes on one open qcow2 image.  Each thread owns interleaved byte
 * stripes (3000 bytes, so stripes of different threads share clusters and
 * race to allocate them), keeps a model of its own bytes and checks every
 * read against it.  Afterwards the whole disk must equal the model and
 * `qemu-img check` must be clean.  Configurations: 512 B clusters, 4 KiB
 * clusters over a raw backing file (concurrent copy-on-write), and a
 * compressed 64 KiB-cluster image (concurrent read-modify-write of
 * compressed clusters).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/image.h"
#include "util/log.h"
#include "util/tap.h"

#define DISK (4u << 20)
#define STRIPE 3000u
#define NT 4
#define OPS 1500

static struct img *img;
static uint8_t *model;
static _Atomic int failures;

struct targ {
	unsigned id;
	uint64_t seed;
};

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void *worker(void *p)
{
	struct targ *a = p;
	uint64_t s = a->seed;
	uint64_t nstripes = DISK / STRIPE;
	uint8_t buf[STRIPE];

	for (int i = 0; i < OPS; i++) {
		/* a stripe of ours, and a range inside it */
		uint64_t k = (rnd(&s) % (nstripes / NT)) * NT + a->id;
		uint64_t base = k * STRIPE;
		uint64_t off = base + rnd(&s) % STRIPE;
		uint64_t len = 1 + rnd(&s) % (base + STRIPE - off);
		unsigned what = (unsigned)(rnd(&s) % 10);
		int r = 0;

		if (what < 5) {
			uint8_t v = (uint8_t)rnd(&s);
			for (uint64_t j = 0; j < len; j++)
				buf[j] = (uint8_t)(v + j);
			r = img_pwrite(img, buf, len, off);
			memcpy(model + off, buf, len);
		} else if (what < 6) {
			r = img_write_zeroes(img, off, len);
			memset(model + off, 0, len);
		} else if (what < 9) {
			r = img_pread(img, buf, len, off);
			if (r == 0 && memcmp(buf, model + off, len) != 0) {
				diag("thread %u: read at %llu+%llu differs from the model", a->id,
				     (unsigned long long)off, (unsigned long long)len);
				failures++;
			}
		} else {
			r = img_flush(img);
		}
		if (r < 0) {
			diag("thread %u: op failed: %s", a->id, strerror(-r));
			failures++;
			return NULL;
		}
	}
	return NULL;
}

static void run(const char *name, const char *path, uint8_t initial_pattern_from)
{
	char err[256], cmd[512];
	pthread_t th[NT];
	struct targ a[NT];
	uint8_t *all = malloc(DISK);

	(void)initial_pattern_from;
	failures = 0;
	if (img_open(path, "qcow2", IMG_RDONLY, &img, err, sizeof(err)) < 0 ||
	    img_pread(img, model, DISK, 0) < 0)
		bail_out(err);
	img_close(img);
	if (img_open(path, "qcow2", 0, &img, err, sizeof(err)) < 0)
		bail_out(err);
	for (unsigned t = 0; t < NT; t++) {
		a[t].id = t;
		a[t].seed = 0x9e3779b97f4a7c15ull * (t + 1) + (uint64_t)name[0];
		pthread_create(&th[t], NULL, worker, &a[t]);
	}
	for (unsigned t = 0; t < NT; t++)
		pthread_join(th[t], NULL);
	img_close(img);
	ok(failures == 0, name);

	int same = img_open(path, "qcow2", IMG_RDONLY, &img, err, sizeof(err)) == 0 &&
		   img_pread(img, all, DISK, 0) == 0 && memcmp(all, model, DISK) == 0;
	if (img)
		img_close(img);
	ok(same, "after close, the disk equals the model");
	snprintf(cmd, sizeof(cmd), "qemu-img check -q '%s' >&2", path);
	ok(system(cmd) == 0, "qemu-img check clean");
	free(all);
}

int main(void)
{
	char dir[] = "/tmp/vbdfs-threads.XXXXXX", path[256], cmd[1024];

	log_init("106-qcow2-threads", VLOG_WARN, false);
	if (system("qemu-img --version >/dev/null 2>&1") != 0)
		plan_skip_all("needs qemu-img (qemu-utils)");
	model = malloc(DISK);
	if (!model || !mkdtemp(dir))
		bail_out("setup");
	plan(9);

	snprintf(path, sizeof(path), "%s/a.qcow2", dir);
	snprintf(cmd, sizeof(cmd), "qemu-img create -q -f qcow2 -o cluster_size=512 %s 4M", path);
	if (system(cmd))
		bail_out("qemu-img create");
	run("512 B clusters: concurrent allocating writes", path, 0);

	snprintf(path, sizeof(path), "%s/b.qcow2", dir);
	snprintf(cmd, sizeof(cmd),
		 "qemu-img create -q -f raw %s/base.raw 4M && "
		 "qemu-io -f raw -c 'write -P 0x77 0 4M' %s/base.raw >/dev/null && "
		 "qemu-img create -q -f qcow2 -o cluster_size=4096 -b base.raw -F raw %s",
		 dir, dir, path);
	if (system(cmd))
		bail_out("qemu-img create");
	run("4 KiB clusters over a backing file: concurrent copy-on-write", path, 0);

	snprintf(path, sizeof(path), "%s/c.qcow2", dir);
	snprintf(cmd, sizeof(cmd),
		 "qemu-img create -q -f qcow2 %s/src.qcow2 4M && "
		 "qemu-io -c 'write -P 0x33 0 4M' %s/src.qcow2 >/dev/null && "
		 "qemu-img convert -c -O qcow2 %s/src.qcow2 %s",
		 dir, dir, dir, path);
	if (system(cmd))
		bail_out("qemu-img convert");
	run("compressed 64 KiB clusters: concurrent read-modify-write", path, 0);

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	(void)system(cmd);
	free(model);
	return done_testing();
}
