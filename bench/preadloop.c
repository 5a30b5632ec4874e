/*
 * preadloop - the baseline for bench/engine.sh: one thread doing pread(2)
 * in a loop on a file, as fast as it can.
 *
 *   preadloop FILE BS seq|rand SECONDS
 * Prints "iops N mib_s M".
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	struct stat st;
	uint64_t rng = 88172645463325252ull, blocks, n = 0, pos = 0;
	int fd;

	if (argc != 5) {
		fprintf(stderr, "usage: preadloop FILE BS seq|rand SECONDS\n");
		return 2;
	}
	size_t bs = strtoul(argv[2], NULL, 0);
	int rnd = strcmp(argv[3], "rand") == 0;
	double secs = atof(argv[4]), t0, t;
	char *buf = aligned_alloc(4096, bs);

	fd = open(argv[1], O_RDONLY);
	if (fd < 0 || fstat(fd, &st) < 0 || !buf || bs == 0)
		return 1;
	blocks = (uint64_t)st.st_size / bs;
	t0 = now();
	do {
		for (int i = 0; i < 64; i++, n++) {
			uint64_t b;
			if (rnd) {
				rng ^= rng << 13;
				rng ^= rng >> 7;
				rng ^= rng << 17;
				b = rng % blocks;
			} else {
				b = pos++ % blocks;
			}
			if (pread(fd, buf, bs, (off_t)(b * bs)) != (ssize_t)bs)
				return 1;
		}
		t = now();
	} while (t - t0 < secs);
	printf("iops %.0f mib_s %.1f\n", (double)n / (t - t0), (double)n * bs / (t - t0) / 1048576.0);
	return 0;
}
