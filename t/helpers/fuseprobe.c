/*
 * fuseprobe - small file probes the /vbd tests need and the shell lacks.
 *
 *   fuseprobe seekmap FILE          data extents by SEEK_DATA/SEEK_HOLE,
 *                                   "START LENGTH" per line (bytes)
 *   fuseprobe lines FILE N [WAITFILE [poll]]
 *                                   open FILE (O_NONBLOCK with poll), wait
 *                                   until WAITFILE exists ("-": don't), then
 *                                   print the first N lines read (N 0: all,
 *                                   until EOF); with poll, wait with poll()
 *                                   only
 *   fuseprobe follow FILE N [WAITFILE [poll]]
 *                                   the same from the end of FILE at open
 *                                   (lseek SEEK_END): only what is added
 *   fuseprobe eagain FILE           exit 0 if a non-blocking read at the end
 *                                   of FILE fails with EAGAIN
 *   fuseprobe pollidle FILE MS      exit 0 if poll() says FILE is not
 *                                   readable within MS
 *   fuseprobe randread FILE COUNT [THREADS]
 *                                   COUNT O_DIRECT 4 KiB reads at random
 *                                   aligned offsets on THREADS threads
 *                                   (default 1); prints "IOPS N" (bench/)
 * Prints "open" on stderr once FILE is open.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int seekmap(const char *path)
{
	int fd = open(path, O_RDONLY);
	off_t end, pos = 0;

	if (fd < 0)
		return perror(path), 1;
	end = lseek(fd, 0, SEEK_END);
	while (pos < end) {
		off_t data = lseek(fd, pos, SEEK_DATA), hole;
		if (data < 0) {
			if (errno == ENXIO)
				break;
			return perror("SEEK_DATA"), 1;
		}
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0)
			return perror("SEEK_HOLE"), 1;
		printf("%lld %lld\n", (long long)data, (long long)(hole - data));
		pos = hole;
	}
	close(fd);
	return 0;
}

static int lines(const char *path, long n, const char *waitfile, bool use_poll, bool from_end)
{
	int fd = open(path, O_RDONLY | (use_poll ? O_NONBLOCK : 0));
	char buf[65536];
	long seen = 0;

	if (fd < 0)
		return perror(path), 1;
	if (from_end && lseek(fd, 0, SEEK_END) < 0)
		return perror("lseek"), 1;
	fprintf(stderr, "open\n");
	while (waitfile && strcmp(waitfile, "-") && access(waitfile, F_OK) != 0) {
		struct timespec ts = { 0, 20 * 1000000L };
		nanosleep(&ts, NULL);
	}
	/* Byte at a time would be slow; lines may straddle reads, so count
	 * newlines and print whole reads, cutting after the Nth line. */
	while (n == 0 || seen < n) {
		ssize_t r;
		if (use_poll) {
			struct pollfd p = { .fd = fd, .events = POLLIN };
			if (poll(&p, 1, 20000) <= 0)
				return fprintf(stderr, "poll timed out\n"), 1;
		}
		r = read(fd, buf, sizeof(buf));
		if (r < 0 && errno == EAGAIN && use_poll)
			continue;
		if (r < 0)
			return perror("read"), 1;
		if (r == 0)
			break;
		for (ssize_t i = 0; i < r && (n == 0 || seen < n); i++) {
			putchar(buf[i]);
			if (buf[i] == '\n')
				seen++;
		}
	}
	fflush(stdout);
	close(fd);
	return n == 0 || seen == n ? 0 : 1;
}

static int eagain(const char *path)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK);
	char buf[4096];
	ssize_t r;

	if (fd < 0)
		return perror(path), 1;
	if (lseek(fd, 0, SEEK_END) < 0)
		return perror("lseek"), 1;
	r = read(fd, buf, sizeof(buf));
	close(fd);
	if (r < 0 && errno == EAGAIN)
		return 0;
	fprintf(stderr, "read returned %zd (%s)\n", r, r < 0 ? strerror(errno) : "data");
	return 1;
}

static int pollidle(const char *path, int ms)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK);
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int r;

	if (fd < 0)
		return perror(path), 1;
	r = poll(&p, 1, ms);
	close(fd);
	return r == 0 ? 0 : 1;
}

struct rr {
	int fd;
	long count;
	uint64_t blocks;
	uint64_t seed;
	int err;
};

static void *rr_main(void *arg)
{
	struct rr *r = arg;
	void *buf;

	if (posix_memalign(&buf, 4096, 4096))
		return r->err = 1, NULL;
	for (long i = 0; i < r->count; i++) {
		/* xorshift64 */
		r->seed ^= r->seed << 13;
		r->seed ^= r->seed >> 7;
		r->seed ^= r->seed << 17;
		if (pread(r->fd, buf, 4096, (off_t)(r->seed % r->blocks) * 4096) != 4096) {
			r->err = 1;
			break;
		}
	}
	free(buf);
	return NULL;
}

static int randread(const char *path, long count, int threads)
{
	struct rr r[64];
	pthread_t th[64];
	struct timespec a, b;
	int fd = open(path, O_RDONLY | O_DIRECT), err = 0;
	off_t size;
	double secs;

	if (fd < 0)
		return perror(path), 1;
	size = lseek(fd, 0, SEEK_END);
	if (threads < 1 || threads > 64 || size < 4096)
		return fprintf(stderr, "bad threads or size\n"), 1;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < threads; i++) {
		r[i] = (struct rr){ fd, count / threads, (uint64_t)size / 4096,
				    0x9e3779b97f4a7c15ull * (uint64_t)(i + 1), 0 };
		pthread_create(&th[i], NULL, rr_main, &r[i]);
	}
	for (int i = 0; i < threads; i++) {
		pthread_join(th[i], NULL);
		err |= r[i].err;
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
	if (err)
		return perror("pread"), 1;
	printf("IOPS %.0f\n", (double)(count / threads * threads) / secs);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && !strcmp(argv[1], "randread"))
		return randread(argv[2], atol(argv[3]), argc > 4 ? atoi(argv[4]) : 1);
	if (argc == 3 && !strcmp(argv[1], "seekmap"))
		return seekmap(argv[2]);
	if (argc >= 4 && (!strcmp(argv[1], "lines") || !strcmp(argv[1], "follow")))
		return lines(argv[2], atol(argv[3]), argc > 4 ? argv[4] : NULL, argc > 5,
			     !strcmp(argv[1], "follow"));
	if (argc == 3 && !strcmp(argv[1], "eagain"))
		return eagain(argv[2]);
	if (argc == 4 && !strcmp(argv[1], "pollidle"))
		return pollidle(argv[2], atoi(argv[3]));
	fprintf(stderr, "usage: fuseprobe seekmap|lines|follow|eagain|pollidle FILE ...\n");
	return 2;
}
