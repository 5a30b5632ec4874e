/*
 * guestmem.c - pages of the simulated guest's memory and grants on them.
 *
 * A first-fit allocator over a bitmap of the guest's frames: rings need a
 * few contiguous frames, everything else single ones.  Frame 0 is never
 * handed out, so a zero frame number is always a bug.
 */
#include "dev.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "blkback/sim/guest.h"

struct vf_mem {
	struct sim_guest *g;
	pthread_mutex_t lock;
	size_t nr;
	uint8_t *used;      /* one byte per frame: simple and fast enough */
	size_t hint;        /* search start */
};

struct vf_mem *vf_mem_new(struct sim_guest *g)
{
	struct vf_mem *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->g = g;
	m->nr = sim_guest_nr_pages(g);
	m->used = calloc(m->nr ? m->nr : 1, 1);
	if (!m->used) {
		free(m);
		return NULL;
	}
	if (m->nr)
		m->used[0] = 1;
	pthread_mutex_init(&m->lock, NULL);
	return m;
}

void vf_mem_free(struct vf_mem *m)
{
	if (!m)
		return;
	pthread_mutex_destroy(&m->lock);
	free(m->used);
	free(m);
}

static int find_run(struct vf_mem *m, size_t from, size_t to, unsigned n, uint32_t *first)
{
	size_t run = 0;

	for (size_t f = from; f < to; f++) {
		run = m->used[f] ? 0 : run + 1;
		if (run == n) {
			*first = (uint32_t)(f + 1 - n);
			return 0;
		}
	}
	return -ENOMEM;
}

int vf_mem_alloc(struct vf_mem *m, unsigned n, uint32_t *first)
{
	int r;

	if (!n)
		return -EINVAL;
	pthread_mutex_lock(&m->lock);
	r = find_run(m, m->hint, m->nr, n, first);
	if (r)
		r = find_run(m, 1, m->nr, n, first);
	if (!r) {
		for (unsigned i = 0; i < n; i++)
			m->used[*first + i] = 1;
		m->hint = *first + n;
	}
	pthread_mutex_unlock(&m->lock);
	return r;
}

void vf_mem_release(struct vf_mem *m, uint32_t first, unsigned n)
{
	pthread_mutex_lock(&m->lock);
	for (unsigned i = 0; i < n && first + i < m->nr; i++)
		m->used[first + i] = 0;
	if (first < m->hint)
		m->hint = first;
	pthread_mutex_unlock(&m->lock);
}

void *vf_mem_page(struct vf_mem *m, uint32_t frame)
{
	return sim_guest_page(m->g, frame);
}

int vf_grant(struct vf_mem *m, uint16_t to, uint32_t frame, bool readonly)
{
	int r;

	pthread_mutex_lock(&m->lock);
	r = sim_guest_grant(m->g, to, frame, readonly);
	pthread_mutex_unlock(&m->lock);
	return r;
}

int vf_end_grant(struct vf_mem *m, uint32_t gref)
{
	int r;

	pthread_mutex_lock(&m->lock);
	r = sim_guest_end_grant(m->g, gref);
	pthread_mutex_unlock(&m->lock);
	return r;
}

void vf_grant_raw(struct vf_mem *m, uint32_t gref, uint16_t flags, uint16_t domid, uint32_t frame)
{
	pthread_mutex_lock(&m->lock);
	sim_guest_set_grant_raw(m->g, gref, flags, domid, frame);
	pthread_mutex_unlock(&m->lock);
}

struct sim_guest *vf_mem_guest(struct vf_mem *m)
{
	return m->g;
}
