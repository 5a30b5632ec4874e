/*
 * imgtool_convert.c - `vbd-img convert`: copy an image's virtual disk into
 * a new raw or qcow2 image.
 *
 * Pipeline: the main thread walks the source's allocation (img_block_status)
 * and cuts the ranges holding data into jobs of about 1 MiB, aligned to the
 * output's unit (qcow2: its cluster; raw: 4 KiB).  Worker threads take jobs
 * in order, read them from the source (a compressed source is decompressed
 * there, on every worker at once), find the all-zero units and, with -c,
 * compress each cluster.  The main thread writes finished jobs strictly in
 * sequence, so the output is the same bytes whatever the thread count.
 * Plain copies (no compression either side) are done by the main thread
 * itself whenever nothing is queued ahead of them: for a memcpy-sized job
 * the handoff to a worker and back costs more than it saves.
 * Zero units and unallocated ranges are never written: the output is sparse.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image_lock.h"
#include "driver.h"
#include "imgtool.h"
#include "qcow2_writer.h"
#include "util/log.h"

#define JOB_BYTES     (1u << 20)  /* guest bytes per job (at least a cluster) */
#define RAW_UNIT      4096u       /* zero detection granularity for raw output */
#define JOBS_PER_THREAD 4
#define MAX_THREADS   64

enum job_state { JOB_FREE, JOB_PENDING, JOB_RUNNING, JOB_DONE };

struct job {
	enum job_state state;
	uint64_t off, len;    /* guest range (len may pass the end: padded) */
	uint8_t *buf;         /* len bytes of source data */
	uint8_t *cbuf;        /* compressed clusters, one cluster-sized slot each */
	uint32_t *ulen;       /* per unit: 0 all zero, unit size plain, else compressed */
	int err;              /* negative errno from the worker */
};

struct conv {
	struct img *src;
	const char *src_path, *dst_path;
	uint64_t size;
	bool qcow2_out, compress;
	bool sync;                  /* fsync the output at the end */
	uint64_t unit;              /* output cluster size, or RAW_UNIT */
	uint64_t job_max;
	struct qcow2_writer *w;
	int raw_fd;

	/* producer: the next range of the source still to examine */
	uint64_t pos;               /* everything below is queued or skipped */

	/* the job ring; seq numbers grow forever, slot = seq % njobs */
	struct job *jobs;
	unsigned njobs;
	uint64_t head;              /* oldest job not yet written */
	uint64_t tail;              /* next job to queue */
	uint64_t take;              /* next job a worker takes */
	bool stop;
	pthread_mutex_t lock;
	pthread_cond_t work_cv;     /* workers: a job was queued, or stop */
	pthread_cond_t done_cv;     /* main: a job finished */

	/* progress */
	int progress;               /* 0 off, 1 on */
	uint64_t last_progress_ns;
};

static void convert_help(void)
{
	printf("Usage: %s convert [-f FMT] -O raw|qcow2 [-c] [-p] [-U] [-t THREADS]\n"
	       "                   [-o OPTIONS] [--sync] SRC DST\n\n"
	       "Copy the virtual disk of SRC (with its backing chain) into a new image\n"
	       "DST (overwritten if it exists).  Zero and unallocated ranges are not\n"
	       "written, so DST is sparse.  SRC is opened read-only.\n\n"
	       "  -f FMT       format of SRC: raw, qcow2 or qcow; probed if absent\n"
	       "  -O FMT       format of DST: raw or qcow2 (required)\n"
	       "  -c           compress DST's clusters with zlib (qcow2 only), as\n"
	       "               qemu-img convert -c: a cluster that does not shrink\n"
	       "               is stored uncompressed\n"
	       "  -o OPTIONS   qcow2 options for DST: cluster_size=N, compat=0.10|1.1,\n"
	       "               refcount_bits=N (see vbd-img create --help)\n"
	       "  -t THREADS   worker threads reading, decompressing and compressing\n"
	       "               (default: the number of CPUs); the output does not\n"
	       "               depend on it\n"
	       "  --sync       make DST durable (fsync) before exiting; by default,\n"
	       "               as qemu-img convert (cache=unsafe), the kernel writes it\n"
	       "               back later\n"
	       "  -U, --force-share  read SRC even if another process writes it (the\n"
	       "               copy may then be inconsistent)\n"
	       "  -p           show progress on stderr when it is a terminal\n"
	       "  --progress=always|auto|never\n"
	       "               always: also when stderr is not a terminal\n"
	       "  -h, --help   this help\n\n"
	       "Exit status: 0 converted, 1 error (DST is then removed).\n", TOOL_NAME);
}

