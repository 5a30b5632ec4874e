/*
 * Fuzz target: the qcow2 write path.  An input chooses a small valid qcow2
 * image made in-process by vbdfs' own creator (cluster size, version,
 * refcount width, an optional raw backing file, virtual size), then a
 * sequence of operations: writes (plain and vectored), write-zeroes,
 * discards, flushes, resizes, reopens, checks, reads, allocation maps
 * (img_block_status), and "corrupt" (close, patch bytes of the file,
 * reopen).  Everything lives in memfds.
 *
 * While the image is one vbdfs made and wrote (no corrupt op yet), a shadow
 * copy of the disk in memory says what every byte must read as: what was
 * written, zeros for write-zeroes and grown space, the backing file's data
 * elsewhere.  Then every operation must succeed, every read-back must match
 * the shadow, and img_check() (after every step, if the input says so, and
 * at each check, reopen and at the end) must find no corruption, no leak
 * and no internal error.  Discard is advisory at unaligned edges: clusters
 * wholly inside the range must read as zeros, edge bytes as their old data
 * or zeros (image.h); the shadow takes what was read there.
 *
 * A seal op makes the file unable to grow (F_SEAL_GROW), as a full disk
 * would: then operations may fail, but never corrupt the image (check finds
 * no corruption; leaks are allowed), a failed write or discard leaves only
 * its own range undefined, and after a reopen (whose flush may fail too)
 * everything written before the last successful flush reads back intact.
 *
 * After a corrupt op the image is hostile: results are ignored and only a
 * crash, a sanitizer report, a hang or a leak is a finding.  (The file may
 * grow or be rewritten anywhere; the product does not promise more.)
 *
 * Input layout (missing bytes read as zero):
 *   byte 0  cluster size (bits 0-1), version (2), refcount order (3-5),
 *           backing file (6), check after every step (7)
 *   2 bytes virtual size in 512 B units
 *   1 byte  backing size (bits 0-2: 0..4 quarters), or without a backing
 *           file (bit 3) start from an image made by the sequential writer
 *           of vbd-img convert, its first clusters plain, compressed or
 *           absent as bits 4-7 choose
 *   then ops: 1 opcode byte and its arguments (see run_op()).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/image.h"
#include "formats/qcow2_create.h"
#include "formats/qcow2_writer.h"
#include "fuzz.h"
#include "util/log.h"

#define MAX_OPS       48
#define MAX_SIZE      (4u << 20)     /* virtual size, after resizes too */
#define MAX_IO        (192u << 10)   /* one request */

struct in {
	const uint8_t *p;
	size_t n;
};

static uint64_t take(struct in *in, unsigned bytes)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < bytes; i++) {
		v |= (uint64_t)(in->n ? *in->p : 0) << (8 * i);
		if (in->n) {
			in->p++;
			in->n--;
		}
	}
	return v;
}

struct st {
	int fd, bfd;              /* image and backing memfds (bfd -1: none) */
	char path[64];
	struct img *img;
	uint64_t size;            /* virtual size */
	uint64_t cs;              /* cluster size */
	uint8_t *shadow;          /* MAX_SIZE bytes: what the disk must read as */
	uint8_t *buf;             /* MAX_IO bytes */
	bool hostile;             /* a corrupt op happened: no promises */
	bool check_each;
	/* After a seal op the file cannot grow (F_SEAL_GROW): allocating
	 * operations fail as on a full disk.  Then, per 512 B sector: */
	bool sealed;
	uint8_t known[MAX_SIZE / 512];  /* the shadow is what it must read as */
	uint8_t dirty[MAX_SIZE / 512];  /* written since the last good flush */
};

static void check(bool cond)
{
	if (!cond)
		__builtin_trap();
}

/* While the image is trusted and the file can grow, an operation must
 * succeed. */
static void must(const struct st *s, int r)
{
	if (!s->hostile && !s->sealed)
		check(r == 0);
}

/* After an operation on [off, off+len) of a trusted image: on success the
 * sectors it covers wholly hold what the shadow says; on failure every
 * sector it touched is unknown.  Either way they are dirty until the next
 * successful flush. */
