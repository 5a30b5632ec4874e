/* pgrant.c - persistent grant cache of one ring; see pgrant.h. */
#include "pgrant.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "util/log.h"

#define NIL UINT32_MAX

/*
 * An entry is one of:
 *   free      on the free list, not in the hash
 *   reserved  in the hash, owner set, addr NULL: a miss of owner's batch,
 *             not mapped yet (or its map failed); see pgrant.h
 *   held      in the hash, owner set, addr the mapped page
 *   idle      in the hash, owner NULL, mapped, on the LRU list
 * Only idle entries are evicted, so a reserved one never is.
 */
struct pgrant {
	hv_gref_t gref;
	void *addr;           /* the mapped page, NULL if not mapped */
	bool writable;
	const void *owner;    /* the request holding it, or NULL when idle */
	unsigned holds;       /* pgrant_get calls of owner not yet put */
	uint64_t last_used_ns;
	uint32_t hnext;       /* hash chain */
	uint32_t prev, next;  /* LRU list of idle entries, or the free list */
	uint32_t bnext;       /* reserved: the next entry of the same batch */
};

struct pgrant_cache {
	pthread_mutex_t lock;
	struct hv *hv;
	uint16_t domid;
	unsigned max, count;
	uint32_t nbuckets;    /* power of two */
	uint32_t *bucket;
	struct pgrant *e;
	uint32_t free_head;
	uint32_t lru_head, lru_tail; /* least recently used first */
	bool overflow;        /* a grant found the cache full since the last purge */
};

static uint32_t idx_of(struct pgrant_cache *c, struct pgrant *p)
{
	return (uint32_t)(p - c->e);
}

static uint32_t hash(struct pgrant_cache *c, hv_gref_t gref)
{
	return (gref * 2654435761u) & (c->nbuckets - 1);
}

struct pgrant_cache *pgrant_new(struct hv *hv, uint16_t domid, unsigned max)
{
	struct pgrant_cache *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->hv = hv;
	c->domid = domid;
	c->max = max ? max : 1;
	c->nbuckets = 1;
	while (c->nbuckets < 2 * c->max)
		c->nbuckets <<= 1;
	c->bucket = malloc(c->nbuckets * sizeof(*c->bucket));
	c->e = calloc(c->max, sizeof(*c->e));
	if (!c->bucket || !c->e) {
		free(c->bucket);
		free(c->e);
		free(c);
		return NULL;
	}
	for (uint32_t i = 0; i < c->nbuckets; i++)
		c->bucket[i] = NIL;
	for (uint32_t i = 0; i < c->max; i++)
		c->e[i].next = i + 1 < c->max ? i + 1 : NIL;
	c->free_head = 0;
	c->lru_head = c->lru_tail = NIL;
	pthread_mutex_init(&c->lock, NULL);
	return c;
}

static void lru_remove(struct pgrant_cache *c, struct pgrant *p)
{
	if (p->prev != NIL)
		c->e[p->prev].next = p->next;
	else
		c->lru_head = p->next;
	if (p->next != NIL)
		c->e[p->next].prev = p->prev;
	else
		c->lru_tail = p->prev;
	p->prev = p->next = NIL;
}

static void lru_append(struct pgrant_cache *c, struct pgrant *p)
{
	uint32_t i = idx_of(c, p);

	p->prev = c->lru_tail;
	p->next = NIL;
	if (c->lru_tail != NIL)
		c->e[c->lru_tail].next = i;
	else
		c->lru_head = i;
	c->lru_tail = i;
}

static struct pgrant *lookup(struct pgrant_cache *c, hv_gref_t gref)
{
	for (uint32_t i = c->bucket[hash(c, gref)]; i != NIL; i = c->e[i].hnext)
		if (c->e[i].gref == gref)
			return &c->e[i];
	return NULL;
}

static void hash_remove(struct pgrant_cache *c, struct pgrant *p)
{
	uint32_t *link = &c->bucket[hash(c, p->gref)], i = idx_of(c, p);

	while (*link != i)
		link = &c->e[*link].hnext;
	*link = p->hnext;
}