static size_t units_per_job(const struct conv *cv)
{
	return (size_t)(cv->job_max / cv->unit);
}

/* ---- worker side ---- */

static int job_process(struct conv *cv, struct job *j, struct qcow2_compressor *comp)
{
	uint64_t n = j->len;
	if (j->off + n > cv->size)
		n = cv->size - j->off;
	int r = img_pread(cv->src, j->buf, (size_t)n, j->off);
	if (r < 0)
		return r;
	if (n < j->len)
		memset(j->buf + n, 0, (size_t)(j->len - n));

	size_t units = (size_t)(j->len / cv->unit);
	for (size_t i = 0; i < units; i++) {
		const uint8_t *p = j->buf + i * cv->unit;
		if (buf_is_zero(p, cv->unit)) {
			j->ulen[i] = 0;
		} else if (cv->compress) {
			ssize_t c = qcow2_compress_cluster(comp, p, cv->unit, j->cbuf + i * cv->unit);
			if (c < 0)
				return (int)c;
			j->ulen[i] = c > 0 ? (uint32_t)c : (uint32_t)cv->unit;
		} else {
			j->ulen[i] = (uint32_t)cv->unit;
		}
	}
	return 0;
}

static void *worker_main(void *arg)
{
	struct conv *cv = arg;
	struct qcow2_compressor *comp = NULL;

	if (cv->compress)
		comp = qcow2_compressor_new();
	pthread_mutex_lock(&cv->lock);
	for (;;) {
		while (!cv->stop && cv->take == cv->tail)
			pthread_cond_wait(&cv->work_cv, &cv->lock);
		if (cv->stop)
			break;
		struct job *j = &cv->jobs[cv->take % cv->njobs];
		cv->take++;
		j->state = JOB_RUNNING;
		pthread_mutex_unlock(&cv->lock);

		int r = (cv->compress && !comp) ? -ENOMEM : job_process(cv, j, comp);

		pthread_mutex_lock(&cv->lock);
		j->err = r;
		j->state = JOB_DONE;
		pthread_cond_broadcast(&cv->done_cv);
	}
	pthread_mutex_unlock(&cv->lock);
	qcow2_compressor_free(comp);
	return NULL;
}

/* ---- producer: which ranges hold data ---- */

static uint64_t align_down(uint64_t v, uint64_t a) { return v / a * a; }
static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

/*
 * The next range to copy: [*off, *off + *len), unit-aligned, at most
 * job_max, covering data found at or after cv->pos.  *heavy: it needs
 * (de)compression, worth a worker thread.  Returns 1 with a range, 0 at
 * the end, or a negative errno.
 */
static int next_range(struct conv *cv, uint64_t *off, uint64_t *len, bool *heavy)
{
	while (cv->pos < cv->size) {
		struct img_extent e;
		int r = img_block_status(cv->src, cv->pos, cv->size - cv->pos, &e);
		if (r < 0)
			return r;
		if (e.length == 0 || e.offset != cv->pos || e.length > cv->size - cv->pos)
			return -EIO;
		if (e.type != IMG_EXT_DATA) {
			cv->pos += e.length;
			continue;
		}
		/* Whole units from the one holding pos.  Jobs end on a unit
		 * boundary (or at the end of the disk) and pos moves there, so
		 * this unit was never part of an earlier job. */
		uint64_t start = align_down(cv->pos, cv->unit);
		uint64_t end = start + cv->job_max;
		uint64_t data_end = cv->pos + e.length;
		if (data_end < end)
			end = align_up(data_end, cv->unit);
		*off = start;
		*len = end - start;
		*heavy = cv->compress || e.compressed;
		cv->pos = end < cv->size ? end : cv->size;
		return 1;
	}
	return 0;
}

/* ---- writer side (main thread) ---- */

static int write_job_qcow2(struct conv *cv, const struct job *j)
{
	uint64_t first = j->off / cv->unit;
	size_t units = (size_t)(j->len / cv->unit);

	for (size_t i = 0; i < units; i++) {
		uint32_t n = j->ulen[i];
		if (n == 0)
			continue;
		bool compressed = n < cv->unit;
		const uint8_t *data = compressed ? j->cbuf + i * cv->unit : j->buf + i * cv->unit;
		int r = qcow2_writer_put(cv->w, first + i, data, n, compressed);
		if (r < 0)
			return r;
	}
	return 0;
}