static void settle(struct st *s, uint64_t off, uint64_t len, int r)
{
	if (s->hostile || len == 0)
		return;
	for (uint64_t i = off / 512; i <= (off + len - 1) / 512; i++) {
		s->dirty[i] = 1;
		if (r < 0)
			s->known[i] = 0;
		else if (i * 512 >= off && (i + 1) * 512 <= off + len)
			s->known[i] = 1;
	}
}

/* A flush (or a close) happened: r == 0 made everything durable; after a
 * failure what was written since the last good flush may be lost on
 * reopen (the file is then a crash state). */
static void flushed(struct st *s, int r, bool reopening)
{
	if (s->hostile || (r < 0 && !reopening))
		return;   /* a failed flush alone loses nothing: reads still see it all */
	for (size_t i = 0; i < sizeof(s->dirty); i++) {
		if (r < 0 && s->dirty[i])
			s->known[i] = 0;
		s->dirty[i] = 0;
	}
}

/* Does the data read at off match the shadow wherever it is known? */
static bool matches(const struct st *s, const uint8_t *data, uint64_t off, uint64_t len)
{
	if (!s->sealed)
		return memcmp(data, s->shadow + off, len) == 0;
	for (uint64_t x = off; x < off + len;) {
		uint64_t end = (x / 512 + 1) * 512;
		if (end > off + len)
			end = off + len;
		if (s->known[x / 512] && memcmp(data + (x - off), s->shadow + x, end - x) != 0)
			return false;
		x = end;
	}
	return true;
}

/* Data written at disk offset x by a write with seed k: varies with the
 * offset so a write that lands in the wrong place is seen. */
static uint8_t pattern(uint8_t k, uint64_t x)
{
	return (uint8_t)(k + x * 131 + (x >> 9) * 7 + (x >> 16));
}

/* What backing files hold (their first bytes), made once. */
static uint8_t *backing_data;

static uint8_t backing_byte(uint64_t x)
{
	return (uint8_t)(0x5a ^ (x * 13) ^ (x >> 9));
}

static int open_img(struct st *s)
{
	char err[256];

	s->img = NULL;
	return img_open(s->path, "qcow2", 0, &s->img, err, sizeof(err));
}

/* Compare [off, off+len) with the shadow (a trusted image) or just read it. */
static void verify(struct st *s, uint64_t off, uint64_t len)
{
	while (len > 0) {
		size_t n = len < MAX_IO ? (size_t)len : MAX_IO;
		int r = img_pread(s->img, s->buf, n, off);
		/* (with a sealed file a read may fail to write back metadata) */
		must(s, r);
		if (!s->hostile && r == 0)
			check(matches(s, s->buf, off, n));
		off += n;
		len -= n;
	}
}

static void do_check(struct st *s, unsigned fix)
{
	struct img_check_result res;

	memset(&res, 0, sizeof(res));
	int r = img_check(s->img, fix, &res);
	if (s->hostile)
		return;
	check(r == 0 || s->sealed);   /* a repair may need space */
	check(res.corruptions == 0);
	/* failed allocations and flushes may leak clusters, never corrupt */
	if (!s->sealed)
		check(res.leaks == 0 && res.check_errors == 0);
}

/* Reopen from the file; false if a hostile image no longer opens. */
static bool reopen(struct st *s)
{
	int r = img_flush(s->img);

	must(s, r);
	flushed(s, r, true);
	img_close(s->img);
	s->img = NULL;
	r = open_img(s);
	/* an image vbdfs wrote opens, even after failed flushes */
	check(r == 0 || s->hostile);
	if (r < 0)
		return false;
	if (!s->hostile) {
		check(img_size(s->img) == s->size);
		check(img_caps(s->img) & IMG_CAN_WRITE);
	}
	s->size = img_size(s->img);
	return true;
}

/* An (offset, length) inside the disk, aligned as the input asks. */
static bool range(struct st *s, struct in *in, uint64_t *off, uint64_t *len)
{
	unsigned mode = (unsigned)take(in, 1);
	uint64_t o = take(in, 3), l = take(in, 3);
	uint64_t align = (mode & 3) == 0 ? 512 : (mode & 3) == 1 ? s->cs : 1;

	if (s->size == 0)
		return false;
	o %= s->size;
	o -= o % align;
	if (mode & 4)   /* up to the end of the disk */
		l = s->size - o;
	else
		l = 1 + l % (s->size - o);
	if (l > MAX_IO)
		l = MAX_IO;
	if ((mode & 3) != 2 && l > align && o + l < s->size)
		l -= l % align;
	*off = o;
	*len = l;
	return true;
}

