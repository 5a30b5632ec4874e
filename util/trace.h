/*
 * trace.h - a bounded ring of completed-request records that any number of
 * readers follow at their own pace.
 *
 * The engine appends one record per completed request (trace_add: a short
 * critical section, never blocks on readers).  Each reader owns a cursor; a
 * reader that falls more than the capacity behind loses the oldest records
 * and is told how many it missed.  This backs /vbd/<dev>/requests.
 */
#ifndef VBDFS_TRACE_H
#define VBDFS_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a request was; letters as blkparse RWBS. */
enum trace_op { TRACE_READ, TRACE_WRITE, TRACE_DISCARD, TRACE_FLUSH, TRACE_BARRIER,
		TRACE_OTHER };

#define TRACE_F_SECURE   0x1 /* secure discard */
#define TRACE_F_INDIRECT 0x2 /* arrived as BLKIF_OP_INDIRECT */

struct trace_rec {
	uint64_t seq;        /* set by trace_add, from 1 */
	uint64_t start_ns;   /* now_ns() when the request was taken off the ring */
	uint64_t done_ns;    /* now_ns() at completion */
	uint64_t sector;     /* 512-byte units */
	uint32_t nr_sectors;
	uint16_t domid;
	uint16_t queue;
	uint8_t op;          /* enum trace_op */
	uint8_t flags;       /* TRACE_F_* */
	int16_t status;      /* BLKIF_RSP_* */
};

struct trace;

/* capacity is rounded up to a power of two; NULL on allocation failure. */
struct trace *trace_new(size_t capacity);
void trace_free(struct trace *t);

void trace_add(struct trace *t, const struct trace_rec *r);

/* Cursor positioned at "now": the next record added is the first read. */
uint64_t trace_cursor_now(struct trace *t);

/*
 * Copy up to max records at or after *cursor into out and advance the
 * cursor.  timeout_ms < 0 waits forever, 0 never waits.  *missed gets the
 * number of records that were overwritten before this reader got them.
 * Returns the number of records copied (0 on timeout or after
 * trace_shutdown).
 */
size_t trace_read(struct trace *t, uint64_t *cursor, struct trace_rec *out, size_t max,
		  uint64_t *missed, int timeout_ms);

/* True if a record at or after cursor is available (for poll()). */
bool trace_ready(struct trace *t, uint64_t cursor);

/* Called (outside the trace lock) after each trace_add, e.g. to wake FUSE
 * pollers.  Set once, before records flow. */
void trace_set_notify(struct trace *t, void (*fn)(void *arg), void *arg);

/* Wake every blocked reader for good (device going away). */
void trace_shutdown(struct trace *t);

/* Letters for a record, as blkparse's RWBS column: "R", "W", "D", "FN"... */
const char *trace_rwbs(const struct trace_rec *r);

#endif
