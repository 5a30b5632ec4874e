/*
 * hv_fuzz.h - an in-process hypervisor transport (struct hv) for the
 * fuzz target fuzz_blkif_req.c: one guest whose memory (FZ_PAGES frames)
 * and grant table come from the fuzz input.
 *
 * Grants are checked as Xen checks them: the entry must permit access, be
 * granted to the backend's domain, allow writing if the backend writes
 * (grant copy to the guest, writable map), and name a frame inside the
 * guest's memory.  A failed check fails the call (or the one copy segment),
 * never the process.  A mapping is a real shared mapping of the guest's
 * frames (a memfd), read-only unless asked writable, so an engine write
 * through a read-only mapping faults and the fuzzer reports it.
 *
 * What the engine itself must never do traps (__builtin_trap): use another
 * domain id than the guest's, copy across a page boundary, unmap what it
 * did not map.  Event channels are counters with no file descriptor: a
 * synchronous engine (engine_start_sync) never waits on them.
 *
 * Header-only: the fuzz build links each t/fuzz/fuzz_*.c alone.
 */
#ifndef VBDFS_T_HV_FUZZ_H
#define VBDFS_T_HV_FUZZ_H

#include <errno.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "blkback/hv.h"

#define FZ_PAGES 16u   /* guest memory, in 4 KiB frames */
#define FZ_GRANTS 32u  /* grant table entries; larger refs are invalid */
#define FZ_MAPS 4096u  /* live mappings the transport can track */

/* A grant entry, as decoded from the input. */
struct fz_grant {
	bool permit;      /* GTF_permit_access */
	bool readonly;    /* GTF_readonly */
	uint16_t domid;   /* the domain it is granted to */
	uint32_t frame;   /* may be outside guest memory */
};

struct fz_map {
	void *addr;
	unsigned n;
};

struct fz_hv {
	struct hv hv;
	uint16_t guest;                 /* the guest's domain id */
	uint32_t port;                  /* the guest's event channel */
	int memfd;
	char *mem;                      /* the guest's view of its memory */
	struct fz_grant grant[FZ_GRANTS];
	bool ring_frame[FZ_PAGES];      /* frames of the shared ring */
	bool ring_mapped;               /* the engine mapped its ring */
	bool ring_clobbered;            /* the engine may have written a ring
					 * frame other than through the ring */
	unsigned maps_live, binds_live, notifies, copies;
	struct fz_map map[FZ_MAPS];
	unsigned nmap;
	char evtchn;                    /* what evtchn_bind hands out */
};

static inline struct fz_hv *fz_of(struct hv *hv)
{
	return (struct fz_hv *)hv;
}

/* Byte offset of the guest frame behind gref, or -1 if Xen would refuse
 * the backend this access. */
static inline long fz_granted(struct fz_hv *f, hv_gref_t gref, bool write)
{
	const struct fz_grant *g;

	if (gref >= FZ_GRANTS)
		return -1;
	g = &f->grant[gref];
	if (!g->permit || g->domid != f->hv.self_domid || (write && g->readonly) ||
	    g->frame >= FZ_PAGES)
		return -1;
	return (long)g->frame * HV_PAGE_SIZE;
}

static inline void fz_check_domid(struct fz_hv *f, uint16_t domid)
{
	if (domid != f->guest)
		__builtin_trap(); /* the engine talks about another guest */
}

static inline struct hv_evtchn *fz_bind(struct hv *hv, uint16_t domid, uint32_t port, int *err)
{
	struct fz_hv *f = fz_of(hv);

	fz_check_domid(f, domid);
	if (port != f->port) {
		*err = -EINVAL;
		return NULL;
	}
	f->binds_live++;
	return (struct hv_evtchn *)&f->evtchn;
}

static inline struct fz_hv *fz_of_ch(struct hv_evtchn *ch)
{
	return (struct fz_hv *)((char *)ch - offsetof(struct fz_hv, evtchn));
}

static inline void fz_unbind(struct hv_evtchn *ch)
{
	fz_of_ch(ch)->binds_live--;
}

static inline int fz_fd(struct hv_evtchn *ch)
{
	(void)ch;
	return -1;
}

static inline int fz_ack(struct hv_evtchn *ch)
{
	(void)ch;
	return 0;
}

static inline int fz_notify(struct hv_evtchn *ch)
{
	fz_of_ch(ch)->notifies++;
	return 0;
}