static void op_write(struct st *s, struct in *in, bool vectored)
{
	uint64_t off, len;
	uint8_t k = (uint8_t)take(in, 1);
	unsigned cuts = (unsigned)take(in, 1);

	if (!range(s, in, &off, &len))
		return;
	for (uint64_t i = 0; i < len; i++)
		s->buf[i] = pattern(k, off + i);
	int r;
	if (vectored) {
		/* up to 4 pieces of fuzzed lengths, some possibly empty */
		struct iovec v[4];
		uint64_t at = 0;
		int n = 0;
		for (; n < 3 && at < len; n++) {
			uint64_t piece = (uint64_t)((cuts >> (2 * n)) & 3) * 509 + (cuts & 1);
			if (piece > len - at)
				piece = len - at;
			v[n] = (struct iovec){ s->buf + at, piece };
			at += piece;
		}
		v[n++] = (struct iovec){ s->buf + at, len - at };
		r = img_pwritev(s->img, v, n, off);
	} else {
		r = img_pwrite(s->img, s->buf, len, off);
	}
	must(s, r);
	if (!s->hostile && r == 0)
		memcpy(s->shadow + off, s->buf, len);
	settle(s, off, len, r);
	verify(s, off, len);
}

static void op_zero(struct st *s, struct in *in)
{
	uint64_t off, len;

	if (!range(s, in, &off, &len))
		return;
	int r = img_write_zeroes(s->img, off, len);
	must(s, r);
	if (!s->hostile && r == 0)
		memset(s->shadow + off, 0, len);
	settle(s, off, len, r);
	verify(s, off, len);
}

static void op_discard(struct st *s, struct in *in)
{
	uint64_t off, len;

	if (!range(s, in, &off, &len))
		return;
	if (!(img_caps(s->img) & IMG_CAN_DISCARD) && !s->hostile)
		return;   /* not offered: the engine never asks */
	int r = img_discard(s->img, off, len);
	must(s, r);
	if (s->hostile)
		return;
	if (r == 0) {
		r = img_pread(s->img, s->buf, len, off);
		must(s, r);
	}
	if (r < 0) {
		settle(s, off, len, r);
		return;
	}
	for (uint64_t i = 0; i < len; i++) {
		uint64_t x = off + i, c = x - x % s->cs;
		/* a cluster wholly inside the range (or cut by the disk's end) */
		bool whole = c >= off && (c + s->cs <= off + len || off + len == s->size);
		if (whole)
			check(s->buf[i] == 0);
		else if (s->known[x / 512])
			check(s->buf[i] == 0 || s->buf[i] == s->shadow[x]);
	}
	/* what the edges read as now is what they must keep reading as */
	memcpy(s->shadow + off, s->buf, len);
	settle(s, off, len, 0);
}

static void op_resize(struct st *s, struct in *in)
{
	uint64_t grow = 512 * (take(in, 2) % 1024);

	if (s->size + grow > MAX_SIZE)
		grow = 0;
	uint64_t old = s->size;
	int r = img_resize(s->img, s->size + grow);
	must(s, r);
	s->size = img_size(s->img);
	if (r < 0) {
		check(s->hostile || s->size == old);
		return;
	}
	if (!s->hostile) {
		check(s->size == old + grow);
		/* grown space reads as zeros (the backing file ends before it),
		 * durably: the new size is in the header on return */
		memset(s->shadow + old, 0, grow);
		memset(s->known + old / 512, 1, grow / 512);
		verify(s, old > 4096 ? old - 4096 : 0, s->size - (old > 4096 ? old - 4096 : 0));
	}
}

/* Walk the allocation map over a range: extents tile it, and what the map
 * calls zero or unallocated reads as zeros. */
static void op_map(struct st *s, struct in *in)
{
	uint64_t off, len;

	if (!range(s, in, &off, &len))
		return;
	for (int i = 0; i < 64 && len > 0; i++) {
		struct img_extent e;
		int r = img_block_status(s->img, off, len, &e);
		must(s, r);
		if (r < 0 || s->hostile)
			return;
		check(e.offset == off && e.length > 0 && e.length <= len);
		if (e.type != IMG_EXT_DATA)
			for (uint64_t x = off; x < off + e.length; x++)
				check(s->shadow[x] == 0 || !s->known[x / 512]);
		off += e.length;
		len -= e.length;
	}
}