/* Unmap an idle entry and put it on the free list.  Caller holds lock. */
static void evict(struct pgrant_cache *c, struct pgrant *p)
{
	lru_remove(c, p);
	hash_remove(c, p);
	if (c->hv->ops->unmap(c->hv, p->addr, 1) < 0)
		log_warn("dom%u: unmapping persistent grant %u failed", c->domid, p->gref);
	p->addr = NULL;
	p->next = c->free_head;
	c->free_head = idx_of(c, p);
	c->count--;
}

static void *map_one(struct pgrant_cache *c, hv_gref_t gref, bool writable, int *err)
{
	*err = 0;
	void *a = c->hv->ops->map(c->hv, c->domid, &gref, 1, writable, err);
	if (!a && *err >= 0)
		*err = -EIO;
	return a;
}

/* A free entry, or NULL when the cache is full.  As Linux blkback does,
 * a full cache does not evict on demand (a working set larger than the
 * cache would then map and unmap on every request): the caller copies, and
 * pgrant_purge() makes room in batches.  Caller holds lock. */
static struct pgrant *alloc_entry(struct pgrant_cache *c)
{
	struct pgrant *p;

	if (c->free_head == NIL) {
		c->overflow = true;
		return NULL;
	}
	p = &c->e[c->free_head];
	c->free_head = p->next;
	p->prev = p->next = NIL;
	return p;
}

void pgrant_begin(struct pgrant_cache *c)
{
	pthread_mutex_lock(&c->lock);
}

void pgrant_end(struct pgrant_cache *c)
{
	pthread_mutex_unlock(&c->lock);
}

int pgrant_get(struct pgrant_cache *c, hv_gref_t gref, bool writable, const void *owner,
	       struct pgrant **pg, void **addr, struct pgrant_use *use)
{
	struct pgrant_batch b = PGRANT_BATCH_INIT;
	unsigned maps;
	int r;

	pthread_mutex_lock(&c->lock);
	r = pgrant_get_locked(c, gref, writable, owner, &b, pg, addr, use);
	pthread_mutex_unlock(&c->lock);
	if (r < 0 || !b.n)
		return r;
	r = pgrant_map_reserved(c, &b, &maps);
	use->maps += maps;
	if (r < 0) {
		pgrant_put(c, *pg); /* frees the unmapped entry */
		return r;
	}
	*addr = pgrant_addr(*pg);
	return 0;
}

/* Chain a free entry into the hash as reserved for owner, and into b. */
static void reserve(struct pgrant_cache *c, struct pgrant *p, hv_gref_t gref, bool writable,
		    struct pgrant_batch *b)
{
	uint32_t i = idx_of(c, p);

	p->gref = gref;
	p->addr = NULL;
	p->writable = writable; /* as asked; mapping may make it writable */
	p->hnext = c->bucket[hash(c, gref)];
	c->bucket[hash(c, gref)] = i;
	c->count++;
	p->bnext = b->head;
	b->head = i;
	b->n++;
}

/* A reserved entry whose owner put its last hold without it ever being
 * mapped: back to the free list.  Caller holds lock. */
static void unreserve(struct pgrant_cache *c, struct pgrant *p)
{
	hash_remove(c, p);
	p->next = c->free_head;
	c->free_head = idx_of(c, p);
	c->count--;
}

int pgrant_get_locked(struct pgrant_cache *c, hv_gref_t gref, bool writable, const void *owner,
		      struct pgrant_batch *b, struct pgrant **pg, void **addr,
		      struct pgrant_use *use)
{
	struct pgrant *p;
	int err = 0;

	use->hit = false;
	use->maps = 0;
	p = lookup(c, gref);
	if (p && p->owner && p->owner != owner)
		return -EBUSY; /* rule 16: in use (or being mapped) by another request */
	if (p && p->owner && writable && !p->writable)
		return -EBUSY; /* held read-only by this very request */
	if (p && !p->owner && writable && !p->writable) {
		/* Mapped read-only for an earlier WRITE; a READ needs to
		 * write the page: map it again, writable.  Rare (frontends
		 * grant persistent pages read-write), so done here, under
		 * the lock, rather than through the batch. */
		void *a = map_one(c, gref, true, &err);
		use->maps++;
		if (!a) {
			evict(c, p);
			return err;
		}
		if (c->hv->ops->unmap(c->hv, p->addr, 1) < 0)
			log_warn("dom%u: unmapping persistent grant %u failed", c->domid, gref);
		p->addr = a;
		p->writable = true;
	}
	if (p) {
		/* a hit, or this request's own reservation (a request may
		 * use one grant for several segments) */
		use->hit = use->maps == 0;
		if (!p->owner)
			lru_remove(c, p);
	} else {
		p = alloc_entry(c);
		if (!p)
			return -ENOSPC;
		reserve(c, p, gref, writable, b); /* mapped by pgrant_map_reserved() */
	}
	p->owner = owner;
	p->holds++;
	*pg = p;
	*addr = p->addr;
	return 0;
}

