/*
 * guest.h - the guest side of the simulated hypervisor (used by vbd-front).
 *
 * A simulated guest is a process that registers as domain N with
 * DIR/hypervisor, owns a memfd of guest memory and a grant table, grants
 * pages of it to the backend and signals it through event channels; it
 * talks to xenstore with the real libxenstore (XENSTORED_PATH).
 */
#ifndef VBDFS_SIM_GUEST_H
#define VBDFS_SIM_GUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sim_guest;

/* Register as domain domid (1..32751) named name, with pages pages of
 * memory and a grant table of nr_grants entries. */
struct sim_guest *sim_guest_connect(const char *dir, uint16_t domid, const char *name,
				    size_t pages, unsigned nr_grants, char *err, size_t errlen);
void sim_guest_disconnect(struct sim_guest *g);

/* This domain's own xenstore socket, DIR/xenstored.d/<domid>: point
 * XENSTORED_PATH at it and the real libxenstore (or xenstore-* tools) talk
 * to xenstore as this domain.  It exists while the domain is registered. */
const char *sim_guest_xenstore_path(const struct sim_guest *g);
/* setenv(XENSTORED_PATH) to that path and xs_open(XS_OPEN_SOCKETONLY): a
 * libxenstore handle of this domain (NULL and errno on failure).  Changes
 * the environment of the whole process. */
struct xs_handle;
struct xs_handle *sim_guest_xs_open(struct sim_guest *g);
uint16_t sim_guest_domid(const struct sim_guest *g);

/* Guest memory: page frame n is at sim_guest_page(g, n). */
void *sim_guest_page(struct sim_guest *g, uint32_t frame);
size_t sim_guest_nr_pages(const struct sim_guest *g);

/* Grant frame to domain `to`; returns the grant ref (>= 1) or -errno
 * (-ENOSPC when every ref is in use).  O(1): free refs are kept on a stack. */
int sim_guest_grant(struct sim_guest *g, uint16_t to, uint32_t frame, bool readonly);
/* End a grant: 0, -EINVAL if gref is not granted, or -EBUSY while the
 * backend has it mapped (GTF_reading/GTF_writing set in the entry, as Xen
 * sets them); the grant then stays valid and may be ended again later. */
int sim_guest_end_grant(struct sim_guest *g, uint32_t gref);
/* The flags word of grant entry gref as the backend left it (-EINVAL if
 * gref is outside the table). */
int sim_guest_grant_flags(struct sim_guest *g, uint32_t gref);
/* Raw access to a grant entry, for tests that misbehave on purpose. */
void sim_guest_set_grant_raw(struct sim_guest *g, uint32_t gref, uint16_t flags,
			     uint16_t domid, uint32_t frame);

/* Allocate an unbound port that domain remote may bind; returns the port
 * (>= 1) or -errno. */
int sim_guest_evtchn_alloc(struct sim_guest *g, uint16_t remote);
int sim_guest_evtchn_notify(struct sim_guest *g, uint32_t port);
/* Pollable fd that becomes readable when the backend notifies port. */
int sim_guest_evtchn_fd(struct sim_guest *g, uint32_t port);
/* Consume pending notifications on port; 1 if any were pending. */
int sim_guest_evtchn_ack(struct sim_guest *g, uint32_t port);
/* Close a port allocated by sim_guest_evtchn_alloc; 0 or -errno. */
int sim_guest_evtchn_close(struct sim_guest *g, uint32_t port);

#endif