static int write_job_raw(struct conv *cv, const struct job *j)
{
	size_t units = (size_t)(j->len / cv->unit);
	size_t i = 0;

	/* write each run of non-zero units with one pwrite */
	while (i < units) {
		if (j->ulen[i] == 0) {
			i++;
			continue;
		}
		size_t k = i;
		while (k < units && j->ulen[k])
			k++;
		uint64_t off = j->off + i * cv->unit;
		uint64_t len = (k - i) * cv->unit;
		if (off + len > cv->size)
			len = cv->size - off;
		int r = full_pwrite(cv->raw_fd, j->buf + i * cv->unit, (size_t)len, off);
		if (r < 0)
			return r;
		i = k;
	}
	return 0;
}

static void show_progress(struct conv *cv, uint64_t done, bool final)
{
	if (!cv->progress)
		return;
	uint64_t now = now_ns();
	if (!final && now - cv->last_progress_ns < 100000000ull)
		return;
	cv->last_progress_ns = now;
	double pct = cv->size ? 100.0 * (double)done / (double)cv->size : 100.0;
	fprintf(stderr, "    (%.2f/100%%)\r%s", pct, final ? "\n" : "");
	fflush(stderr);
}

/* Write a processed job (or report the error it met); 0 or -errno. */
static int job_finish(struct conv *cv, const struct job *j, int job_err)
{
	if (job_err < 0) {
		tool_err("%s: read error at offset %" PRIu64 ": %s", cv->src_path, j->off,
			 strerror(-job_err));
		return job_err;
	}
	int r = cv->qcow2_out ? write_job_qcow2(cv, j) : write_job_raw(cv, j);
	if (r < 0)
		tool_err("%s: write error near guest offset %" PRIu64 ": %s", cv->dst_path,
			 j->off, strerror(-r));
	return r;
}