/*
 * Runs WITHOUT the lock.  That is safe because every entry of b is
 * reserved for our caller: other threads only read its gref, hnext and
 * owner (lookup, then -EBUSY), which are not written here, and evict only
 * idle entries.  addr, writable and bnext are ours until the caller's
 * pgrant_put_locked(), whose lock publishes them to the other threads.
 */
int pgrant_map_reserved(struct pgrant_cache *c, struct pgrant_batch *b, unsigned *maps)
{
	int first = 0;

	*maps = 0;
	for (uint32_t i = b->head; i != NIL; i = c->e[i].bnext) {
		struct pgrant *p = &c->e[i];
		bool readonly_ok = !p->writable; /* a WRITE only reads the page */
		int err = 0;

		/* Map writable when the grant allows it, even for a WRITE, so
		 * a later READ through the same grant needs no remap (Linux
		 * blkfront grants persistent pages read-write). */
		p->addr = map_one(c, p->gref, true, &err);
		(*maps)++;
		if (p->addr) {
			p->writable = true;
		} else if (readonly_ok) {
			p->addr = map_one(c, p->gref, false, &err);
			(*maps)++;
		}
		if (!p->addr && !first)
			first = err; /* the entry stays reserved until put */
	}
	b->head = NIL;
	b->n = 0;
	return first;
}

void *pgrant_addr(const struct pgrant *p)
{
	return p->addr;
}

void pgrant_put(struct pgrant_cache *c, struct pgrant *p)
{
	uint64_t now = now_ns();

	pthread_mutex_lock(&c->lock);
	pgrant_put_locked(c, p, now);
	pthread_mutex_unlock(&c->lock);
}

void pgrant_put_locked(struct pgrant_cache *c, struct pgrant *p, uint64_t now)
{
	if (p->holds && --p->holds == 0) {
		p->owner = NULL;
		if (!p->addr) {
			unreserve(c, p); /* never mapped */
			return;
		}
		p->last_used_ns = now;
		lru_append(c, p);
	}
}

unsigned pgrant_purge(struct pgrant_cache *c, uint64_t idle_ns)
{
	uint64_t now = now_ns();
	unsigned n = 0, batch = c->max * PGRANT_PURGE_PERCENT / 100;

	if (!batch)
		batch = 1;
	pthread_mutex_lock(&c->lock);
	/* rule 16: drop grants idle too long, then, if new grants found the
	 * cache full, a batch of the least recently used idle ones */
	while (c->lru_head != NIL && now - c->e[c->lru_head].last_used_ns >= idle_ns) {
		evict(c, &c->e[c->lru_head]);
		n++;
	}
	if (c->overflow) {
		for (unsigned i = 0; i < batch && c->lru_head != NIL; i++, n++)
			evict(c, &c->e[c->lru_head]);
		c->overflow = false;
	}
	pthread_mutex_unlock(&c->lock);
	return n;
}

unsigned pgrant_count(struct pgrant_cache *c)
{
	unsigned n;

	pthread_mutex_lock(&c->lock);
	n = c->count;
	pthread_mutex_unlock(&c->lock);
	return n;
}

void pgrant_free(struct pgrant_cache *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < c->max; i++)
		if (c->e[i].addr && c->hv->ops->unmap(c->hv, c->e[i].addr, 1) < 0)
			log_warn("dom%u: unmapping persistent grant %u failed", c->domid,
				 c->e[i].gref);
	pthread_mutex_destroy(&c->lock);
	free(c->bucket);
	free(c->e);
	free(c);
}
