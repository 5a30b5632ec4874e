/*
 * imgtool.h - the vbd-img subcommands (formats/imgtool_*.c) and the small
 * helpers they share.  formats/vbd-img.c only dispatches to these.
 *
 * Conventions every subcommand keeps:
 *  - errors go to stderr as "vbd-img: FILE: problem; what to do";
 *  - usage errors print one hint line and return EXIT_USAGE;
 *  - a format is never probed for a command that writes to an image.
 */
#ifndef VBDFS_IMGTOOL_H
#define VBDFS_IMGTOOL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "image.h"

#define TOOL_NAME "vbd-img"

/* Exit codes shared by most subcommands (see vbd-img(1)). */
#define EXIT_OK     0
#define EXIT_FAIL   1   /* error: cannot open, I/O error, bad arguments */
#define EXIT_USAGE  1

int cmd_create(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_map(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_read(int argc, char **argv);
int cmd_write(int argc, char **argv);

/* "vbd-img: " + message + newline on stderr. */
void tool_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A usage error: the message and "Try 'vbd-img CMD --help'."; returns
 * EXIT_USAGE so callers can `return usage_err(...)`. */
int usage_err(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The value of --output (json or human) into *json; 0, or a usage error's
 * exit code to return. */
int parse_output(const char *cmd, const char *arg, bool *json);
/* Exactly one FILE operand left after the options, and -f FMT (when
 * given) a format we know; 0, or a usage error's exit code to return. */
int check_file_operand(const char *cmd, int argc, const char *fmt);

/*
 * Parse a byte count: a decimal number with an optional suffix
 * k/K, M, G, T, P, E (powers of 1024; B or none = bytes).  Rejects
 * negatives, garbage and overflow.  0 or -EINVAL.
 */
int parse_size(const char *s, uint64_t *out);

/* Parse an unsigned integer: decimal, or hex with 0x.  0 or -EINVAL. */
int parse_uint(const char *s, uint64_t *out);

/* Split "k1=v1,k2=v2" (in place).  Calls fn for each pair; stops at the
 * first non-zero return and returns it.  A key without '=' is an error. */
int parse_kv_list(char *list, int (*fn)(const char *key, const char *val, void *arg),
		  void *arg, const char *cmd);

/* One qcow2 -o option (cluster_size, compat, refcount_bits) into o;
 * 0 or a usage error (already printed). */
struct qcow2_create_opts;
int qcow2_opt_parse(const char *cmd, const char *key, const char *val,
		    struct qcow2_create_opts *o);

/* Supported format names: "raw", "qcow2", "qcow". */
bool format_known(const char *fmt);

/*
 * Open an image and report failure on stderr ("vbd-img: <message>").
 * fmt NULL probes (only allowed with IMG_RDONLY; enforced by img_open).
 * Returns 0 or a negative errno.
 */
int tool_open(const char *path, const char *fmt, unsigned flags, struct img **out);

/* Human size as qemu-img prints it: "1 GiB", "196 KiB", "1.5 MiB". */
void human_size(uint64_t v, char *buf, size_t len);

/* Print s as a JSON string (quotes included, escaped). */
void json_string(FILE *f, const char *s);

/* qcow2 compat level name for a version: "0.10", "1.1"; NULL otherwise. */
const char *qcow2_compat_name(int version);

/* Read/write helpers that loop over short transfers; 0 or -errno. */
int read_full(int fd, void *buf, size_t len);
int write_full(int fd, const void *buf, size_t len);

/* True if len bytes at p are all zero. */
bool buf_is_zero(const void *p, size_t len);

/* Number of online CPUs (at least 1). */
unsigned cpu_count(void);

#endif
