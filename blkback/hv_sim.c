/*
 * hv_sim.c - the hypervisor transport on the simulator (see hv.h), as the
 * backend domain 0.
 *
 * For each guest domain we use, DIR/hypervisor hands us its memory and
 * grant table (memfds sealed against shrinking, so our mappings can never
 * fault) and a liveness pipe that hangs up when the domain dies.  They are
 * cached: grant copies look the domain up under a read lock; map and
 * evtchn_bind (which start every new use of a domain) first drop dead
 * domains, so a domain id reused by a new guest is never served from the
 * memory of the old one.
 *
 * Grant entries live in memory the guest may change at any time: each is
 * read once, with one 64-bit load, into a local copy that is then checked
 * and used (the copy-once rule).
 *
 * Mapping a grant marks it in use as Xen does: GTF_reading (and GTF_writing
 * for a writable map) is set in the guest's entry with a compare-and-swap
 * against the very copy that was checked, so the guest cannot end the grant
 * between our check and the mark (sim_guest_end_grant refuses an entry so
 * marked).  The bits are a courtesy to the guest, who could clear them; our
 * per-grant map counts are what decides when the last unmap clears them.
 */
#include "hv.h"
#include "sim/hvproto.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <xen/grant_table.h>

#include "util/log.h"

#define MAX_MAP_PAGES 65536u
/* Compare-and-swap attempts on one grant entry before giving up: only a
 * guest rewriting the entry in a loop makes us retry at all. */
#define GNT_CAS_TRIES 1000

struct simdom {
	struct simdom *next;
	uint16_t domid;
	int alivefd;
	uint8_t *mem;
	size_t pages;
	uint64_t *gnt;        /* grant_entry_v1 as 64-bit words, shared with the guest */
	uint32_t nr_grants;
	uint32_t *nmap;       /* per gref: our live mappings of it ... */
	uint32_t *nwmap;      /* ... and how many of them are writable */
	uint64_t serial;      /* tells a reused domain id from the domain we mapped */
	int memfd;
};

/* One sim_map() result, so that sim_unmap() knows which grants it releases. */
struct simmap {
	struct simmap *next;
	void *addr;
	unsigned n;
	uint16_t domid;
	bool writable;
	uint64_t serial;
	hv_gref_t refs[];
};

struct hv_sim {
	struct hv hv;              /* first: struct hv * <-> struct hv_sim * */
	int sock;
	pthread_mutex_t sock_lock; /* one request/reply at a time */
	pthread_rwlock_t lock;     /* the domain cache */
	struct simdom *doms;
	struct simmap *maps;       /* live mappings, under lock */
	uint64_t next_serial;
};

struct hv_evtchn {
	struct hv_sim *s;
	uint16_t domid;
	uint32_t port;
	int g2b, b2g;
};

static struct ratelimit sim_rl = RATELIMIT_INIT(10, 5);

static struct hv_sim *sim_of(struct hv *hv)
{
	return (struct hv_sim *)hv;
}

static int call(struct hv_sim *s, struct simhv_msg *m, int *rfds, unsigned *nrfds)
{
	pthread_mutex_lock(&s->sock_lock);
	int r = simhv_call(s->sock, m, NULL, 0, rfds, nrfds);
	pthread_mutex_unlock(&s->sock_lock);
	return r;
}

static void dom_free(struct simdom *d)
{
	if (d->mem)
		munmap(d->mem, d->pages * HV_PAGE_SIZE);
	if (d->gnt)
		munmap(d->gnt, d->nr_grants * sizeof(uint64_t));
	free(d->nmap);
	free(d->nwmap);
	close(d->memfd);
	close(d->alivefd);
	free(d);
}

static bool dom_dead(const struct simdom *d)
{
	struct pollfd p = { .fd = d->alivefd, .events = POLLIN };
	return poll(&p, 1, 0) != 0; /* the pipe hangs up (or errs) once the domain is gone */
}