/* Close, overwrite a few bytes of the file, reopen: the image is hostile
 * from now on.  Offsets favour the first clusters, where the metadata is. */
static bool op_corrupt(struct st *s, struct in *in)
{
	struct stat st;
	unsigned n = 1 + (unsigned)(take(in, 1) % 8);

	img_close(s->img);
	s->img = NULL;
	s->hostile = true;
	if (fstat(s->fd, &st) < 0 || st.st_size <= 0)
		return false;
	for (unsigned i = 0; i < n; i++) {
		unsigned how = (unsigned)take(in, 1);
		uint64_t span = (how & 1) ? (uint64_t)st.st_size : 8 * s->cs;
		uint64_t at = take(in, 3) % (span < (uint64_t)st.st_size ? span : (uint64_t)st.st_size);
		uint8_t v[8];
		size_t len = (how & 2) ? 8 : 1;
		uint64_t x = take(in, len);
		for (size_t b = 0; b < len; b++)   /* big endian, as qcow2 stores */
			v[b] = (uint8_t)(x >> (8 * (len - 1 - b)));
		if (pwrite(s->fd, v, len, (off_t)at) < 0)
			return false;
	}
	return open_img(s) == 0;
}

/* One operation; false ends the input. */
static bool run_op(struct st *s, struct in *in)
{
	unsigned opc = (unsigned)take(in, 1);
	uint64_t off, len;

	switch (opc % 13) {
	case 0: case 1:
		op_write(s, in, false);
		break;
	case 2:
		op_write(s, in, true);
		break;
	case 3:
		op_zero(s, in);
		break;
	case 4:
		op_discard(s, in);
		break;
	case 5: {
		int r = img_flush(s->img);
		must(s, r);
		flushed(s, r, false);
		break;
	}
	case 6:
		op_resize(s, in);
		break;
	case 7:
		if (!reopen(s))
			return false;
		verify(s, 0, s->size < MAX_SIZE ? s->size : MAX_SIZE);
		break;
	case 8:
		do_check(s, (opc >> 6) & (IMG_FIX_LEAKS | IMG_FIX_ERRORS));
		verify(s, 0, s->size < MAX_SIZE ? s->size : MAX_SIZE);
		break;
	case 9:
		if (range(s, in, &off, &len))
			verify(s, off, len);
		break;
	case 10:
		if (!op_corrupt(s, in))
			return false;
		break;
	case 11:
		op_map(s, in);
		break;
	case 12:
		/* from now on the file cannot grow: a full disk */
		if (!s->sealed && fcntl(s->fd, F_ADD_SEALS, F_SEAL_GROW) == 0)
			s->sealed = true;
		break;
	}
	if (s->check_each && !s->hostile)
		do_check(s, 0);
	return true;
}

/* Compressible data for prefilled clusters: runs of 64 equal bytes. */
static uint8_t prefill_byte(uint64_t x)
{
	return (uint8_t)(0x21 + (x >> 6) * 3);
}

/* An image from qcow2_writer (as `vbd-img convert -c` writes them): of the
 * first 64 clusters, some compressed, some plain, some left out. */
static int prefilled(struct st *s, const struct qcow2_create_opts *o, unsigned sel)
{
	struct qcow2_writer *w;
	struct qcow2_compressor *c = qcow2_compressor_new();
	uint64_t n = (s->size + s->cs - 1) / s->cs;
	uint8_t *data = malloc(2 * s->cs);
	char err[256];
	int r = c && data ? qcow2_writer_open(s->path, o, &w, err, sizeof(err)) : -ENOMEM;

	for (uint64_t i = 0; r == 0 && i < n && i < 64; i++) {
		unsigned kind = (unsigned)((i * 7 + sel) % 3);   /* 0 skip, 1 plain, 2 zlib */
		uint64_t base = i * s->cs;
		if (kind == 0)
			continue;
		/* the tail of a last partial cluster is zeros, as convert reads it */
		for (uint64_t x = 0; x < s->cs; x++)
			data[x] = base + x < s->size ? prefill_byte(base + x) : 0;
		memcpy(s->shadow + base, data, base + s->cs <= s->size ? s->cs : s->size - base);
		ssize_t z = kind == 2 ? qcow2_compress_cluster(c, data, s->cs, data + s->cs) : 0;
		if (z < 0)
			r = (int)z;
		else if (z > 0)
			r = qcow2_writer_put(w, i, data + s->cs, (size_t)z, true);
		else
			r = qcow2_writer_put(w, i, data, s->cs, false);
		if (r < 0)
			qcow2_writer_abort(w);
	}
	if (r == 0)
		r = qcow2_writer_finish(w, false, err, sizeof(err));
	qcow2_compressor_free(c);
	free(data);
	return r;
}

