/* imgtool_io.c - `vbd-img read` and `vbd-img write`: byte ranges, like qemu-io. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imgtool.h"

#define IO_CHUNK (1u << 20)

static void read_help(void)
{
	printf("Usage: %s read [-f FMT] [-U] [-P BYTE | --dump] FILE OFFSET LENGTH\n\n"
	       "Read LENGTH bytes of FILE's virtual disk at OFFSET (suffixes K, M, G, T\n"
	       "allowed), opened read-only.  By default the bytes go to stdout.\n\n"
	       "  -f FMT       raw, qcow2 or qcow; probed if absent\n"
	       "  -P BYTE      verify that every byte equals BYTE (0-255, or 0xNN)\n"
	       "  --dump       print a hex dump (offset, 16 bytes, ASCII) instead\n"
	       "  -U, --force-share  read it even if another process writes it\n"
	       "  -h, --help   this help\n\n"
	       "Exit status: 0 success (pattern matched), 1 error or pattern mismatch\n"
	       "(the first differing offset is printed).\n", TOOL_NAME);
}

static void write_help(void)
{
	printf("Usage: %s write -f FMT (-P BYTE | -z | --stdin) FILE OFFSET LENGTH\n\n"
	       "Write LENGTH bytes into FILE's virtual disk at OFFSET (suffixes K, M, G,\n"
	       "T allowed), then flush.  The format must be given: it is never guessed\n"
	       "for writing.\n\n"
	       "  -f FMT       raw or qcow2 (required)\n"
	       "  -P BYTE      fill the range with BYTE (0-255, or 0xNN)\n"
	       "  -z           make the range read as zeros (write-zeroes)\n"
	       "  --stdin      take exactly LENGTH bytes from standard input\n"
	       "  -h, --help   this help\n\n"
	       "Exit status: 0 written and flushed, 1 error.\n", TOOL_NAME);
}

static int parse_pattern(const char *cmd, const char *s, int *out)
{
	uint64_t v;
	if (parse_uint(s, &v) < 0 || v > 255)
		return usage_err(cmd, "pattern '%s' must be a byte value, 0 to 255", s);
	*out = (int)v;
	return 0;
}

/* OFFSET LENGTH, checked against the disk size. */
static int parse_range(const char *cmd, char **args, uint64_t size, uint64_t *off,
		       uint64_t *len)
{
	if (parse_size(args[0], off) < 0)
		return usage_err(cmd, "invalid offset '%s'", args[0]);
	if (parse_size(args[1], len) < 0)
		return usage_err(cmd, "invalid length '%s'", args[1]);
	if (*off > size || *len > size - *off) {
		tool_err("range %" PRIu64 "+%" PRIu64 " is beyond the end of the disk "
			 "(%" PRIu64 " bytes)", *off, *len, size);
		return EXIT_FAIL;
	}
	return 0;
}

static void dump_line(uint64_t off, const uint8_t *p, size_t n)
{
	printf("%08" PRIx64 ": ", off);
	for (size_t i = 0; i < 16; i++) {
		if (i < n)
			printf(" %02x", p[i]);
		else
			printf("   ");
	}
	printf("  ");
	for (size_t i = 0; i < n; i++)
		putchar(p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '.');
	putchar('\n');
}

