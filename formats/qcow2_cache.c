/*
 * qcow2_cache.c - a bounded write-back cache of cluster-sized metadata
 * tables (L2 tables, refcount blocks), so random I/O over a large image does
 * not re-read them.
 *
 * Set-associative: a table's host offset picks a set of QCACHE_WAYS slots
 * and the least recently used slot of the set is evicted.  Lookup is a scan
 * of 8 slots; no allocation on the hot path (slot buffers are allocated on
 * first use, so small images stay small).  Before a dirty entry is written
 * back, the cache's before_writeback hook runs: for L2 tables it makes the
 * refcounts and guest data they depend on durable (see qcow2.c).
 *
 * All calls need q->lock.
 */
#include "formats/qcow2_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int qcache_init(struct qcache *c, uint64_t cluster_size, size_t bytes, unsigned min_entries,
		unsigned max_entries)
{
	uint64_t n = bytes / cluster_size;

	if (n < min_entries)
		n = min_entries;
	if (n > max_entries)
		n = max_entries;
	memset(c, 0, sizeof(*c));
	c->nsets = (unsigned)((n + QCACHE_WAYS - 1) / QCACHE_WAYS);
	c->e = calloc((size_t)c->nsets * QCACHE_WAYS, sizeof(*c->e));
	return c->e ? 0 : -ENOMEM;
}

void qcache_destroy(struct qcache *c)
{
	if (!c->e)
		return;
	for (unsigned i = 0; i < c->nsets * QCACHE_WAYS; i++)
		free(c->e[i].buf);
	free(c->e);
	c->e = NULL;
}

static struct qcache_entry *set_of(struct qcache *c, uint64_t off, unsigned cluster_bits)
{
	uint64_t k = off >> cluster_bits;
	k ^= k >> 17;
	k *= 0x9e3779b97f4a7c15ull;
	return &c->e[(size_t)((k >> 32) % c->nsets) * QCACHE_WAYS];
}

static int write_entry(struct qcow2 *q, struct qcache *c, struct qcache_entry *e)
{
	int r;

	if (c->before_writeback) {
		r = c->before_writeback(q);
		if (r < 0)
			return r;
	}
	r = full_pwrite(q->fd, e->buf, q->cluster_size, e->off);
	if (r < 0) {
		img_log_bad(q->img, "writing metadata at 0x%llx: %s", (unsigned long long)e->off,
			    strerror(-r));
		return r;
	}
	e->dirty = false;
	return 0;
}

int qcache_get(struct qcow2 *q, struct qcache *c, uint64_t off, bool fresh, uint8_t **buf)
{
	struct qcache_entry *set = set_of(c, off, q->cluster_bits), *victim = NULL;
	int r;

	c->tick++;
	for (int i = 0; i < QCACHE_WAYS; i++) {
		if (set[i].off == off && set[i].buf) {
			set[i].lru = c->tick;
			c->hits++;
			if (fresh) {
				memset(set[i].buf, 0, q->cluster_size);
				set[i].dirty = true;
			}
			*buf = set[i].buf;
			return 0;
		}
	}
	c->misses++;
	for (int i = 0; i < QCACHE_WAYS; i++) {
		if (set[i].off == 0) {
			victim = &set[i];
			break;
		}
		if (!victim || set[i].lru < victim->lru)
			victim = &set[i];
	}
	if (victim->off && victim->dirty) {
		r = write_entry(q, c, victim);
		if (r < 0)
			return r;
	}
	victim->off = 0;
	if (!victim->buf) {
		victim->buf = malloc(q->cluster_size);
		if (!victim->buf)
			return -ENOMEM;
	}
	if (fresh) {
		memset(victim->buf, 0, q->cluster_size);
		victim->dirty = true;
	} else {
		r = full_pread(q->fd, victim->buf, q->cluster_size, off);
		if (r < 0)
			return r;
		victim->dirty = false;
	}
	victim->off = off;
	victim->lru = c->tick;
	*buf = victim->buf;
	return 0;
}

void qcache_mark_dirty(struct qcow2 *q, struct qcache *c, uint64_t off)
{
	struct qcache_entry *set = set_of(c, off, q->cluster_bits);

	for (int i = 0; i < QCACHE_WAYS; i++)
		if (set[i].off == off)
			set[i].dirty = true;
}

int qcache_writeback(struct qcow2 *q, struct qcache *c)
{
	int wrote = 0, r;

	for (unsigned i = 0; i < c->nsets * QCACHE_WAYS; i++) {
		struct qcache_entry *e = &c->e[i];
		if (e->off && e->dirty) {
			/* hook already satisfied by the caller's ordering */
			r = full_pwrite(q->fd, e->buf, q->cluster_size, e->off);
			if (r < 0) {
				img_log_bad(q->img, "writing metadata at 0x%llx: %s",
					    (unsigned long long)e->off, strerror(-r));
				return r;
			}
			e->dirty = false;
			wrote = 1;
		}
	}
	return wrote;
}

void qcache_drop(struct qcache *c, uint64_t off)
{
	for (unsigned i = 0; i < c->nsets * QCACHE_WAYS; i++)
		if (c->e[i].off == off) {
			c->e[i].off = 0;
			c->e[i].dirty = false;
		}
}
