/*
 * node_requests.c - /vbd/<dev>/requests, the device's request log.
 *
 * The file reads like a log that a daemon appends to: one line per
 * completed request (format below), its size the number of bytes written
 * to it since the device appeared, offsets meaning what they mean in any
 * file.  So tail(1) works the way it does on /var/log files: `tail -f`
 * prints the last lines and then, polling the size (coreutils treats FUSE
 * as remote and does not trust inotify there), each line as it is added;
 * `cat`, `head` and `less` read from the start of what is kept.  Only the
 * last LOG_LINES lines are kept: a read at an offset that is gone gets a
 * "# missed N requests" line and goes on with the oldest line kept.  The
 * first line is a header, so the file is never empty (tail reads an empty
 * file like a pipe, to an EOF that would never come).
 *
 * A read at the end of the log waits for the next line (the read is parked,
 * no FUSE thread blocks; the waker thread answers it) unless the file is
 * O_NONBLOCK (then EAGAIN, which is what `tail -f` uses after its first
 * pass); a read past the end gets EOF.  poll() says readable when the log
 * grew past where the reader's last read ended (or past its end at open).
 * A signal interrupts a waiting read (EINTR), and the log ends (EOF at its
 * end) when the device goes away.
 *
 * The engine's trace (util/trace.h) is the source: a bounded ring the
 * engine appends to without waiting for anyone.  The log copies records out
 * of it lazily, when someone stats or reads the file or a parked read waits;
 * if the trace wrapped before that, the log itself says "# missed N
 * requests" where the records were lost.  The log keeps records, not text:
 * a line is formatted again whenever it is read, the same way every time.
 * The trace's notify callback only kicks the one waker thread, which serves
 * every parked read and poller of every device; the callback costs an
 * atomic load when nobody waits.
 *
 * Line format (blkparse's default header, action C, documented in vbdfs(8)):
 *   "%3u,%-3u %2u %8llu %5llu.%09llu %5u  C %3s %llu + %u [%d] %llu.%03lluus"
 *   major,minor queue sequence seconds.nanoseconds domid C RWBS
 *   sector + sectors [status] latency
 * seconds are since the device appeared in the tree; status is the blkif
 * status (0 OK, -1 error, -2 not supported); latency from taking the
 * request off the ring to its completion.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "blkback/vbd.h"
#include "node.h"
#include "util/log.h"
#include "util/trace.h"

/* Lines the log keeps: the trace's 65536 records and room for the
 * "# missed" lines between them.  48 bytes each, allocated (and only
 * touched as it fills) the first time the log is looked at. */
#define LOG_LINES (65536 + 1024)
#define RECS_PER_SYNC 256
#define LINE_MAX_LEN 192
#define OP_MISSED 0xff   /* a log entry that is a "# missed N" line */
#define OP_HEADER 0xfe   /* the log's first line */

struct logent {
	uint64_t pos;            /* offset of the line in the log */
	struct trace_rec rec;    /* op OP_MISSED: rec.seq is the count */
};

/* One per device in the tree; handles keep it (and the vbd) alive after
 * the device went away. */
struct rlog {
	struct rlog *lnext;      /* g_logs (in the tree) or g_gone */
	struct rlog **lprev;     /* where lnext is pointed at us */
	unsigned refs;           /* the list's (g_logs) and each handle's */
	uint64_t devno;          /* of the tree's inode numbers */
	struct vbd *v;           /* referenced */
	struct trace *tr;
	unsigned major, minor;
	char name[48];           /* the device's directory name */
	uint64_t t0;             /* now_ns() when the device appeared */
	uint64_t cursor;         /* next trace record to copy */
	struct logent *ents;     /* ring of LOG_LINES; NULL until needed */
	uint64_t first, next;    /* line numbers kept: [first, next) */
	uint64_t end;            /* the log's size in bytes */
	struct timespec mtime;   /* when the last line was added */
	bool eof;                /* the device went away; nothing more comes */
};

