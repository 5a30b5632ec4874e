/*
 * imgio - drive the formats layer from a test script (like qemu-io).
 *
 *   imgio [-f FMT] [-r] [-n] IMAGE [COMMAND...]
 *
 * -f FMT  format (raw, qcow2, qcow); default: probe (needs -r)
 * -r      read-only    -n  do not open backing files    -d  IMG_DIRECT
 * -U      force share (with -r: read an image another process writes)
 * Each COMMAND is one argument ("write 0 4096 0xab"); without any, commands
 * are read from stdin, one per line.  Commands:
 *   write OFF LEN BYTE        write LEN bytes of BYTE
 *   read OFF LEN BYTE         read and verify every byte is BYTE
 *   dump OFF LEN              write the bytes to stdout
 *   export FILE               write the whole disk to FILE (raw)
 *   discard OFF LEN | zero OFF LEN | flush | resize SIZE
 *   map                       block status extents, one per line
 *   info                      key=value lines
 *   check [fix]               qcow2 check; prints the counts; exit 2 if
 *                             corruptions, 3 if only leaks (like qemu-img)
 *   random SEED COUNT SIZE    COUNT pseudo-random ops (writes of SEED-derived
 *                             data, partial-cluster writes, discards, zeroes,
 *                             flushes) inside the first SIZE bytes; the same
 *                             SEED gives the same ops on any image
 * Exit status: 0 ok, 1 a command failed (message on stderr), 2 open failed
 * (the message from img_open on stderr).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/image.h"
#include "util/log.h"

static struct img *img;

static uint64_t num(const char *s)
{
	return strtoull(s, NULL, 0);
}

static uint64_t rng_next(uint64_t *s)
{
	/* splitmix64 */
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int do_random(uint64_t seed, uint64_t count, uint64_t size)
{
	uint64_t s = seed;
	void *mem = NULL;
	int r = 0;

	/* page-aligned, so IMG_DIRECT (-d) can use O_DIRECT for aligned ops */
	if (posix_memalign(&mem, 4096, 1 << 20) != 0)
		return -ENOMEM;
	uint8_t *buf = mem;
	for (uint64_t i = 0; i < count && r == 0; i++) {
		uint64_t op = rng_next(&s) % 100;
		uint64_t len = 1 + rng_next(&s) % (op < 60 ? 200000 : 600000);
		/* mostly sector-aligned like a guest, sometimes byte-unaligned */
		uint64_t off = rng_next(&s) % size;
		if (rng_next(&s) % 4) {
			uint64_t a = rng_next(&s) % 2 ? 4096 : 512;
			off &= ~(a - 1);
			len = (len + a - 1) & ~(a - 1);
		}
		if (len > size - off)
			len = size - off;
		if (len > (1u << 20))
			len = 1u << 20;
		if (len == 0)
			continue;
		if (op < 70) {
			uint8_t v = (uint8_t)rng_next(&s);
			for (uint64_t k = 0; k < len; k++)
				buf[k] = (uint8_t)(v + (k >> 9) + k * 7);
			r = img_pwrite(img, buf, len, off);
		} else if (op < 80) {
			r = img_discard(img, off, len);
			/* discard may leave unaligned edges: make the result
			 * deterministic for comparisons by zeroing too */
			if (r == 0)
				r = img_write_zeroes(img, off, len);
		} else if (op < 92) {
			r = img_write_zeroes(img, off, len);
		} else {
			r = img_flush(img);
		}
		if (r < 0)
			fprintf(stderr, "random op %" PRIu64 " (%" PRIu64 " at %" PRIu64
				", len %" PRIu64 "): %s\n", i, op, off, len, strerror(-r));
	}
	free(buf);
	return r;
}

static const char *ext_name(enum img_extent_type t)
{
	return t == IMG_EXT_DATA ? "data" : t == IMG_EXT_ZERO ? "zero" : "unallocated";
}