static struct simdom *find(struct hv_sim *s, uint16_t domid)
{
	for (struct simdom *d = s->doms; d; d = d->next)
		if (d->domid == domid)
			return d;
	return NULL;
}

/* Fetch domid from the hypervisor.  Caller holds the write lock. */
static struct simdom *fetch(struct hv_sim *s, uint16_t domid, int *err)
{
	struct simhv_msg m = { .op = SIMHV_DOMAIN_GET, .domid = domid };
	int fds[3];
	unsigned nfds = 3;
	int r = call(s, &m, fds, &nfds);
	if (r == 0 && (nfds != 3 || m.pages == 0 || m.pages > SIMHV_MAX_PAGES ||
		       m.nr_grants == 0 || m.nr_grants > SIMHV_MAX_GRANTS))
		r = -EPROTO;
	if (r < 0) {
		for (unsigned i = 0; r == -EPROTO && i < nfds; i++)
			close(fds[i]);
		*err = -r;
		return NULL;
	}
	struct simdom *d = calloc(1, sizeof(*d));
	if (!d) {
		for (unsigned i = 0; i < 3; i++)
			close(fds[i]);
		*err = ENOMEM;
		return NULL;
	}
	d->domid = domid;
	d->memfd = fds[0];
	d->alivefd = fds[2];
	d->pages = m.pages;
	d->nr_grants = m.nr_grants;
	d->serial = ++s->next_serial;
	d->nmap = calloc(d->nr_grants, sizeof(*d->nmap));
	d->nwmap = calloc(d->nr_grants, sizeof(*d->nwmap));
	void *mem = mmap(NULL, d->pages * HV_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
	void *gnt = mmap(NULL, d->nr_grants * sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED,
			 fds[1], 0);
	close(fds[1]);
	d->mem = mem == MAP_FAILED ? NULL : mem;
	d->gnt = gnt == MAP_FAILED ? NULL : gnt;
	if (!d->mem || !d->gnt || !d->nmap || !d->nwmap) {
		*err = (!d->mem || !d->gnt) ? errno : ENOMEM;
		dom_free(d);
		return NULL;
	}
	d->next = s->doms;
	s->doms = d;
	return d;
}

/* Drop dead domains, then make sure domid is cached.  Write lock held. */
static struct simdom *refresh(struct hv_sim *s, uint16_t domid, int *err)
{
	for (struct simdom **p = &s->doms; *p;) {
		struct simdom *d = *p;
		if (dom_dead(d)) {
			*p = d->next;
			dom_free(d);
		} else {
			p = &d->next;
		}
	}
	struct simdom *d = find(s, domid);
	return d ? d : fetch(s, domid, err);
}

/* Check the local copy e of a grant entry for an access by domain self. */
static int check_entry(const struct simdom *d, const struct grant_entry_v1 *e, uint16_t self,
		       bool write)
{
	if ((e->flags & GTF_type_mask) != GTF_permit_access || e->domid != self)
		return -EPERM;
	if (write && (e->flags & GTF_readonly))
		return -EPERM;
	if (e->frame >= d->pages)
		return -EINVAL;
	return 0;
}

/* Read grant gref of d once and check it for an access by domain self.
 * Returns 0 and the frame, or a negative status. */
static int check_grant(const struct simdom *d, uint16_t self, hv_gref_t gref, bool write,
		       uint32_t *frame)
{
	if (gref >= d->nr_grants)
		return -EINVAL;
	uint64_t raw = __atomic_load_n(&d->gnt[gref], __ATOMIC_ACQUIRE);
	struct grant_entry_v1 e; /* the one local copy, in the guest's byte order */
	memcpy(&e, &raw, sizeof(e));
	int r = check_entry(d, &e, self, write);
	if (r == 0)
		*frame = e.frame;
	return r;
}

/* Check grant gref for a mapping by domain self and mark it in use
 * (GTF_reading, and GTF_writing if write) in the same compare-and-swap, so
 * the entry that is marked is the one that was checked.  Write lock held. */
static int grab_grant(struct simdom *d, uint16_t self, hv_gref_t gref, bool write,
		      uint32_t *frame)
{
	if (gref >= d->nr_grants)
		return -EINVAL;
	uint64_t raw = __atomic_load_n(&d->gnt[gref], __ATOMIC_ACQUIRE);
	for (int tries = 0; tries < GNT_CAS_TRIES; tries++) {
		struct grant_entry_v1 e; /* the local copy this attempt checks */
		memcpy(&e, &raw, sizeof(e));
		int r = check_entry(d, &e, self, write);
		if (r < 0)
			return r;
		struct grant_entry_v1 marked = e;
		marked.flags |= GTF_reading | (write ? GTF_writing : 0);
		uint64_t want;
		memcpy(&want, &marked, sizeof(want));
		/* On failure raw is reloaded with what the guest wrote meanwhile. */
		if (__atomic_compare_exchange_n(&d->gnt[gref], &raw, want, false,
						__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
			d->nmap[gref]++;
			if (write)
				d->nwmap[gref]++;
			*frame = e.frame;
			return 0;
		}
	}
	return -EBUSY;
}

/* Drop one mapping of gref; the last one clears the in-use bits it set.
 * Write lock held. */
static void release_grant(struct simdom *d, hv_gref_t gref, bool write)
{
	if (gref >= d->nr_grants || d->nmap[gref] == 0)
		return;
	d->nmap[gref]--;
	if (write && d->nwmap[gref] > 0)
		d->nwmap[gref]--;
	uint16_t clear = d->nmap[gref] == 0 ? (GTF_reading | GTF_writing)
		       : d->nwmap[gref] == 0 ? GTF_writing : 0;
	if (!clear)
		return;
	uint64_t raw = __atomic_load_n(&d->gnt[gref], __ATOMIC_ACQUIRE);
	for (int tries = 0; tries < GNT_CAS_TRIES; tries++) {
		struct grant_entry_v1 e;
		memcpy(&e, &raw, sizeof(e));
		if (!(e.flags & clear))
			return; /* the guest cleared them itself */
		e.flags &= (uint16_t)~clear;
		uint64_t want;
		memcpy(&want, &e, sizeof(want));
		if (__atomic_compare_exchange_n(&d->gnt[gref], &raw, want, false,
						__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			return;
	}
	log_limited(&sim_rl, VLOG_DEBUG, "sim: dom%u: gref %u rewritten in a loop, in-use bits left",
		    d->domid, gref);
}

/* The cached domain domid if it is still the one with this serial. */
static struct simdom *find_serial(struct hv_sim *s, uint16_t domid, uint64_t serial)
{
	struct simdom *d = find(s, domid);
	return d && d->serial == serial ? d : NULL;
}

static int sim_grant_copy(struct hv *hv, uint16_t domid, struct hv_copy_seg *segs, unsigned n)
{
	struct hv_sim *s = sim_of(hv);
	int err = 0, status = 0;
	pthread_rwlock_rdlock(&s->lock);
	struct simdom *d = find(s, domid);
	if (!d) {
		/* First use of the domain: fetch it, then start over as a reader. */
		pthread_rwlock_unlock(&s->lock);
		pthread_rwlock_wrlock(&s->lock);
		refresh(s, domid, &err);
		pthread_rwlock_unlock(&s->lock);
		pthread_rwlock_rdlock(&s->lock);
		d = find(s, domid);
	}
	for (unsigned i = 0; i < n; i++) {
		struct hv_copy_seg *g = &segs[i];
		uint32_t frame;
		if (!d)
			g->status = -ESRCH;
		else if ((uint32_t)g->offset + g->len > HV_PAGE_SIZE)
			g->status = -EINVAL;
		else
			g->status = (int16_t)check_grant(d, hv->self_domid, g->gref, g->to_guest, &frame);
		if (g->status) {
			status = -EIO;
			continue;
		}
		uint8_t *page = d->mem + (size_t)frame * HV_PAGE_SIZE + g->offset;
		if (g->to_guest)
			memcpy(page, g->local, g->len);
		else
			memcpy(g->local, page, g->len);
	}
	pthread_rwlock_unlock(&s->lock);
	if (status)
		log_limited(&sim_rl, VLOG_DEBUG, "sim: dom%u: grant copy refused", domid);
	return status;
}

static void *sim_map(struct hv *hv, uint16_t domid, const hv_gref_t *refs, unsigned n,
		     bool writable, int *err)
{
	struct hv_sim *s = sim_of(hv);
	int e = 0;
	unsigned got = 0; /* grants marked in use so far */
	if (n == 0 || n > MAX_MAP_PAGES) {
		*err = EINVAL;
		return NULL;
	}
	struct simmap *rec = malloc(sizeof(*rec) + (size_t)n * sizeof(rec->refs[0]));
	if (!rec) {
		*err = ENOMEM;
		return NULL;
	}
	/* Reserve n pages of address space, then put each granted page in. */
	uint8_t *base = mmap(NULL, (size_t)n * HV_PAGE_SIZE, PROT_NONE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED) {
		*err = errno;
		free(rec);
		return NULL;
	}
	pthread_rwlock_wrlock(&s->lock);
	struct simdom *d = refresh(s, domid, &e);
	for (unsigned i = 0; d && i < n && !e; i++) {
		uint32_t frame;
		int r = grab_grant(d, hv->self_domid, refs[i], writable, &frame);
		if (r < 0) {
			e = -r;
			break;
		}
		rec->refs[got++] = refs[i];
		void *p = mmap(base + (size_t)i * HV_PAGE_SIZE, HV_PAGE_SIZE,
			       PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED | MAP_FIXED,
			       d->memfd, (off_t)frame * HV_PAGE_SIZE);
		if (p == MAP_FAILED)
			e = errno;
	}
	if (d && !e) {
		*rec = (struct simmap){ .next = s->maps, .addr = base, .n = n, .domid = domid,
					.writable = writable, .serial = d->serial };
		s->maps = rec;
	} else {
		for (unsigned i = 0; d && i < got; i++)
			release_grant(d, rec->refs[i], writable);
	}
	pthread_rwlock_unlock(&s->lock);
	if (!d || e) {
		munmap(base, (size_t)n * HV_PAGE_SIZE);
		free(rec);
		*err = e ? e : ESRCH;
		return NULL;
	}
	return base;
}

static int sim_unmap(struct hv *hv, void *addr, unsigned n)
{
	struct hv_sim *s = sim_of(hv);
	struct simmap **p, *m;
	int r;
	if (!addr || n == 0 || n > MAX_MAP_PAGES)
		return -EINVAL;
	/* munmap under the lock: once the range is free the kernel may hand
	 * the same address to a concurrent sim_map(), whose record must not
	 * be taken for ours. */
	pthread_rwlock_wrlock(&s->lock);
	for (p = &s->maps; *p && ((*p)->addr != addr || (*p)->n != n); p = &(*p)->next)
		;
	m = *p;
	r = !m ? -EINVAL /* not a mapping of ours: leave the range alone */
	       : munmap(addr, (size_t)n * HV_PAGE_SIZE) < 0 ? -errno : 0;
	if (r == 0) {
		/* The pages are gone: release their grants, if the domain that
		 * granted them is still the one cached under its id. */
		*p = m->next;
		struct simdom *d = find_serial(s, m->domid, m->serial);
		for (unsigned i = 0; d && i < m->n; i++)
			release_grant(d, m->refs[i], m->writable);
		free(m);
	}
	pthread_rwlock_unlock(&s->lock);
	return r;
}

static struct hv_evtchn *sim_evtchn_bind(struct hv *hv, uint16_t domid, uint32_t remote_port,
					 int *err)
{
	struct hv_sim *s = sim_of(hv);
	int e = 0;
	/* A new binding is a new use of the domain: refresh the cache first. */
	pthread_rwlock_wrlock(&s->lock);
	struct simdom *d = refresh(s, domid, &e);
	pthread_rwlock_unlock(&s->lock);
	if (!d) {
		*err = e;
		return NULL;
	}
	struct simhv_msg m = { .op = SIMHV_EVTCHN_BIND, .domid = domid, .port = remote_port };
	int fds[2];
	unsigned nfds = 2;
	int r = call(s, &m, fds, &nfds);
	if (r == 0 && nfds != 2) {
		for (unsigned i = 0; i < nfds; i++)
			close(fds[i]);
		r = -EPROTO;
	}
	if (r < 0) {
		*err = -r;
		return NULL;
	}
	struct hv_evtchn *ch = calloc(1, sizeof(*ch));
	if (!ch) {
		close(fds[0]);
		close(fds[1]);
		*err = ENOMEM;
		return NULL;
	}
	*ch = (struct hv_evtchn){ .s = s, .domid = domid, .port = remote_port,
				  .g2b = fds[0], .b2g = fds[1] };
	return ch;
}

static void sim_evtchn_unbind(struct hv_evtchn *ch)
{
	if (!ch)
		return;
	struct simhv_msg m = { .op = SIMHV_EVTCHN_UNBIND, .domid = ch->domid, .port = ch->port };
	call(ch->s, &m, NULL, NULL); /* fails harmlessly if the domain is gone */
	close(ch->g2b);
	close(ch->b2g);
	free(ch);
}

static int sim_evtchn_fd(struct hv_evtchn *ch)
{
	return ch->g2b;
}

static int sim_evtchn_ack(struct hv_evtchn *ch)
{
	uint64_t v;
	if (read(ch->g2b, &v, sizeof(v)) == sizeof(v))
		return 1;
	return errno == EAGAIN ? 0 : -errno;
}

static int sim_evtchn_notify(struct hv_evtchn *ch)
{
	uint64_t one = 1;
	/* EAGAIN: the counter is saturated, so a notification is pending anyway. */
	if (write(ch->b2g, &one, sizeof(one)) != sizeof(one) && errno != EAGAIN)
		return -errno;
	return 0;
}

static void sim_close(struct hv *hv)
{
	struct hv_sim *s = sim_of(hv);
	while (s->doms) {
		struct simdom *d = s->doms;
		s->doms = d->next;
		dom_free(d);
	}
	while (s->maps) {
		struct simmap *m = s->maps;
		s->maps = m->next;
		free(m);
	}
	close(s->sock);
	pthread_mutex_destroy(&s->sock_lock);
	pthread_rwlock_destroy(&s->lock);
	free(s);
}

static const struct hv_ops sim_ops = {
	.name = "sim",
	.evtchn_bind = sim_evtchn_bind,
	.evtchn_unbind = sim_evtchn_unbind,
	.evtchn_fd = sim_evtchn_fd,
	.evtchn_ack = sim_evtchn_ack,
	.evtchn_notify = sim_evtchn_notify,
	.grant_copy = sim_grant_copy,
	.map = sim_map,
	.unmap = sim_unmap,
	.close = sim_close,
};

struct hv *hv_open_sim(const char *dir, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/hypervisor", dir) >=
	    (int)sizeof(sa.sun_path)) {
		snprintf(err, errlen, "simulator directory path too long: %s", dir);
		return NULL;
	}
	struct hv_sim *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (s->sock < 0 || connect(s->sock, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		snprintf(err, errlen, "cannot connect to the simulated hypervisor at %s: %s",
			 sa.sun_path, strerror(errno));
		if (s->sock >= 0)
			close(s->sock);
		free(s);
		return NULL;
	}
	pthread_mutex_init(&s->sock_lock, NULL);
	pthread_rwlock_init(&s->lock, NULL);
	s->hv.ops = &sim_ops;
	s->hv.self_domid = 0;
	return &s->hv;
}
