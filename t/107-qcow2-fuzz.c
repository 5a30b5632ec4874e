/*
 * Mutation fuzzing of the qcow2 parser and writer with fixed seeds: valid
 * images from qemu-img (plain with a backing file, compressed, 512 B
 * clusters, an internal snapshot) get random bytes of their metadata
 * clusters overwritten; each mutant is opened, read whole, block-status
 * mapped, checked, written, discarded and flushed.  Any outcome is fine except a crash, a hang (an
 * alarm per mutant) or a sanitizer report (make asan).
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/image.h"
#include "util/log.h"
#include "util/tap.h"

#define ROUNDS 300   /* per template; FUZZ_ROUNDS and FUZZ_SEED override */

static uint64_t rs;
static uint64_t rnd(void)
{
	rs ^= rs << 13;
	rs ^= rs >> 7;
	rs ^= rs << 17;
	return rs;
}

static uint8_t *slurp(const char *path, size_t *len)
{
	struct stat st;
	int fd = open(path, O_RDONLY);
	uint8_t *b;

	if (fd < 0 || fstat(fd, &st) < 0)
		return NULL;
	b = malloc((size_t)st.st_size);
	if (b && read(fd, b, (size_t)st.st_size) != st.st_size) {
		free(b);
		b = NULL;
	}
	close(fd);
	*len = (size_t)st.st_size;
	return b;
}

static void exercise(const char *path)
{
	char err[256];
	struct img *img;
	struct img_check_result res;
	struct img_extent e;
	static uint8_t buf[1 << 20];

	if (img_open(path, "qcow2", 0, &img, err, sizeof(err)) < 0)
		return;
	uint64_t size = img_size(img);
	for (uint64_t off = 0; off < size && off < (64u << 20); off += sizeof(buf)) {
		size_t n = size - off < sizeof(buf) ? (size_t)(size - off) : sizeof(buf);
		(void)img_pread(img, buf, n, off);
	}
	for (uint64_t off = 0, i = 0; off < size && i < 10000; off += e.length, i++)
		if (img_block_status(img, off, size - off, &e) < 0)
			break;
	(void)img_check(img, 0, &res);
	for (int i = 0; i < 8 && size; i++) {
		uint64_t off = rnd() % size, len = 1 + rnd() % 70000;
		if (len > size - off)
			len = size - off;
		memset(buf, (int)i, len);
		(void)img_pwrite(img, buf, len, off);
		(void)img_discard(img, rnd() % size, 1 + rnd() % 70000 > size ? 1 : 1 + rnd() % 7000);
		(void)img_write_zeroes(img, off, len / 2 + 1 > size - off ? 1 : len / 2 + 1);
	}
	(void)img_flush(img);
	(void)img_check(img, IMG_FIX_LEAKS, &res);
	img_close(img);
}

int main(void)
{
	char dir[] = "/dev/shm/vbdfs-fuzz.XXXXXX", cmd[1024], path[256], mut[300];
	static const char *const names[] = { "plain", "compressed", "small", "snap" };

	log_init("107-qcow2-fuzz", VLOG_ERR, false);
	if (system("qemu-img --version >/dev/null 2>&1") != 0)
		plan_skip_all("needs qemu-img (qemu-utils)");
	if (!mkdtemp(dir)) {   /* tmpfs makes the many fdatasyncs free; else /tmp */
		strcpy(dir, "/tmp/vbdfs-fuzz.XXXXXX");
		if (!mkdtemp(dir))
			bail_out("mkdtemp");
	}
	snprintf(cmd, sizeof(cmd),
		 "cd %s && qemu-img create -q -f raw base.raw 2M && "
		 "qemu-img create -q -f qcow2 -o cluster_size=4096 -b base.raw -F raw plain 4M && "
		 "qemu-io -c 'write -P 1 0 300k' -c 'write -z 1M 64k' -c 'write -P 2 3M 8k' plain >/dev/null && "
		 "qemu-img create -q -f qcow2 src 4M && qemu-io -c 'write -P 3 0 2M' src >/dev/null && "
		 "qemu-img convert -c -O qcow2 -o cluster_size=4096 src compressed && "
		 "qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=8 small 1M && "
		 "qemu-io -c 'write -P 4 0 200k' small >/dev/null && "
		 "qemu-img create -q -f qcow2 -o cluster_size=4096 snap 2M && "
		 "qemu-io -c 'write -P 5 0 100k' snap >/dev/null && qemu-img snapshot -c s1 snap && "
		 "qemu-io -c 'write -P 6 40k 20k' snap >/dev/null", dir);
	if (system(cmd) != 0)
		bail_out("qemu-img failed");
	plan(4);
	/* the mutants make the format layer log a lot: keep it off the TAP stream */
	if (!freopen("/dev/null", "w", stderr))
		bail_out("freopen");
	rs = getenv("FUZZ_SEED") ? strtoull(getenv("FUZZ_SEED"), NULL, 0) | 1 : 0x2545f4914f6cdd1dull;
	int rounds = getenv("FUZZ_ROUNDS") ? atoi(getenv("FUZZ_ROUNDS")) : ROUNDS;
	for (int k = 0; k < 4; k++) {
		size_t len;
		snprintf(path, sizeof(path), "%s/%s", dir, names[k]);
		uint8_t *orig = slurp(path, &len);
		if (!orig)
			bail_out("read template");
		/* metadata lives in the first clusters of these small images */
		size_t span = len < 65536 ? len : 65536;
		for (int i = 0; i < rounds; i++) {
			uint8_t *m = malloc(len);
			memcpy(m, orig, len);
			int flips = 1 + (int)(rnd() % 8);
			for (int f = 0; f < flips; f++) {
				size_t at = (size_t)(rnd() % span);
				switch (rnd() % 4) {
				case 0: m[at] = (uint8_t)rnd(); break;
				case 1: m[at] ^= (uint8_t)(1u << (rnd() % 8)); break;
				case 2: m[at] = 0xff; break;
				default: m[at] = 0; break;
				}
			}
			snprintf(mut, sizeof(mut), "%s/mutant", dir);
			int fd = open(mut, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			if (fd < 0 || write(fd, m, len) != (ssize_t)len)
				bail_out("write mutant");
			close(fd);
			free(m);
			/* the mutant names base.raw relative to dir: keep it there */
			alarm(20);
			exercise(mut);
			alarm(0);
		}
		free(orig);
		ok(1, names[k]);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	(void)system(cmd);
	return done_testing();
}