struct pending {
	struct pending *next;
	fuse_req_t req;
	size_t size;
	uint64_t off;            /* file offset asked for */
};

struct stream {
	struct fh h;
	struct stream *snext, *sprev;   /* all open streams */
	struct rlog *log;               /* referenced */
	uint64_t shift;                 /* log offset = file offset + shift */
	uint64_t pos;                   /* log offset where the last read ended */
	uint64_t line;                  /* the line pos is in */
	struct pending *pend;           /* parked reads, oldest first */
	struct fuse_pollhandle *ph;
};

/* g_lock guards every log, stream and pending read. */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rlog *g_logs;
/* Logs of devices that went away, while files are open: fstat(2) of an
 * open file (tail -f) still works, as on an unlinked file. */
static struct rlog *g_gone;
static struct stream g_streams = { .snext = &g_streams, .sprev = &g_streams };
static atomic_uint nwaiting;       /* parked reads + poll handles */

static pthread_mutex_t wk_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wk_cond;
static bool wk_kicked, wk_stop, wk_started;
static pthread_t wk_thread;

void requests_kick(void)
{
	pthread_mutex_lock(&wk_lock);
	wk_kicked = true;
	pthread_cond_signal(&wk_cond);
	pthread_mutex_unlock(&wk_lock);
}

/* The trace's notify callback: on the engine's completion path. */
static void trace_kick(void *arg)
{
	if (atomic_load(&nwaiting))
		requests_kick();
}

/* ---- The log ---- */

/* Format line n (kept) into buf (LINE_MAX_LEN); its length. */
static size_t format_line(const struct rlog *l, uint64_t n, char *buf)
{
	const struct logent *e = &l->ents[n % LOG_LINES];
	const struct trace_rec *r = &e->rec;
	int k;

	if (r->op == OP_MISSED) {
		k = snprintf(buf, LINE_MAX_LEN, "# missed %" PRIu64 " requests\n", r->seq);
	} else if (r->op == OP_HEADER) {
		k = snprintf(buf, LINE_MAX_LEN, "# requests of %s (%u,%u), one line each as they "
			     "complete: see vbdfs(8)\n", l->name, l->major, l->minor);
	} else {
		uint64_t t = r->done_ns > l->t0 ? r->done_ns - l->t0 : 0;
		uint64_t lat = r->done_ns > r->start_ns ? r->done_ns - r->start_ns : 0;
		k = snprintf(buf, LINE_MAX_LEN,
			     "%3u,%-3u %2u %8" PRIu64 " %5" PRIu64 ".%09" PRIu64 " %5u  C %3s %" PRIu64
			     " + %" PRIu32 " [%d] %" PRIu64 ".%03" PRIu64 "us\n",
			     l->major, l->minor, (unsigned)r->queue, r->seq, t / UINT64_C(1000000000),
			     t % UINT64_C(1000000000), (unsigned)r->domid, trace_rwbs(r), r->sector,
			     r->nr_sectors, (int)r->status, lat / 1000, lat % 1000);
	}
	/* The widest line (every number at its maximum) is under 160. */
	return k > 0 && k < LINE_MAX_LEN ? (size_t)k : 0;
}

static uint64_t line_pos(const struct rlog *l, uint64_t n)
{
	return n < l->next ? l->ents[n % LOG_LINES].pos : l->end;
}

static void append(struct rlog *l, const struct trace_rec *r)
{
	char buf[LINE_MAX_LEN];
	uint64_t n = l->next;

	if (n - l->first == LOG_LINES)
		l->first++;
	l->ents[n % LOG_LINES].pos = l->end;
	l->ents[n % LOG_LINES].rec = *r;
	l->next = n + 1;
	l->end += format_line(l, n, buf);
}