int cmd_read(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "dump", no_argument, NULL, 'd' },
		{ "force-share", no_argument, NULL, 'U' },
		{ NULL, 0, NULL, 0 },
	};
	const char *fmt = NULL;
	int pattern = -1, c, r;
	bool dump = false, share = false;

	optind = 0;
	while ((c = getopt_long(argc, argv, "+f:P:hU", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case 'P':
			if ((r = parse_pattern("read", optarg, &pattern)))
				return r;
			break;
		case 'd': dump = true; break;
		case 'U': share = true; break;
		case 'h': read_help(); return EXIT_OK;
		default: return usage_err("read", "bad option");
		}
	}
	if (argc - optind != 3)
		return usage_err("read", "need FILE OFFSET LENGTH");
	if (fmt && !format_known(fmt))
		return usage_err("read", "unknown format '%s' (raw, qcow2 or qcow)", fmt);
	if (dump && pattern >= 0)
		return usage_err("read", "-P and --dump exclude each other");

	const char *path = argv[optind];
	struct img *img;
	uint64_t off, len;
	if (tool_open(path, fmt, IMG_RDONLY | (share ? IMG_FORCE_SHARE : 0), &img) < 0)
		return EXIT_FAIL;
	if ((r = parse_range("read", argv + optind + 1, img_size(img), &off, &len))) {
		img_close(img);
		return r;
	}
	uint8_t *buf = malloc(IO_CHUNK);
	int rc = buf ? EXIT_OK : EXIT_FAIL;
	for (uint64_t done = 0; rc == EXIT_OK && done < len;) {
		size_t n = len - done < IO_CHUNK ? (size_t)(len - done) : IO_CHUNK;
		r = img_pread(img, buf, n, off + done);
		if (r < 0) {
			tool_err("%s: read error at offset %" PRIu64 ": %s", path, off + done,
				 strerror(-r));
			rc = EXIT_FAIL;
			break;
		}
		if (pattern >= 0) {
			for (size_t i = 0; i < n; i++) {
				if (buf[i] != pattern) {
					tool_err("%s: pattern mismatch at offset %" PRIu64
						 ": byte 0x%02x, expected 0x%02x", path,
						 off + done + i, buf[i], pattern);
					rc = EXIT_FAIL;
					break;
				}
			}
		} else if (dump) {
			for (size_t i = 0; i < n; i += 16)
				dump_line(off + done + i, buf + i, n - i < 16 ? n - i : 16);
		} else if ((r = write_full(STDOUT_FILENO, buf, n)) < 0) {
			tool_err("writing to stdout failed: %s", strerror(-r));
			rc = EXIT_FAIL;
		}
		done += n;
	}
	if (rc == EXIT_OK && pattern >= 0)
		printf("read %" PRIu64 " bytes at offset %" PRIu64 ": all 0x%02x\n", len, off,
		       pattern);
	if (!buf)
		tool_err("out of memory");
	free(buf);
	img_close(img);
	return rc;
}

int cmd_write(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "stdin", no_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	const char *fmt = NULL;
	int pattern = -1, c, r;
	bool from_stdin = false, zeroes = false;

	optind = 0;
	while ((c = getopt_long(argc, argv, "+f:P:zh", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case 'P':
			if ((r = parse_pattern("write", optarg, &pattern)))
				return r;
			break;
		case 'z': zeroes = true; break;
		case 's': from_stdin = true; break;
		case 'h': write_help(); return EXIT_OK;
		default: return usage_err("write", "bad option");
		}
	}
	if (argc - optind != 3)
		return usage_err("write", "need FILE OFFSET LENGTH");
	if (!fmt)
		return usage_err("write", "-f FMT is required (a format is never guessed for "
				 "writing)");
	if (!format_known(fmt))
		return usage_err("write", "unknown format '%s' (raw or qcow2)", fmt);
	if ((pattern >= 0) + from_stdin + zeroes != 1)
		return usage_err("write", "give exactly one of -P BYTE, -z and --stdin");

	const char *path = argv[optind];
	struct img *img;
	uint64_t off, len;
	if (tool_open(path, fmt, 0, &img) < 0)
		return EXIT_FAIL;
	if ((r = parse_range("write", argv + optind + 1, img_size(img), &off, &len))) {
		img_close(img);
		return r;
	}
	int rc = EXIT_OK;
	uint8_t *buf = NULL;
	if (zeroes) {
		r = img_write_zeroes(img, off, len);
		if (r < 0) {
			tool_err("%s: write-zeroes at offset %" PRIu64 " failed: %s", path, off,
				 strerror(-r));
			rc = EXIT_FAIL;
		}
	} else if (!(buf = malloc(IO_CHUNK))) {
		tool_err("out of memory");
		rc = EXIT_FAIL;
	} else {
		if (pattern >= 0)
			memset(buf, pattern, IO_CHUNK);
		for (uint64_t done = 0; done < len;) {
			size_t n = len - done < IO_CHUNK ? (size_t)(len - done) : IO_CHUNK;
			if (from_stdin && (r = read_full(STDIN_FILENO, buf, n)) < 0) {
				tool_err("stdin: %s after %" PRIu64 " of %" PRIu64 " bytes",
					 r == -EPIPE ? "ended" : strerror(-r), done, len);
				rc = EXIT_FAIL;
				break;
			}
			r = img_pwrite(img, buf, n, off + done);
			if (r < 0) {
				tool_err("%s: write error at offset %" PRIu64 ": %s", path,
					 off + done, strerror(-r));
				rc = EXIT_FAIL;
				break;
			}
			done += n;
		}
	}
	if (rc == EXIT_OK && (r = img_flush(img)) < 0) {
		tool_err("%s: flush failed: %s", path, strerror(-r));
		rc = EXIT_FAIL;
	}
	if (rc == EXIT_OK)
		printf("wrote %" PRIu64 " bytes at offset %" PRIu64 "\n", len, off);
	free(buf);
	img_close(img);
	return rc;
}