static int command(char *line)
{
	char *argv[8];
	int argc = 0;
	int r = 0;

	for (char *tok = strtok(line, " \t\n"); tok && argc < 8; tok = strtok(NULL, " \t\n"))
		argv[argc++] = tok;
	if (argc == 0 || argv[0][0] == '#')
		return 0;
	const char *c = argv[0];
	if (!strcmp(c, "write") && argc == 4) {
		uint64_t len = num(argv[2]);
		uint8_t *b = malloc(len ? len : 1);
		if (!b)
			return -ENOMEM;
		memset(b, (int)num(argv[3]), len);
		r = img_pwrite(img, b, len, num(argv[1]));
		free(b);
	} else if (!strcmp(c, "read") && argc == 4) {
		uint64_t len = num(argv[2]);
		int v = (int)num(argv[3]);
		uint8_t *b = malloc(len ? len : 1);
		if (!b)
			return -ENOMEM;
		r = img_pread(img, b, len, num(argv[1]));
		for (uint64_t k = 0; r == 0 && k < len; k++)
			if (b[k] != v) {
				fprintf(stderr, "byte %" PRIu64 " is 0x%02x, expected 0x%02x\n",
					num(argv[1]) + k, b[k], v);
				r = -EILSEQ;
			}
		free(b);
	} else if (!strcmp(c, "dump") && argc == 3) {
		uint64_t len = num(argv[2]);
		uint8_t *b = malloc(len ? len : 1);
		if (!b)
			return -ENOMEM;
		r = img_pread(img, b, len, num(argv[1]));
		if (r == 0)
			fwrite(b, 1, len, stdout);
		free(b);
	} else if (!strcmp(c, "export") && argc == 2) {
		FILE *f = fopen(argv[1], "w");
		size_t chunk = 1 << 20;
		uint8_t *b = malloc(chunk);
		if (!f || !b) {
			free(b);
			if (f)
				fclose(f);
			return -errno;
		}
		for (uint64_t off = 0; off < img_size(img) && r == 0; off += chunk) {
			size_t n = img_size(img) - off < chunk ? img_size(img) - off : chunk;
			r = img_pread(img, b, n, off);
			if (r == 0 && fwrite(b, 1, n, f) != n)
				r = -EIO;
		}
		free(b);
		if (fclose(f) != 0 && r == 0)
			r = -EIO;
	} else if (!strcmp(c, "discard") && argc == 3) {
		r = img_discard(img, num(argv[1]), num(argv[2]));
	} else if (!strcmp(c, "zero") && argc == 3) {
		r = img_write_zeroes(img, num(argv[1]), num(argv[2]));
	} else if (!strcmp(c, "resize") && argc == 2) {
		r = img_resize(img, num(argv[1]));
	} else if (!strcmp(c, "flush")) {
		r = img_flush(img);
	} else if (!strcmp(c, "map")) {
		struct img_extent e;
		for (uint64_t off = 0; off < img_size(img); off += e.length) {
			r = img_block_status(img, off, img_size(img) - off, &e);
			if (r < 0)
				break;
			printf("%" PRIu64 " %" PRIu64 " %s%s depth=%u host=%" PRIu64 "\n",
			       e.offset, e.length, ext_name(e.type), e.compressed ? " compressed" : "",
			       e.depth, e.host_offset);
		}
	} else if (!strcmp(c, "info")) {
		struct img_info in;
		img_get_info(img, &in);
		printf("format=%s\nvirtual_size=%" PRIu64 "\ncluster_size=%u\nversion=%d\n"
		       "refcount_bits=%u\ndirty=%d\ncorrupt=%d\nreadonly=%d\ncaps=0x%x\n"
		       "backing_file=%s\nbacking_format=%s\ncompression=%s\n",
		       in.format, in.virtual_size, in.cluster_size, in.version, in.refcount_bits,
		       in.dirty, in.corrupt, in.readonly, img_caps(img),
		       in.backing_file ? in.backing_file : "", in.backing_format ? in.backing_format : "",
		       in.compression ? in.compression : "");
		int depth = 0;
		for (struct img *b = in.backing; b; b = in.backing) {
			img_get_info(b, &in);
			printf("backing%d=%s:%s\n", ++depth, in.format, in.path);
		}
	} else if (!strcmp(c, "check")) {
		struct img_check_result res;
		r = img_check(img, argc > 1 && !strcmp(argv[1], "fix"), &res);
		printf("corruptions=%" PRIu64 "\nleaks=%" PRIu64 "\nleaks_fixed=%" PRIu64
		       "\ncheck_errors=%" PRIu64 "\nallocated_clusters=%" PRIu64 "\n",
		       res.corruptions, res.leaks, res.leaks_fixed, res.check_errors,
		       res.allocated_clusters);
		if (r == 0 && res.check_errors)
			return 1;
		if (r == 0 && res.corruptions)
			return 2;
		if (r == 0 && res.leaks > res.leaks_fixed)
			return 3;
	} else if (!strcmp(c, "random") && argc == 4) {
		r = do_random(num(argv[1]), num(argv[2]), num(argv[3]));
	} else {
		fprintf(stderr, "imgio: bad command '%s'\n", c);
		return 1;
	}
	if (r < 0) {
		fprintf(stderr, "imgio: %s: %s\n", c, strerror(-r));
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *fmt = NULL;
	unsigned flags = 0;
	char err[512];
	int opt, r, rc = 0;

	log_init("imgio", VLOG_INFO, false);
	while ((opt = getopt(argc, argv, "+f:rndU")) != -1) {
		switch (opt) {
		case 'f': fmt = optarg; break;
		case 'r': flags |= IMG_RDONLY; break;
		case 'n': flags |= IMG_NOBACKING; break;
		case 'd': flags |= IMG_DIRECT; break;
		case 'U': flags |= IMG_FORCE_SHARE; break;
		default:
			fprintf(stderr, "usage: imgio [-f FMT] [-r] [-n] IMAGE [COMMAND...]\n");
			return 2;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "usage: imgio [-f FMT] [-r] [-n] IMAGE [COMMAND...]\n");
		return 2;
	}
	r = img_open(argv[optind], fmt, flags, &img, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "imgio: open: %s\n", err);
		return 2;
	}
	if (optind + 1 < argc) {
		for (int i = optind + 1; i < argc && rc == 0; i++) {
			char *line = strdup(argv[i]);
			rc = command(line);
			free(line);
		}
	} else {
		char line[512];
		/* flushed after each command: a script driving us through a
		 * pipe waits for the answers */
		while (rc == 0 && fgets(line, sizeof(line), stdin)) {
			rc = command(line);
			fflush(stdout);
		}
	}
	img_close(img);
	return rc;
}