/* Copy what the trace has into the log.  Caller holds g_lock. */
static void log_sync(struct rlog *l)
{
	struct trace_rec recs[RECS_PER_SYNC];
	bool added = false, ready_seen = false;

	if (l->eof)
		return;
	if (!l->ents) {
		struct trace_rec h = { .op = OP_HEADER };
		l->ents = calloc(LOG_LINES, sizeof(*l->ents));
		if (!l->ents)
			return; /* tried again next time; the trace keeps records */
		/* Never empty: tail(1) reads a file of size 0 like a pipe, to
		 * its EOF, which would wait here for the device to go away. */
		append(l, &h);
	}
	for (;;) {
		uint64_t missed = 0;
		size_t n = trace_read(l->tr, &l->cursor, recs, RECS_PER_SYNC, &missed, 0);
		if (missed) {
			struct trace_rec m = { .seq = missed, .op = OP_MISSED };
			append(l, &m);
		}
		for (size_t i = 0; i < n; i++)
			append(l, &recs[i]);
		if (n > 0) {
			added = true;
			ready_seen = false;
			continue;
		}
		if (!trace_ready(l->tr, l->cursor))
			break;
		/* Ready yet nothing to read: records that came after the read
		 * (the next read gets them) or a shut-down trace (the next
		 * read gets nothing: records never vanish). */
		if (ready_seen) {
			l->eof = true;
			break;
		}
		ready_seen = true;
	}
	if (added)
		clock_gettime(CLOCK_REALTIME, &l->mtime);
}

/* The kept line that holds offset pos (first <= result < next), for
 * first-line-offset <= pos < end. */
