/*
 * Unit tests: inflating compressed clusters (formats/zcodec.c) follows
 * QEMU's rules (trailing bytes, overlong and truncated streams), and the
 * compressor of the qcow2 writer round-trips through it, from several
 * threads at once (each thread reuses its own stream).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "formats/qcow2_writer.h"
#include "formats/zcodec.h"
#include "util/tap.h"

#define CS 65536

/* raw deflate (window 2^12) of len bytes, as QEMU writes it */
static size_t deflate_raw(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
	z_stream z;
	memset(&z, 0, sizeof(z));
	deflateInit2(&z, 6, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY);
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)len;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	int r = deflate(&z, Z_FINISH);
	size_t n = cap - z.avail_out;
	deflateEnd(&z);
	return r == Z_STREAM_END ? n : 0;
}

static void fill(uint8_t *p, size_t len, unsigned seed)
{
	/* compressible but not trivial: words from a small LCG */
	static const char *const w[] = { "block ", "qcow2 ", "cluster ", "xen ", "ring ",
					 "grant ", "\n", "0123 " };
	size_t i = 0;
	while (i < len) {
		seed = seed * 1103515245u + 12345u;
		const char *s = w[(seed >> 16) % 8];
		while (*s && i < len)
			p[i++] = (uint8_t)*s++;
	}
}

struct thr {
	unsigned seed;
	int failures;
};

static void *roundtrip(void *arg)
{
	struct thr *t = arg;
	struct qcow2_compressor *c = qcow2_compressor_new();
	uint8_t *in = malloc(CS), *z = malloc(CS), *out = malloc(CS);

	for (int i = 0; i < 40; i++) {
		fill(in, CS, t->seed + (unsigned)i);
		ssize_t n = qcow2_compress_cluster(c, in, CS, z);
		if (n <= 0 || zcodec_inflate_cluster(z, (size_t)n, out, CS) != 0 ||
		    memcmp(in, out, CS) != 0)
			t->failures++;
	}
	free(in);
	free(z);
	free(out);
	qcow2_compressor_free(c);
	return NULL;
}

int main(void)
{
	uint8_t *in = malloc(2 * CS), *z = malloc(3 * CS), *out = malloc(CS);
	size_t n;

	plan(10);
	fill(in, 2 * CS, 7);

	n = deflate_raw(in, CS, z, 3 * CS);
	ok(n > 0 && n < CS, "test stream made");
	ok(zcodec_inflate_cluster(z, n, out, CS) == 0 && memcmp(in, out, CS) == 0,
	   "one cluster inflates exactly");
	memset(z + n, 0xa5, 700);
	ok(zcodec_inflate_cluster(z, n + 700, out, CS) == 0 && memcmp(in, out, CS) == 0,
	   "trailing bytes (the next cluster's) are ignored");
	ok(zcodec_inflate_cluster(z, n / 2, out, CS) == -EIO, "truncated stream: EIO");

	n = deflate_raw(in, CS - 1000, z, 3 * CS);
	ok(zcodec_inflate_cluster(z, n, out, CS) == -EIO, "less than a cluster: EIO");

	n = deflate_raw(in, 2 * CS, z, 3 * CS);
	ok(zcodec_inflate_cluster(z, n, out, CS) == 0 && memcmp(in, out, CS) == 0,
	   "a stream running past a full cluster is accepted (QEMU's Z_BUF_ERROR rule)");

	memset(z, 0xff, 4096);
	ok(zcodec_inflate_cluster(z, 4096, out, CS) == -EIO, "garbage: EIO");
	ok(zcodec_inflate_cluster(z, 0, out, CS) == -EIO, "empty input: EIO");

	/* the writer's compressor: an incompressible cluster does not fit */
	struct qcow2_compressor *c = qcow2_compressor_new();
	for (size_t i = 0; i < CS; i++)
		in[i] = (uint8_t)(rand() >> 7);
	ok(qcow2_compress_cluster(c, in, CS, z) == 0, "random data: stored uncompressed");
	qcow2_compressor_free(c);

	/* several threads, each with its own decompressor state */
	pthread_t tid[4];
	struct thr t[4];
	int fails = 0;
	for (int i = 0; i < 4; i++) {
		t[i].seed = 100u * (unsigned)i;
		t[i].failures = 0;
		pthread_create(&tid[i], NULL, roundtrip, &t[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(tid[i], NULL);
		fails += t[i].failures;
	}
	is_int(fails, 0, "compress/inflate round trips on 4 threads");
	free(in);
	free(z);
	free(out);
	return done_testing();
}
