/*
 * guest.c - the guest side of the simulated hypervisor (see guest.h).
 *
 * Memory and the grant table are memfds sealed against resizing, mapped
 * here and handed to DIR/hypervisor; grant entries are written the way a
 * Xen guest writes them (domid and frame first, then the flags with release
 * ordering, so the backend never sees flags before the rest).
 *
 * Free grant refs are kept on a stack, so granting is O(1).  Ending a grant
 * is refused while the backend has it mapped (GTF_reading/GTF_writing set
 * by the hypervisor side), as gnttab_end_foreign_access does on Xen.
 */
#include "guest.h"
#include "hvproto.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <xen/grant_table.h>
#include <xenstore.h>

struct gport {
	bool used;
	int g2b, b2g;
};

struct sim_guest {
	int sock;
	uint16_t domid;
	char xs_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	pthread_mutex_t lock;         /* the socket, the grant allocator, ports */
	uint8_t *mem;
	size_t pages;
	struct grant_entry_v1 *gnt;   /* shared with the backend */
	unsigned nr_grants;
	bool *gused;                  /* refs handed out by sim_guest_grant */
	uint32_t *gfree;              /* the refs not in use, a stack */
	uint32_t nfree;
	struct gport ports[SIMHV_MAX_PORTS + 1];
};