static uint64_t find_line(const struct rlog *l, uint64_t pos)
{
	uint64_t lo = l->first, hi = l->next; /* pos is in [lo, hi) */

	while (hi - lo > 1) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (line_pos(l, mid) <= pos)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

static void list_add(struct rlog **head, struct rlog *l)
{
	l->lnext = *head;
	if (*head)
		(*head)->lprev = &l->lnext;
	*head = l;
	l->lprev = head;
}

static void list_del(struct rlog *l)
{
	*l->lprev = l->lnext;
	if (l->lnext)
		l->lnext->lprev = l->lprev;
	l->lnext = NULL;
	l->lprev = NULL;
}

static void log_put(struct rlog *l)
{
	if (--l->refs)
		return;
	if (l->lprev)
		list_del(l);
	vbd_put(l->v);
	free(l->ents);
	free(l);
}

void requests_attach(struct vbd *v, uint64_t devno, uint64_t t0_ns)
{
	struct rlog *l = calloc(1, sizeof(*l));

	if (!l) {
		log_err("fusefs: out of memory for the request log of %s", vbd_name(v));
		return;
	}
	vbd_get(v);
	l->v = v;
	l->refs = 1;
	l->devno = devno;
	l->tr = vbd_trace(v);
	l->t0 = t0_ns;
	node_devnum(v, &l->major, &l->minor);
	snprintf(l->name, sizeof(l->name), "%s", vbd_name(v));
	clock_gettime(CLOCK_REALTIME, &l->mtime);
	/* The trace keeps records from before we looked: the log starts now. */
	l->cursor = trace_cursor_now(l->tr);
	trace_set_notify(l->tr, trace_kick, NULL);
	pthread_mutex_lock(&g_lock);
	list_add(&g_logs, l);
	pthread_mutex_unlock(&g_lock);
}

/* The device's log, referenced, or NULL.  Caller holds g_lock. */
static struct rlog *log_find(const struct vbd *v)
{
	for (struct rlog *l = g_logs; l; l = l->lnext) {
		if (l->v == v) {
			l->refs++;
			return l;
		}
	}
	return NULL;
}

void requests_detach(struct vbd *v)
{
	pthread_mutex_lock(&g_lock);
	for (struct rlog *l = g_logs; l; l = l->lnext) {
		if (l->v == v) {
			list_del(l);
			if (l->refs > 1)
				list_add(&g_gone, l); /* open files keep it */
			log_put(l);
			break;
		}
	}
	pthread_mutex_unlock(&g_lock);
}

static void fill_st(struct rlog *l, struct stat *st)
{
	log_sync(l);
	st->st_size = (off_t)l->end;
	st->st_mtim = st->st_ctim = l->mtime;
}

bool requests_attr_gone(uint64_t devno, struct stat *st)
{
	bool found = false;

	pthread_mutex_lock(&g_lock);
	for (struct rlog *l = g_gone; l && !found; l = l->lnext) {
		if (l->devno == devno) {
			fill_st(l, st);
			found = true;
		}
	}
	pthread_mutex_unlock(&g_lock);
	return found;
}

void requests_attr(struct vbd *v, struct stat *st)
{
	struct rlog *l;

	pthread_mutex_lock(&g_lock);
	l = log_find(v);
	if (l) {
		fill_st(l, st);
		log_put(l);
	}
	pthread_mutex_unlock(&g_lock);
}

/* ---- Reading ---- */

/* Answer a read at file offset off now if the log has something for it
 * (or it is at an end that will not grow, or past the end); false if the
 * reader must wait.  Caller holds g_lock. */
static bool try_answer(struct stream *s, fuse_req_t req, size_t size, uint64_t off)
{
	struct rlog *l = s->log;
	uint64_t g = off + s->shift, start, n, line;
	char *out;
	size_t len = 0;

	log_sync(l);
	start = line_pos(l, l->first);
	if (g < start) {
		/* Gone: say how many lines this reader missed (counted from
		 * where its last read ended, if it goes on from there), and
		 * go on with the oldest line kept. */
		char buf[LINE_MAX_LEN];
		uint64_t from = g == s->pos ? s->line : 1; /* 1: after the header */
		int k = snprintf(buf, sizeof(buf), "# missed %" PRIu64 " requests\n",
				 l->first > from ? l->first - from : 0);
		len = k > 0 ? (size_t)k : 0;
		if (len > size)
			len = size;
		/* Modulo 2^64, like every offset sum here: the reader's next
		 * offset (off + len) maps to start. */
		s->shift = start - off - len;
		s->pos = start;
		s->line = l->first;
		fuse_reply_buf(req, buf, len);
		return true;
	}
	if (g > l->end || (g == l->end && l->eof)) {
		fuse_reply_buf(req, NULL, 0);
		return true;
	}
	if (g == l->end)
		return false;
	n = l->end - g;
	if (size > n)
		size = (size_t)n;
	out = malloc(size);
	if (!out) {
		fuse_reply_err(req, ENOMEM);
		return true;
	}
	line = find_line(l, g);
	while (len < size && line < l->next) {
		char buf[LINE_MAX_LEN];
		size_t ll = format_line(l, line, buf);
		size_t skip = len ? 0 : (size_t)(g - line_pos(l, line));
		size_t take = ll > skip ? ll - skip : 0;
		if (take > size - len)
			take = size - len;
		memcpy(out + len, buf + skip, take);
		len += take;
		if (skip + take == ll)
			line++;
	}
	s->pos = g + len;
	s->line = line;
	fuse_reply_buf(req, out, len);
	free(out);
	return true;
}

static void stream_destroy(struct fh *h)
{
	struct stream *s = (struct stream *)h;

	fs_fh_untrack(h);
	pthread_mutex_lock(&g_lock);
	s->sprev->snext = s->snext;
	s->snext->sprev = s->sprev;
	while (s->pend) {
		struct pending *p = s->pend;
		s->pend = p->next;
		atomic_fetch_sub(&nwaiting, 1);
		fuse_reply_buf(p->req, NULL, 0);
		free(p);
	}
	if (s->ph) {
		atomic_fetch_sub(&nwaiting, 1);
		fuse_pollhandle_destroy(s->ph);
		s->ph = NULL;
	}
	log_put(s->log);
	pthread_mutex_unlock(&g_lock);
	free(s);
}

void requests_open(fuse_req_t req, struct vbd *v, struct fuse_file_info *fi)
{
	struct stream *s = calloc(1, sizeof(*s));

	if (!s)
		return (void)fuse_reply_err(req, ENOMEM);
	s->h.destroy = stream_destroy;
	pthread_mutex_lock(&g_lock);
	s->log = log_find(v);
	if (!s->log) {
		pthread_mutex_unlock(&g_lock);
		free(s);
		return (void)fuse_reply_err(req, ENOENT);
	}
	log_sync(s->log);
	s->pos = s->log->end;   /* for poll(): what is new after the open */
	s->line = s->log->next;
	s->snext = g_streams.snext;
	s->sprev = &g_streams;
	g_streams.snext->sprev = s;
	g_streams.snext = s;
	pthread_mutex_unlock(&g_lock);
	fs_fh_track(&s->h);
	fi->fh = (uintptr_t)s;
	/* Every read comes here (no page cache): the file changes under
	 * the kernel, and a read at the end must wait, not see EOF. */
	fi->direct_io = 1;
	fi->nonseekable = 0;
	if (fuse_reply_open(req, fi) != 0)
		stream_destroy(&s->h);
}

/* A parked read was interrupted (the reader got a signal).  libfuse keeps
 * req alive during this call; we look it up instead of trusting a data
 * pointer, since it may have been answered (and its record freed) already. */
static void read_interrupted(fuse_req_t req, void *data)
{
	pthread_mutex_lock(&g_lock);
	for (struct stream *s = g_streams.snext; s != &g_streams; s = s->snext) {
		for (struct pending **pp = &s->pend; *pp; pp = &(*pp)->next) {
			struct pending *p = *pp;
			if (p->req != req)
				continue;
			*pp = p->next;
			atomic_fetch_sub(&nwaiting, 1);
			fuse_reply_err(req, EINTR);
			free(p);
			pthread_mutex_unlock(&g_lock);
			return;
		}
	}
	pthread_mutex_unlock(&g_lock);
}

void requests_read(fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct stream *s = (struct stream *)(uintptr_t)fi->fh;
	struct pending *p, **tail;

	if (off < 0)
		return (void)fuse_reply_err(req, EINVAL);
	pthread_mutex_lock(&g_lock);
	if (!s->pend && try_answer(s, req, size, (uint64_t)off)) {
		pthread_mutex_unlock(&g_lock);
		return;
	}
	pthread_mutex_unlock(&g_lock);
	/* fi->flags are the file's flags now: fcntl(F_SETFL) counts. */
	if (fi->flags & O_NONBLOCK)
		return (void)fuse_reply_err(req, EAGAIN);
	p = calloc(1, sizeof(*p));
	if (!p)
		return (void)fuse_reply_err(req, ENOMEM);
	p->req = req;
	p->size = size;
	p->off = (uint64_t)off;
	/* Register before parking: an interrupt that came earlier shows in
	 * fuse_req_interrupted() below, a later one finds the parked read. */
	fuse_req_interrupt_func(req, read_interrupted, NULL);
	pthread_mutex_lock(&g_lock);
	if (fuse_req_interrupted(req)) {
		pthread_mutex_unlock(&g_lock);
		free(p);
		return (void)fuse_reply_err(req, EINTR);
	}
	for (tail = &s->pend; *tail; tail = &(*tail)->next)
		;
	*tail = p;
	atomic_fetch_add(&nwaiting, 1);
	pthread_mutex_unlock(&g_lock);
	/* A record may have arrived before nwaiting counted us. */
	requests_kick();
}

/* Readable: the log grew past where this reader's last read ended. */
static bool readable(struct stream *s)
{
	log_sync(s->log);
	return s->pos < s->log->end || s->log->eof;
}

void requests_poll(fuse_req_t req, struct fuse_file_info *fi, struct fuse_pollhandle *ph)
{
	struct stream *s = (struct stream *)(uintptr_t)fi->fh;
	unsigned revents = 0;

	pthread_mutex_lock(&g_lock);
	if (readable(s))
		revents = POLLIN;
	if (ph) {
		if (s->ph)
			fuse_pollhandle_destroy(s->ph);
		else
			atomic_fetch_add(&nwaiting, 1);
		s->ph = ph;
	}
	pthread_mutex_unlock(&g_lock);
	fuse_reply_poll(req, revents);
	if (ph && !revents)
		requests_kick();
}

void requests_release(fuse_req_t req, struct fuse_file_info *fi)
{
	stream_destroy((struct fh *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

/* Serve every parked read and poller that has something now. */
static void serve_all(void)
{
	pthread_mutex_lock(&g_lock);
	for (struct stream *s = g_streams.snext; s != &g_streams; s = s->snext) {
		while (s->pend && try_answer(s, s->pend->req, s->pend->size, s->pend->off)) {
			struct pending *p = s->pend;
			s->pend = p->next;
			atomic_fetch_sub(&nwaiting, 1);
			free(p);
		}
		if (s->ph && readable(s)) {
			fuse_lowlevel_notify_poll(s->ph);
			fuse_pollhandle_destroy(s->ph);
			s->ph = NULL;
			atomic_fetch_sub(&nwaiting, 1);
		}
	}
	pthread_mutex_unlock(&g_lock);
}

static void *waker_main(void *arg)
{
	pthread_mutex_lock(&wk_lock);
	while (!wk_stop) {
		if (!wk_kicked) {
			/* The timeout is a safety net only: kicks do the work. */
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_nsec += 250 * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&wk_cond, &wk_lock, &ts);
		}
		if (wk_stop)
			break;
		wk_kicked = false;
		pthread_mutex_unlock(&wk_lock);
		if (atomic_load(&nwaiting))
			serve_all();
		pthread_mutex_lock(&wk_lock);
	}
	pthread_mutex_unlock(&wk_lock);
	return NULL;
}

int requests_init(void)
{
	pthread_condattr_t ca;
	int rc;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&wk_cond, &ca);
	pthread_condattr_destroy(&ca);
	wk_stop = false;
	wk_kicked = false;
	rc = pthread_create(&wk_thread, NULL, waker_main, NULL);
	if (rc) {
		pthread_cond_destroy(&wk_cond);
		return -rc;
	}
	wk_started = true;
	return 0;
}

void requests_shutdown(void)
{
	if (wk_started) {
		pthread_mutex_lock(&wk_lock);
		wk_stop = true;
		pthread_cond_signal(&wk_cond);
		pthread_mutex_unlock(&wk_lock);
		pthread_join(wk_thread, NULL);
		pthread_cond_destroy(&wk_cond);
		wk_started = false;
	}
	/* End every parked read (EOF) and forget pollers. */
	pthread_mutex_lock(&g_lock);
	for (struct stream *s = g_streams.snext; s != &g_streams; s = s->snext) {
		while (s->pend) {
			struct pending *p = s->pend;
			s->pend = p->next;
			atomic_fetch_sub(&nwaiting, 1);
			fuse_reply_buf(p->req, NULL, 0);
			free(p);
		}
		if (s->ph) {
			fuse_pollhandle_destroy(s->ph);
			s->ph = NULL;
			atomic_fetch_sub(&nwaiting, 1);
		}
	}
	pthread_mutex_unlock(&g_lock);
}

void requests_free(void)
{
	pthread_mutex_lock(&g_lock);
	while (g_logs) {
		struct rlog *l = g_logs;
		list_del(l);
		log_put(l); /* the list's; every handle is gone by now */
	}
	pthread_mutex_unlock(&g_lock);
}