/* The starting image: a fresh qcow2 from vbdfs' creator, maybe with a raw
 * backing file holding a pattern over its first 0..4 quarters, or one from
 * the sequential writer with data in it. */
static int setup(struct st *s, struct in *in)
{
	static const unsigned cbits[] = { 9, 12, 16, 11 };
	unsigned cfg = (unsigned)take(in, 1);
	uint64_t units = take(in, 2) % (MAX_SIZE / 2 / 512);
	unsigned extra = (unsigned)take(in, 1), quarters = (extra & 7) % 5;
	struct qcow2_create_opts o;
	char bpath[64], err[256];

	s->size = 512 * (1 + units);
	qcow2_create_opts_default(&o, s->size);
	o.cluster_bits = cbits[cfg & 3];
	o.version = (cfg & 4) ? 2 : 3;
	o.refcount_order = o.version == 2 ? 4 : ((cfg >> 3) & 7) % 7;
	s->cs = 1ull << o.cluster_bits;
	s->check_each = cfg & 0x80;
	memset(s->shadow, 0, s->size);   /* resizes clear what they add */
	if (cfg & 0x40) {
		uint64_t bsize = (s->size / 4 * quarters) & ~511ull;
		s->bfd = memfd_create("fuzz-backing", 0);
		if (s->bfd < 0)
			return -1;
		memcpy(s->shadow, backing_data, bsize);
		if (bsize && write(s->bfd, s->shadow, bsize) != (ssize_t)bsize)
			return -1;
		snprintf(bpath, sizeof(bpath), "/proc/self/fd/%d", s->bfd);
		o.backing_file = bpath;
		o.backing_format = "raw";
	}
	s->fd = memfd_create("fuzz-qcow2", MFD_ALLOW_SEALING);
	if (s->fd < 0)
		return -1;
	snprintf(s->path, sizeof(s->path), "/proc/self/fd/%d", s->fd);
	if (!o.backing_file && (extra & 8))
		check(prefilled(s, &o, extra >> 4) == 0);
	else
		check(qcow2_create(s->path, &o, err, sizeof(err)) == 0);
	check(open_img(s) == 0);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t *shadow, *buf;
	struct in in = { data, size };
	static struct st s;

	log_init("fuzz", VLOG_NONE, false); /* quiet: hostile images are expected */
	/* reused between inputs (fully rewritten by each): allocating 4 MiB per
	 * input would dominate the run time */
	if (!shadow) {
		shadow = malloc(MAX_SIZE);
		buf = malloc(MAX_IO);
		backing_data = malloc(MAX_SIZE / 2);
		if (!shadow || !buf || !backing_data)
			return 0;
		for (uint64_t x = 0; x < MAX_SIZE / 2; x++)
			backing_data[x] = backing_byte(x);
	}
	memset(&s, 0, sizeof(s));
	s.fd = s.bfd = -1;
	memset(s.known, 1, sizeof(s.known));
	s.shadow = shadow;
	s.buf = buf;
	if (setup(&s, &in) == 0) {
		for (int i = 0; i < MAX_OPS && in.n > 0; i++)
			if (!run_op(&s, &in))
				break;
		if (s.img && !s.hostile) {
			/* what was acknowledged survives a close and reopen, cleanly */
			check(reopen(&s));
			do_check(&s, 0);
			verify(&s, 0, s.size);
		}
	}
	img_close(s.img);
	if (s.fd >= 0)
		close(s.fd);
	if (s.bfd >= 0)
		close(s.bfd);
	return 0;
}