static int run_pipeline(struct conv *cv, unsigned threads)
{
	pthread_t tid[MAX_THREADS];
	unsigned started = 0;
	int err = 0;
	bool input_done = false;

	for (; started < threads; started++) {
		if (pthread_create(&tid[started], NULL, worker_main, cv) != 0) {
			err = -EAGAIN;
			break;
		}
	}
	if (started == 0)
		return err;

	for (;;) {
		/* queue as many jobs as there are free slots */
		while (!err && !input_done && cv->tail - cv->head < cv->njobs) {
			uint64_t off, len;
			bool heavy;
			int r = next_range(cv, &off, &len, &heavy);
			if (r < 0) {
				tool_err("%s: cannot get the allocation at offset %" PRIu64 ": %s",
					 cv->src_path, cv->pos, strerror(-r));
				err = r;
				break;
			}
			if (r == 0) {
				input_done = true;
				break;
			}
			struct job *j = &cv->jobs[cv->tail % cv->njobs];
			j->off = off;
			j->len = len;
			j->err = 0;
			if (!heavy && cv->head == cv->tail) {
				/* A plain copy with nothing queued before it: a
				 * memcpy-sized job is cheaper done here than
				 * handed to a worker and back. */
				err = job_finish(cv, j, job_process(cv, j, NULL));
				continue;
			}
			pthread_mutex_lock(&cv->lock);
			j->state = JOB_PENDING;
			cv->tail++;
			pthread_cond_signal(&cv->work_cv);
			pthread_mutex_unlock(&cv->lock);
		}
		if (err || cv->head == cv->tail)
			break;

		/* write the oldest job once it is done */
		struct job *j = &cv->jobs[cv->head % cv->njobs];
		pthread_mutex_lock(&cv->lock);
		while (j->state != JOB_DONE)
			pthread_cond_wait(&cv->done_cv, &cv->lock);
		pthread_mutex_unlock(&cv->lock);
		err = job_finish(cv, j, j->err);
		if (err)
			break;
		j->state = JOB_FREE;
		cv->head++;
		show_progress(cv, cv->head == cv->tail ? cv->pos : j->off + j->len, false);
	}

	pthread_mutex_lock(&cv->lock);
	cv->stop = true;
	pthread_cond_broadcast(&cv->work_cv);
	pthread_mutex_unlock(&cv->lock);
	for (unsigned i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	return err;
}

static int alloc_jobs(struct conv *cv, unsigned threads)
{
	cv->njobs = threads * JOBS_PER_THREAD;
	cv->jobs = calloc(cv->njobs, sizeof(*cv->jobs));
	if (!cv->jobs)
		return -ENOMEM;
	for (unsigned i = 0; i < cv->njobs; i++) {
		struct job *j = &cv->jobs[i];
		j->buf = malloc(cv->job_max);
		j->ulen = calloc(units_per_job(cv), sizeof(uint32_t));
		if (cv->compress)
			j->cbuf = malloc(cv->job_max);
		if (!j->buf || !j->ulen || (cv->compress && !j->cbuf))
			return -ENOMEM;
	}
	return 0;
}

static void free_jobs(struct conv *cv)
{
	for (unsigned i = 0; cv->jobs && i < cv->njobs; i++) {
		free(cv->jobs[i].buf);
		free(cv->jobs[i].cbuf);
		free(cv->jobs[i].ulen);
	}
	free(cv->jobs);
}

static int open_output(struct conv *cv, const struct qcow2_create_opts *q)
{
	char err[512];
	struct stat st;

	/* Only regular files: holes in a device would keep old contents, and
	 * a failed convert removes its output. */
	if (stat(cv->dst_path, &st) == 0) {
		if (!S_ISREG(st.st_mode)) {
			tool_err("%s: not a regular file; convert writes new image files only",
				 cv->dst_path);
			return -EINVAL;
		}
		/* truncating a file of the source chain would destroy the input */
		for (struct img *l = cv->src; l;) {
			struct img_info in;
			struct stat ls;
			img_get_info(l, &in);
			if (stat(in.path, &ls) == 0 && ls.st_dev == st.st_dev &&
			    ls.st_ino == st.st_ino) {
				tool_err("%s: is the source image %s (or in its backing chain); "
					 "choose another output file", cv->dst_path, in.path);
				return -EINVAL;
			}
			l = in.backing;
		}
		/* never replace an image someone uses: they would go on
		 * writing the unlinked file and lose it all */
		char lerr[512] = "";
		int lr = img_lock_check_writable(cv->dst_path, lerr, sizeof(lerr));
		if (lr < 0) {
			tool_err("%s", lerr);
			return lr;
		}
		/* Replace rather than truncate: on ext4, truncating a file to
		 * zero and rewriting it makes close() flush all of it
		 * (auto_da_alloc), which costs more than the whole copy.  A
		 * symbolic link is followed and its target truncated. */
		struct stat lst;
		if (lstat(cv->dst_path, &lst) == 0 && S_ISREG(lst.st_mode) &&
		    unlink(cv->dst_path) < 0 && errno != ENOENT) {
			int r = -errno;
			tool_err("%s: cannot replace the existing file: %s", cv->dst_path,
				 strerror(errno));
			return r;
		}
	}
	if (cv->qcow2_out) {
		int r = qcow2_writer_open(cv->dst_path, q, &cv->w, err, sizeof(err));
		if (r < 0)
			tool_err("%s", err);
		return r;
	}
	cv->raw_fd = img_create_open(cv->dst_path, err, sizeof(err));
	if (cv->raw_fd < 0) {
		int r = cv->raw_fd;
		cv->raw_fd = -1;
		tool_err("%s", err);
		return r;
	}
	/* the holes of a sized, empty file read as zeros */
	if (ftruncate(cv->raw_fd, (off_t)cv->size) < 0) {
		int r = -errno;
		tool_err("%s: cannot set the size to %" PRIu64 ": %s", cv->dst_path, cv->size,
			 strerror(errno));
		return r;
	}
	return 0;
}

static int finish_output(struct conv *cv, bool ok)
{
	char err[512];
	int r = 0;

	if (cv->qcow2_out) {
		if (!cv->w)
			return -EIO;
		if (ok) {
			r = qcow2_writer_finish(cv->w, cv->sync, err, sizeof(err));
			if (r < 0)
				tool_err("%s: %s", cv->dst_path, err);
		} else {
			qcow2_writer_abort(cv->w);
		}
		cv->w = NULL;
		return ok ? r : -EIO;
	}
	if (cv->raw_fd < 0)
		return -EIO;
	if (ok && cv->sync && fsync(cv->raw_fd) < 0) {
		r = -errno;
		tool_err("%s: fsync failed: %s", cv->dst_path, strerror(errno));
	}
	if (close(cv->raw_fd) < 0 && ok && r == 0) {
		r = -errno;
		tool_err("%s: close failed: %s", cv->dst_path, strerror(errno));
	}
	cv->raw_fd = -1;
	return ok ? r : -EIO;
}

struct convert_opts {
	struct qcow2_create_opts q;
	bool any;
};

static int convert_opt(const char *key, const char *val, void *arg)
{
	struct convert_opts *o = arg;
	o->any = true;
	return qcow2_opt_parse("convert", key, val, &o->q);
}

int cmd_convert(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "progress", required_argument, NULL, 'P' },
		{ "sync", no_argument, NULL, 'S' },
		{ "force-share", no_argument, NULL, 'U' },
		{ NULL, 0, NULL, 0 },
	};
	const char *src_fmt = NULL, *out_fmt = NULL;
	struct convert_opts oo;
	struct conv cv;
	unsigned threads = cpu_count();
	int progress_mode = 0; /* 0 never, 1 auto (tty), 2 always */
	bool share = false;
	int c, r;

	memset(&cv, 0, sizeof(cv));
	cv.raw_fd = -1;
	qcow2_create_opts_default(&oo.q, 0);
	oo.any = false;
	optind = 0;
	while ((c = getopt_long(argc, argv, "+f:O:co:pt:hU", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': src_fmt = optarg; break;
		case 'O': out_fmt = optarg; break;
		case 'c': cv.compress = true; break;
		case 'o':
			if ((r = parse_kv_list(optarg, convert_opt, &oo, "convert")))
				return r;
			break;
		case 'p': progress_mode = 1; break;
		case 'S': cv.sync = true; break;
		case 'U': share = true; break;
		case 'P':
			if (!strcmp(optarg, "always"))
				progress_mode = 2;
			else if (!strcmp(optarg, "auto"))
				progress_mode = 1;
			else if (!strcmp(optarg, "never"))
				progress_mode = 0;
			else
				return usage_err("convert", "--progress must be always, auto or never");
			break;
		case 't': {
			uint64_t t;
			if (parse_uint(optarg, &t) < 0 || t < 1 || t > MAX_THREADS)
				return usage_err("convert", "-t needs a thread count from 1 to %d",
						 MAX_THREADS);
			threads = (unsigned)t;
			break;
		}
		case 'h': convert_help(); return EXIT_OK;
		default: return usage_err("convert", "bad option");
		}
	}
	if (argc - optind != 2)
		return usage_err("convert", "need SRC and DST");
	if (!out_fmt)
		return usage_err("convert", "-O raw or -O qcow2 is required");
	if (strcmp(out_fmt, "raw") && strcmp(out_fmt, "qcow2"))
		return usage_err("convert", "cannot write format '%s' (only raw and qcow2)",
				 out_fmt);
	if (src_fmt && !format_known(src_fmt))
		return usage_err("convert", "unknown format '%s' (raw, qcow2 or qcow)", src_fmt);
	cv.qcow2_out = !strcmp(out_fmt, "qcow2");
	if (cv.compress && !cv.qcow2_out)
		return usage_err("convert", "-c needs -O qcow2 (raw images cannot be compressed)");
	if (oo.any && !cv.qcow2_out)
		return usage_err("convert", "-o options apply to -O qcow2 only");
	if (threads > cpu_count() * 4)
		threads = cpu_count() * 4;
	cv.src_path = argv[optind];
	cv.dst_path = argv[optind + 1];
	cv.progress = progress_mode == 2 || (progress_mode == 1 && isatty(STDERR_FILENO));

	if (tool_open(cv.src_path, src_fmt, IMG_RDONLY | (share ? IMG_FORCE_SHARE : 0), &cv.src) < 0)
		return EXIT_FAIL;
	cv.size = img_size(cv.src);
	if (cv.qcow2_out) {
		oo.q.size = align_up(cv.size, 512);
		cv.unit = 1ull << oo.q.cluster_bits;
		if (oo.q.size != cv.size)
			tool_err("%s: warning: size %" PRIu64 " rounded up to %" PRIu64
				 " (qcow2 sizes are multiples of 512)", cv.src_path, cv.size,
				 oo.q.size);
	} else {
		cv.unit = RAW_UNIT;
	}
	cv.job_max = cv.unit > JOB_BYTES ? cv.unit : JOB_BYTES;
	pthread_mutex_init(&cv.lock, NULL);
	pthread_cond_init(&cv.work_cv, NULL);
	pthread_cond_init(&cv.done_cv, NULL);

	int rc = EXIT_FAIL;
	bool opened = false;
	if (alloc_jobs(&cv, threads) < 0) {
		tool_err("out of memory");
		goto out;
	}
	if (open_output(&cv, &oo.q) < 0)
		goto out;
	opened = true;
	show_progress(&cv, 0, false);
	r = run_pipeline(&cv, threads);
	if (finish_output(&cv, r == 0) == 0 && r == 0) {
		show_progress(&cv, cv.size, true);
		rc = EXIT_OK;
	}
out:
	if (opened && rc != EXIT_OK) {
		finish_output(&cv, false);
		if (unlink(cv.dst_path) == 0)
			tool_err("%s: removed the incomplete output", cv.dst_path);
	}
	free_jobs(&cv);
	img_close(cv.src);
	pthread_cond_destroy(&cv.done_cv);
	pthread_cond_destroy(&cv.work_cv);
	pthread_mutex_destroy(&cv.lock);
	return rc;
}
