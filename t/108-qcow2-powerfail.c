/*
 * Power-failure consistency of the qcow2 writer.  t/105 kills the writer,
 * but the page cache survives a SIGKILL, so it cannot see a missing or
 * misplaced fdatasync.  Here a child writes through the format layer under
 * the fmtwlog shim, which logs every write and sync to the image in order.
 * The parent then builds the disk states a power failure could leave: the
 * image as of some sync, plus an arbitrary subset of the 4 KiB pieces
 * written after it (the disk may have persisted any of them, in any
 * order).  For each state:
 *   - qemu-img check finds no corruption (leaks are allowed);
 *   - every write acknowledged by a completed img_flush before that point
 *     reads back (bytes may also hold data of later, unacknowledged ops).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "formats/image.h"
#include "util/log.h"
#include "util/tap.h"

#define DISK (4u << 20)
#define NOPS 240
#define MAX_OP (48u << 10)
#define PIECE 4096u

#include "write-ops.h" /* struct op, mix(), op_of(), op_byte() */

static bool flush_after(uint64_t seed, uint64_t j)
{
	return mix(seed ^ (j * 7919)) % 5 == 0;
}

/* ---- the child: writes through the format layer, marks its progress ---- */

static int child(const char *img_path, const char *mark_path, uint64_t seed)
{
	char err[256], m[9];
	struct img *img;
	uint8_t *buf = malloc(MAX_OP);
	int mfd = open(mark_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (!buf || mfd < 0 || img_open(img_path, "qcow2", 0, &img, err, sizeof(err)) < 0) {
		fprintf(stderr, "child: %s\n", err);
		return 1;
	}
	for (uint64_t j = 0; j < NOPS; j++) {
		struct op o = op_of(seed, j);
		m[0] = 'S';
		memcpy(m + 1, &j, 8);
		if (pwrite(mfd, m, 9, 0) != 9)
			return 1;
		int r;
		if (o.zero) {
			r = img_write_zeroes(img, o.off, o.len);
		} else {
			for (uint64_t p = 0; p < o.len; p++)
				buf[p] = op_byte(&o, o.off + p);
			r = img_pwrite(img, buf, o.len, o.off);
		}
		if (r < 0)
			return 1;
		if (flush_after(seed, j)) {
			if (img_flush(img) < 0)
				return 1;
			uint64_t n = j + 1;
			m[0] = 'F';
			memcpy(m + 1, &n, 8);
			if (pwrite(mfd, m, 9, 0) != 9)
				return 1;
		}
	}
	img_close(img);
	close(mfd);
	free(buf);
	return 0;
}

/* ---- the parent: replay ---- */

struct rec {
	uint32_t type, file;
	uint64_t off, len;
	const uint8_t *data;
};

static struct rec *recs;
static size_t nrecs;
static uint8_t *logbuf;

static bool load_log(const char *path)
{
	struct stat st;
	int fd = open(path, O_RDONLY);
	if (fd < 0 || fstat(fd, &st) < 0)
		return false;
	uint8_t *b = logbuf = malloc((size_t)st.st_size + 1);
	if (!b || read(fd, b, (size_t)st.st_size) != st.st_size)
		return false;
	close(fd);
	size_t cap = 1024, pos = 0;
	recs = malloc(cap * sizeof(*recs));
	while (pos + 24 <= (size_t)st.st_size) {
		struct rec r;
		memcpy(&r.type, b + pos, 4);
		memcpy(&r.file, b + pos + 4, 4);
		memcpy(&r.off, b + pos + 8, 8);
		memcpy(&r.len, b + pos + 16, 8);
		pos += 24;
		r.data = b + pos;
		if (r.type == 1)
			pos += r.len;
		if (nrecs == cap)
			recs = realloc(recs, (cap *= 2) * sizeof(*recs));
		recs[nrecs++] = r;
	}
	return pos == (size_t)st.st_size;
}

static void apply_piece(int fd, const struct rec *r, uint64_t from, uint64_t to)
{
	static const uint8_t zeros[PIECE];
	if (r->type == 1) {
		if (pwrite(fd, r->data + (from - r->off), to - from, (off_t)from) < 0)
			bail_out("pwrite");
	} else if (r->type == 3 || r->type == 4) {
		for (uint64_t p = from; p < to; p += PIECE) {
			uint64_t n = to - p < PIECE ? to - p : PIECE;
			if (pwrite(fd, zeros, n, (off_t)p) < 0)
				bail_out("pwrite");
		}
	}
}

/* Apply record r to fd, each 4 KiB piece with probability 1/2 if partial. */
static void apply(int fd, const struct rec *r, bool partial, uint64_t *rs)
{
	if (r->file != 0 || r->type == 2 || r->len == 0)
		return;
	uint64_t end = r->off + r->len;
	for (uint64_t p = r->off; p < end;) {
		uint64_t q = (p / PIECE + 1) * PIECE;
		if (q > end)
			q = end;
		*rs = mix(*rs);
		if (!partial || (*rs & 1))
			apply_piece(fd, r, p, q);
		p = q;
	}
}

static bool copy_file(const char *from, const char *to)
{
	char cmd[2048];
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", from, to);
	return system(cmd) == 0;
}

/* Check one crash state at sync index si (record position spos .. next). */
static bool check_state(const char *dir, const char *state, size_t spos, size_t next,
			uint64_t seed, uint64_t *rs, uint8_t *init, uint8_t *model, uint8_t *got,
			unsigned *nchecked)
{
	char crash[300], cmd[1024], err[256];
	uint64_t durable = 0, started = 0;
	bool any_start = false;

	/* progress markers before the next sync */
	for (size_t i = 0; i < next; i++) {
		if (recs[i].file != 1 || recs[i].type != 1 || recs[i].len != 9)
			continue;
		uint64_t v;
		memcpy(&v, recs[i].data + 1, 8);
		if (recs[i].data[0] == 'F')
			durable = v;
		else {
			started = v;
			any_start = true;
		}
	}
	snprintf(crash, sizeof(crash), "%s/crash.qcow2", dir);
	if (!copy_file(state, crash))
		bail_out("cp");
	int fd = open(crash, O_WRONLY);
	for (size_t i = spos; i < next; i++)
		apply(fd, &recs[i], true, rs);
	close(fd);

	snprintf(cmd, sizeof(cmd), "qemu-img check -q '%s' >/dev/null 2>&1", crash);
	int st = system(cmd);
	int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	if (code != 0 && code != 3) {
		diag("qemu-img check exit %d for the state after record %zu", code, spos);
		snprintf(cmd, sizeof(cmd), "qemu-img check '%s' >&2; cp '%s' /tmp/fmt-powerfail-bad.qcow2",
			 crash, crash);
		(void)system(cmd);
		return false;
	}
	memcpy(model, init, DISK);
	for (uint64_t j = 0; j < durable; j++) {
		struct op o = op_of(seed, j);
		for (uint64_t p = o.off; p < o.off + o.len; p++)
			model[p] = op_byte(&o, p);
	}
	struct img *img;
	if (img_open(crash, "qcow2", IMG_RDONLY, &img, err, sizeof(err)) < 0) {
		diag("open: %s", err);
		return false;
	}
	int r = img_pread(img, got, DISK, 0);
	img_close(img);
	if (r < 0)
		return false;
	uint64_t bad = 0;
	for (uint64_t b = 0; b < DISK; b++) {
		if (got[b] == model[b])
			continue;
		bool ok_ = false;
		for (uint64_t j = durable; any_start && j <= started && !ok_; j++) {
			struct op o = op_of(seed, j);
			ok_ = b >= o.off && b < o.off + o.len && op_byte(&o, b) == got[b];
		}
		if (!ok_ && bad++ < 3)
			diag("byte %llu: 0x%02x, durable 0x%02x (%llu ops durable, state at record %zu)",
			     (unsigned long long)b, got[b], model[b], (unsigned long long)durable, spos);
	}
	(*nchecked)++;
	return bad == 0;
}

static bool run(const char *self, const char *dir, const char *name, const char *create,
		uint8_t init_byte, uint64_t seed, unsigned points)
{
	char img[256], mark[256], logp[256], state[256], init_copy[256], cmd[4096];
	uint8_t *init = malloc(DISK), *model = malloc(DISK), *got = malloc(DISK);
	const char *build = getenv("VBDFS_BUILD");
	unsigned nchecked = 0;
	bool good = true;

	snprintf(img, sizeof(img), "%s/%s.qcow2", dir, name);
	snprintf(mark, sizeof(mark), "%s/%s.mark", dir, name);
	snprintf(logp, sizeof(logp), "%s/%s.log", dir, name);
	snprintf(state, sizeof(state), "%s/%s.state", dir, name);
	snprintf(init_copy, sizeof(init_copy), "%s/%s.init", dir, name);
	snprintf(cmd, sizeof(cmd), "cd '%s' && %s %s.qcow2 4M && cp %s.qcow2 %s.init", dir, create,
		 name, name, name);
	if (system(cmd) != 0)
		bail_out("qemu-img create");
	/* the disk before the writer: read through the format layer */
	{
		struct img *im;
		char e[256];
		(void)init_byte;
		if (img_open(img, "qcow2", IMG_RDONLY, &im, e, sizeof(e)) < 0 ||
		    img_pread(im, init, DISK, 0) < 0)
			bail_out(e);
		img_close(im);
	}

	snprintf(cmd, sizeof(cmd),
		 "ASAN_OPTIONS=\"${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0\" "
		 "LD_PRELOAD='%s/t/shim/fmtwlog.so' WLOG_PATH='%s' WLOG_MARK='%s' WLOG_FILE='%s' "
		 "'%s' child '%s' '%s' %llu",
		 build, img, mark, logp, self, img, mark, (unsigned long long)seed);
	if (system(cmd) != 0) {
		diag("the writer failed");
		return false;
	}
	nrecs = 0;
	if (!load_log(logp)) {
		diag("bad log");
		return false;
	}
	/* positions of syncs on the image */
	size_t *syncs = malloc((nrecs + 1) * sizeof(size_t)), ns = 0;
	for (size_t i = 0; i < nrecs; i++)
		if (recs[i].type == 2 && recs[i].file == 0)
			syncs[ns++] = i;
	syncs[ns] = nrecs;
	if (!copy_file(init_copy, state))
		bail_out("cp");

	/* walk the syncs in order, keeping the synced state; check some */
	uint64_t rs = seed;
	int sfd = open(state, O_WRONLY);
	size_t applied = 0;
	for (size_t k = 0; k <= ns && good; k++) {
		size_t upto = k == 0 ? 0 : syncs[k - 1];
		for (; applied < upto; applied++)
			apply(sfd, &recs[applied], false, &rs);
		bool pick = (mix(seed + k) % (ns / points + 1)) == 0 || k == ns;
		if (!pick)
			continue;
		fsync(sfd);
		good = check_state(dir, state, upto, syncs[k], seed, &rs, init, model, got,
				   &nchecked);
	}
	close(sfd);
	diag("%s: %zu log records, %zu syncs, %u crash states checked", name, nrecs, ns, nchecked);
	free(syncs);
	free(recs);
	recs = NULL;
	free(logbuf);
	logbuf = NULL;
	free(init);
	free(model);
	free(got);
	return good && nchecked > 0;
}

int main(int argc, char **argv)
{
	char dir[] = "/dev/shm/vbdfs-powerfail.XXXXXX", cmd[600];

	if (argc == 5 && !strcmp(argv[1], "child"))
		return child(argv[2], argv[3], strtoull(argv[4], NULL, 0));
	log_init("108-qcow2-powerfail", VLOG_WARN, false);
	if (system("qemu-img --version >/dev/null 2>&1") != 0)
		plan_skip_all("needs qemu-img (qemu-utils)");
	const char *build = getenv("VBDFS_BUILD");
	char shim[512];
	snprintf(shim, sizeof(shim), "%s/t/shim/fmtwlog.so", build ? build : "build");
	if (!build || access(shim, R_OK) != 0)
		plan_skip_all("needs VBDFS_BUILD and the fmtwlog shim (run through make check)");
	if (!mkdtemp(dir)) {
		strcpy(dir, "/tmp/vbdfs-powerfail.XXXXXX");
		if (!mkdtemp(dir))
			bail_out("mkdtemp");
	}
	plan(4);
	ok(run(argv[0], dir, "c4k", "qemu-img create -q -f qcow2 -o cluster_size=4096", 0, 11, 25),
	   "4 KiB clusters: every power-failure state is consistent and keeps flushed data");
	ok(run(argv[0], dir, "c64k", "qemu-img create -q -f qcow2", 0, 12, 25),
	   "64 KiB clusters: same");
	ok(run(argv[0], dir, "cow",
	       "qemu-img create -q -f raw base.raw 4M && "
	       "qemu-io -f raw -c 'write -P 0x5c 0 4M' base.raw >/dev/null && "
	       "qemu-img create -q -f qcow2 -o cluster_size=4096 -b base.raw -F raw",
	       0x5c, 13, 25),
	   "over a backing file (copy-on-write, zero clusters): same");
	ok(run(argv[0], dir, "snap",
	       "mk() { qemu-img create -q -f qcow2 -o cluster_size=4096 \"$1\" 4M && "
	       "qemu-io -f qcow2 -c 'write -P 0x21 0 2M' \"$1\" >/dev/null && "
	       "qemu-img snapshot -c s1 \"$1\"; }; mk",
	       0, 14, 25),
	   "with an internal snapshot (shared tables copied on write): same");
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	(void)system(cmd);
	return done_testing();
}