static inline int fz_copy(struct hv *hv, uint16_t domid, struct hv_copy_seg *s, unsigned n)
{
	struct fz_hv *f = fz_of(hv);
	int rc = 0;

	fz_check_domid(f, domid);
	for (unsigned i = 0; i < n; i++) {
		long at = fz_granted(f, s[i].gref, s[i].to_guest);

		f->copies++;
		if ((unsigned)s[i].offset + s[i].len > HV_PAGE_SIZE)
			__builtin_trap(); /* the engine must split at pages */
		if (at < 0) {
			s[i].status = -1; /* GNTST_permission_denied and friends */
			rc = -EIO;
			continue;
		}
		if (s[i].to_guest) {
			if (f->ring_frame[at / HV_PAGE_SIZE])
				f->ring_clobbered = true;
			memcpy(f->mem + at + s[i].offset, s[i].local, s[i].len);
		} else {
			memcpy(s[i].local, f->mem + at + s[i].offset, s[i].len);
		}
		s[i].status = 0;
	}
	return rc;
}

static inline void *fz_map(struct hv *hv, uint16_t domid, const hv_gref_t *refs, unsigned n,
			   bool writable, int *err)
{
	struct fz_hv *f = fz_of(hv);
	char *base;

	fz_check_domid(f, domid);
	if (!n || n > FZ_PAGES || f->nmap == FZ_MAPS) {
		*err = -EINVAL;
		return NULL;
	}
	for (unsigned i = 0; i < n; i++) {
		if (fz_granted(f, refs[i], writable) < 0) {
			*err = -EPERM;
			return NULL;
		}
	}
	base = mmap(NULL, (size_t)n * HV_PAGE_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED) {
		*err = -ENOMEM;
		return NULL;
	}
	for (unsigned i = 0; i < n; i++) {
		long at = fz_granted(f, refs[i], writable);

		if (mmap(base + (size_t)i * HV_PAGE_SIZE, HV_PAGE_SIZE,
			 PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED | MAP_FIXED, f->memfd,
			 at) == MAP_FAILED) {
			munmap(base, (size_t)n * HV_PAGE_SIZE);
			*err = -ENOMEM;
			return NULL;
		}
		/* The engine maps its ring first; a later writable mapping of
		 * a ring frame lets it write there behind the ring's back. */
		if (writable && f->ring_mapped && f->ring_frame[at / HV_PAGE_SIZE])
			f->ring_clobbered = true;
	}
	f->ring_mapped = true;
	f->map[f->nmap++] = (struct fz_map){ base, n };
	f->maps_live += n;
	return base;
}

static inline int fz_unmap(struct hv *hv, void *addr, unsigned n)
{
	struct fz_hv *f = fz_of(hv);

	for (unsigned i = 0; i < f->nmap; i++) {
		if (f->map[i].addr != addr)
			continue;
		if (f->map[i].n != n)
			__builtin_trap(); /* unmapping part of a mapping */
		f->map[i] = f->map[--f->nmap];
		f->maps_live -= n;
		return munmap(addr, (size_t)n * HV_PAGE_SIZE);
	}
	__builtin_trap(); /* unmapping what was never mapped */
}

static inline void fz_close(struct hv *hv)
{
	(void)hv;
}

static const struct hv_ops fz_ops = {
	.name = "fuzz",
	.evtchn_bind = fz_bind,
	.evtchn_unbind = fz_unbind,
	.evtchn_fd = fz_fd,
	.evtchn_ack = fz_ack,
	.evtchn_notify = fz_notify,
	.grant_copy = fz_copy,
	.map = fz_map,
	.unmap = fz_unmap,
	.close = fz_close,
};

/* Reset f for a new input: zeroed memory and grant table, no mapping.
 * The memfd and the harness's view of it are made once and reused.
 * false if they cannot be made. */
static inline bool fz_hv_reset(struct fz_hv *f, uint16_t guest, uint32_t port)
{
	int memfd = f->memfd;
	char *mem = f->mem;

	if (!mem) {
		memfd = memfd_create("fuzz-guest", MFD_CLOEXEC);
		if (memfd < 0 || ftruncate(memfd, (off_t)FZ_PAGES * HV_PAGE_SIZE) < 0)
			return false;
		mem = mmap(NULL, (size_t)FZ_PAGES * HV_PAGE_SIZE, PROT_READ | PROT_WRITE,
			   MAP_SHARED, memfd, 0);
		if (mem == MAP_FAILED)
			return false;
	}
	memset(f, 0, sizeof(*f));
	f->hv.ops = &fz_ops;
	f->hv.self_domid = 0;
	f->guest = guest;
	f->port = port;
	f->memfd = memfd;
	f->mem = mem;
	memset(mem, 0, (size_t)FZ_PAGES * HV_PAGE_SIZE);
	return true;
}

#endif
