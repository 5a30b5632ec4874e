/*
 * qpatch - read and patch big-endian fields of a file, for crafting hostile
 * images in tests (python starts too slowly on a loaded machine).
 *
 *   qpatch FILE get OFF WIDTH [MASK]   print the field (decimal), & MASK
 *   qpatch FILE set OFF WIDTH VALUE    store VALUE
 *   qpatch FILE or  OFF WIDTH BITS     field |= BITS
 *   qpatch FILE andnot OFF WIDTH BITS  field &= ~BITS
 *   qpatch FILE add OFF WIDTH N        field += N
 *   qpatch FILE truncate LEN           (LEN < 0: shrink by -LEN)
 * WIDTH is 1, 2, 4 or 8 bytes; numbers take 0x prefixes.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint64_t num(const char *s)
{
	return strtoull(s, NULL, 0);
}

int main(int argc, char **argv)
{
	if (argc < 4)
		goto usage;
	int fd = open(argv[1], O_RDWR);
	if (fd < 0) {
		perror(argv[1]);
		return 1;
	}
	if (!strcmp(argv[2], "truncate")) {
		struct stat st;
		long long n = strtoll(argv[3], NULL, 0);
		fstat(fd, &st);
		return ftruncate(fd, n < 0 ? st.st_size + n : n) ? 1 : 0;
	}
	if (argc < 5)
		goto usage;
	uint64_t off = num(argv[3]), v = 0;
	unsigned w = (unsigned)num(argv[4]);
	uint8_t b[8];
	if (w < 1 || w > 8 || pread(fd, b, w, (off_t)off) != (ssize_t)w) {
		fprintf(stderr, "qpatch: cannot read %u bytes at %" PRIu64 "\n", w, off);
		return 1;
	}
	for (unsigned i = 0; i < w; i++)
		v = v << 8 | b[i];
	const char *op = argv[2];
	uint64_t arg = argc > 5 ? num(argv[5]) : UINT64_MAX;
	if (!strcmp(op, "get")) {
		printf("%" PRIu64 "\n", v & arg);
		return 0;
	} else if (!strcmp(op, "set") && argc > 5) {
		v = arg;
	} else if (!strcmp(op, "or") && argc > 5) {
		v |= arg;
	} else if (!strcmp(op, "andnot") && argc > 5) {
		v &= ~arg;
	} else if (!strcmp(op, "add") && argc > 5) {
		v += arg;
	} else {
		goto usage;
	}
	for (int i = (int)w - 1; i >= 0; i--) {
		b[i] = (uint8_t)v;
		v >>= 8;
	}
	return pwrite(fd, b, w, (off_t)off) == (ssize_t)w ? 0 : 1;
usage:
	fprintf(stderr, "usage: qpatch FILE get|set|or|andnot|add OFF WIDTH [VALUE] | truncate LEN\n");
	return 2;
}
