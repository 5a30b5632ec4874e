/*
 * fuseprobe - small file probes the /vbd tests need and the shell lacks.
 *
 *   fuseprobe seekmap FILE          data extents by SEEK_DATA/SEEK_HOLE,
 *                                   "START LENGTH" per line (bytes)
 *   fuseprobe lines FILE N [WAITFILE [poll]]
 *                                   open FILE (O_NONBLOCK with poll), wait
 *                                   until WAITFILE exists ("-": don't), then
 *                                   print the first N lines read; with poll,
 *                                   wait with poll() only
 *   fuseprobe eagain FILE           exit 0 if a non-blocking read of FILE
 *                                   fails with EAGAIN
 *   fuseprobe pollidle FILE MS      exit 0 if poll() says FILE is not
 *                                   readable within MS
 * Prints "open" on stderr once FILE is open.
 */
#include <errno.h>
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

static int lines(const char *path, long n, const char *waitfile, bool use_poll)
{
	int fd = open(path, O_RDONLY | (use_poll ? O_NONBLOCK : 0));
	char buf[65536];
	long seen = 0;

	if (fd < 0)
		return perror(path), 1;
	fprintf(stderr, "open\n");
	while (waitfile && strcmp(waitfile, "-") && access(waitfile, F_OK) != 0) {
		struct timespec ts = { 0, 20 * 1000000L };
		nanosleep(&ts, NULL);
	}
	/* Byte at a time would be slow; lines may straddle reads, so count
	 * newlines and print whole reads, cutting after the Nth line. */
	while (seen < n) {
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
		for (ssize_t i = 0; i < r && seen < n; i++) {
			putchar(buf[i]);
			if (buf[i] == '\n')
				seen++;
		}
	}
	fflush(stdout);
	close(fd);
	return seen == n ? 0 : 1;
}

static int eagain(const char *path)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK);
	char buf[4096];
	ssize_t r;

	if (fd < 0)
		return perror(path), 1;
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

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "seekmap"))
		return seekmap(argv[2]);
	if (argc >= 4 && !strcmp(argv[1], "lines"))
		return lines(argv[2], atol(argv[3]), argc > 4 ? argv[4] : NULL, argc > 5);
	if (argc == 3 && !strcmp(argv[1], "eagain"))
		return eagain(argv[2]);
	if (argc == 4 && !strcmp(argv[1], "pollidle"))
		return pollidle(argv[2], atoi(argv[3]));
	fprintf(stderr, "usage: fuseprobe seekmap|lines|eagain|pollidle FILE ...\n");
	return 2;
}