/* A memfd of len bytes, sealed so that nobody can resize it. */
static int sealed_memfd(const char *name, size_t len)
{
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -1;
	if (ftruncate(fd, (off_t)len) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

struct sim_guest *sim_guest_connect(const char *dir, uint16_t domid, const char *name,
				    size_t pages, unsigned nr_grants, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct sim_guest *g;
	int memfd = -1, gntfd = -1;

	if (domid == 0 || domid > 0x7fef || pages == 0 || pages > SIMHV_MAX_PAGES ||
	    nr_grants == 0 || nr_grants > SIMHV_MAX_GRANTS) {
		snprintf(err, errlen, "bad domain parameters (domid 1..32751, pages 1..%u, grants 1..%u)",
			 SIMHV_MAX_PAGES, SIMHV_MAX_GRANTS);
		return NULL;
	}
	if (snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/hypervisor", dir) >=
	    (int)sizeof(sa.sun_path)) {
		snprintf(err, errlen, "simulator directory path too long: %s", dir);
		return NULL;
	}
	g = calloc(1, sizeof(*g));
	if (!g || !(g->gused = calloc(nr_grants, sizeof(bool))) ||
	    !(g->gfree = calloc(nr_grants, sizeof(uint32_t)))) {
		if (g)
			free(g->gused);
		free(g);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&g->lock, NULL);
	g->domid = domid;
	g->pages = pages;
	g->nr_grants = nr_grants;
	/* Ref 0 is reserved; the lowest refs go out first. */
	for (uint32_t i = nr_grants - 1; i >= 1; i--)
		g->gfree[g->nfree++] = i;
	g->mem = MAP_FAILED;
	g->gnt = MAP_FAILED;
	snprintf(g->xs_path, sizeof(g->xs_path), "%s/xenstored.d/%u", dir, domid);
	g->sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (g->sock < 0 || connect(g->sock, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		snprintf(err, errlen, "cannot connect to %s: %s", sa.sun_path, strerror(errno));
		goto fail;
	}
	memfd = sealed_memfd("vbdfs-guest-memory", pages * SIMHV_PAGE_SIZE);
	gntfd = sealed_memfd("vbdfs-guest-grants", nr_grants * sizeof(struct grant_entry_v1));
	if (memfd < 0 || gntfd < 0) {
		snprintf(err, errlen, "memfd: %s", strerror(errno));
		goto fail;
	}
	g->mem = mmap(NULL, pages * SIMHV_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	g->gnt = mmap(NULL, nr_grants * sizeof(struct grant_entry_v1), PROT_READ | PROT_WRITE,
		      MAP_SHARED, gntfd, 0);
	if (g->mem == MAP_FAILED || g->gnt == MAP_FAILED) {
		snprintf(err, errlen, "mmap: %s", strerror(errno));
		goto fail;
	}
	struct simhv_msg m = { .op = SIMHV_REGISTER, .domid = domid, .pages = pages,
			       .nr_grants = nr_grants };
	snprintf(m.name, sizeof(m.name), "%s", name ? name : "");
	int fds[2] = { memfd, gntfd };
	int r = simhv_call(g->sock, &m, fds, 2, NULL, NULL);
	if (r < 0) {
		snprintf(err, errlen, "cannot register domain %u: %s", domid,
			 r == -EEXIST ? "a domain with this id is running" : strerror(-r));
		goto fail;
	}
	close(memfd);
	close(gntfd);
	return g;
fail:
	if (memfd >= 0)
		close(memfd);
	if (gntfd >= 0)
		close(gntfd);
	sim_guest_disconnect(g);
	return NULL;
}

void sim_guest_disconnect(struct sim_guest *g)
{
	if (!g)
		return;
	for (unsigned i = 1; i <= SIMHV_MAX_PORTS; i++) {
		if (g->ports[i].used) {
			close(g->ports[i].g2b);
			close(g->ports[i].b2g);
		}
	}
	if (g->sock >= 0)
		close(g->sock); /* the domain dies with this connection */
	if (g->mem != MAP_FAILED)
		munmap(g->mem, g->pages * SIMHV_PAGE_SIZE);
	if (g->gnt != MAP_FAILED)
		munmap(g->gnt, g->nr_grants * sizeof(struct grant_entry_v1));
	pthread_mutex_destroy(&g->lock);
	free(g->gused);
	free(g->gfree);
	free(g);
}

const char *sim_guest_xenstore_path(const struct sim_guest *g)
{
	return g->xs_path;
}

struct xs_handle *sim_guest_xs_open(struct sim_guest *g)
{
	if (setenv("XENSTORED_PATH", g->xs_path, 1) < 0)
		return NULL;
	/* Never fall back to a real /dev/xen/xenbus on a Xen host. */
	return xs_open(XS_OPEN_SOCKETONLY);
}

uint16_t sim_guest_domid(const struct sim_guest *g)
{
	return g->domid;
}

void *sim_guest_page(struct sim_guest *g, uint32_t frame)
{
	if (frame >= g->pages)
		return NULL;
	return g->mem + (size_t)frame * SIMHV_PAGE_SIZE;
}

size_t sim_guest_nr_pages(const struct sim_guest *g)
{
	return g->pages;
}

static void write_entry(struct sim_guest *g, uint32_t gref, uint16_t flags, uint16_t domid,
			uint32_t frame)
{
	struct grant_entry_v1 *e = &g->gnt[gref];
	__atomic_store_n(&e->flags, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&e->domid, domid, __ATOMIC_RELAXED);
	__atomic_store_n(&e->frame, frame, __ATOMIC_RELAXED);
	/* The flags last: the entry becomes valid only once the rest is there. */
	__atomic_store_n(&e->flags, flags, __ATOMIC_RELEASE);
}

int sim_guest_grant(struct sim_guest *g, uint16_t to, uint32_t frame, bool readonly)
{
	if (frame >= g->pages)
		return -EINVAL;
	pthread_mutex_lock(&g->lock);
	if (g->nfree == 0) {
		pthread_mutex_unlock(&g->lock);
		return -ENOSPC;
	}
	uint32_t i = g->gfree[--g->nfree];
	g->gused[i] = true;
	pthread_mutex_unlock(&g->lock);
	write_entry(g, i, GTF_permit_access | (readonly ? GTF_readonly : 0), to, frame);
	return (int)i;
}

/* Clear the entry's flags unless the backend has it mapped; -EBUSY then.
 * One compare-and-swap against the copy checked, as Linux's
 * gnttab_end_foreign_access_ref does, so a map racing with us either sees
 * the entry ended or makes us see it in use. */
static int end_entry(struct sim_guest *g, uint32_t gref)
{
	uint64_t *word = (uint64_t *)&g->gnt[gref];
	uint64_t raw = __atomic_load_n(word, __ATOMIC_ACQUIRE);
	for (;;) {
		struct grant_entry_v1 e; /* the local copy */
		memcpy(&e, &raw, sizeof(e));
		if (e.flags & (GTF_reading | GTF_writing))
			return -EBUSY;
		e.flags = 0;
		uint64_t want;
		memcpy(&want, &e, sizeof(want));
		if (__atomic_compare_exchange_n(word, &raw, want, false, __ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE))
			return 0;
	}
}

int sim_guest_end_grant(struct sim_guest *g, uint32_t gref)
{
	if (gref == 0 || gref >= g->nr_grants)
		return -EINVAL;
	pthread_mutex_lock(&g->lock);
	int r = g->gused[gref] ? end_entry(g, gref) : -EINVAL;
	if (r == 0) {
		g->gused[gref] = false;
		g->gfree[g->nfree++] = gref;
	}
	pthread_mutex_unlock(&g->lock);
	return r;
}

int sim_guest_grant_flags(struct sim_guest *g, uint32_t gref)
{
	if (gref >= g->nr_grants)
		return -EINVAL;
	return __atomic_load_n(&g->gnt[gref].flags, __ATOMIC_ACQUIRE);
}

void sim_guest_set_grant_raw(struct sim_guest *g, uint32_t gref, uint16_t flags, uint16_t domid,
			     uint32_t frame)
{
	if (gref < g->nr_grants)
		write_entry(g, gref, flags, domid, frame);
}

int sim_guest_evtchn_alloc(struct sim_guest *g, uint16_t remote)
{
	struct simhv_msg m = { .op = SIMHV_EVTCHN_ALLOC, .remote = remote };
	int fds[2];
	unsigned nfds = 2;
	pthread_mutex_lock(&g->lock);
	int r = simhv_call(g->sock, &m, NULL, 0, fds, &nfds);
	if (r == 0 && (nfds != 2 || m.port == 0 || m.port > SIMHV_MAX_PORTS ||
		       g->ports[m.port].used)) {
		for (unsigned i = 0; i < nfds; i++)
			close(fds[i]);
		r = -EPROTO;
	}
	if (r == 0) {
		g->ports[m.port] = (struct gport){ .used = true, .g2b = fds[0], .b2g = fds[1] };
		r = (int)m.port;
	}
	pthread_mutex_unlock(&g->lock);
	return r;
}

static struct gport *port_of(struct sim_guest *g, uint32_t port)
{
	if (port == 0 || port > SIMHV_MAX_PORTS || !g->ports[port].used)
		return NULL;
	return &g->ports[port];
}

int sim_guest_evtchn_notify(struct sim_guest *g, uint32_t port)
{
	struct gport *p = port_of(g, port);
	uint64_t one = 1;
	if (!p)
		return -EINVAL;
	if (write(p->g2b, &one, sizeof(one)) != sizeof(one) && errno != EAGAIN)
		return -errno;
	return 0;
}

int sim_guest_evtchn_fd(struct sim_guest *g, uint32_t port)
{
	struct gport *p = port_of(g, port);
	return p ? p->b2g : -EINVAL;
}

int sim_guest_evtchn_ack(struct sim_guest *g, uint32_t port)
{
	struct gport *p = port_of(g, port);
	uint64_t v;
	if (!p)
		return -EINVAL;
	if (read(p->b2g, &v, sizeof(v)) == sizeof(v))
		return 1;
	return errno == EAGAIN ? 0 : -errno;
}

int sim_guest_evtchn_close(struct sim_guest *g, uint32_t port)
{
	struct simhv_msg m = { .op = SIMHV_EVTCHN_CLOSE, .port = port };
	pthread_mutex_lock(&g->lock);
	struct gport *p = port_of(g, port);
	int r = p ? simhv_call(g->sock, &m, NULL, 0, NULL, NULL) : -EINVAL;
	if (p) {
		close(p->g2b);
		close(p->b2g);
		p->used = false;
	}
	pthread_mutex_unlock(&g->lock);
	return r;
}
