/*
 * xs_store.h - the xenstore tree of the simulator: nodes, values,
 * permissions, per-domain node counts.  No I/O, no locking: the server
 * (xenstored.c) owns it and runs on one thread.
 *
 * Paths handed to these functions are canonical absolute paths ("/" or
 * "/a/b", checked by xs_path_valid); the protocol layer canonicalizes.
 *
 * Permissions follow Xen: perms[0] names the owner and the access of every
 * domain not listed; perms[1..] give per-domain access.  The owner may do
 * anything; dom0 ("privileged") may do anything anywhere.
 */
#ifndef VBDFS_SIM_XS_STORE_H
#define VBDFS_SIM_XS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define XS_P_READ  0x1
#define XS_P_WRITE 0x2

/* Limits (those of C xenstored's defaults). */
#define XS_QUOTA_NODES      1000u  /* nodes an unprivileged domain may own */
#define XS_QUOTA_VALUE      2048u  /* value bytes for an unprivileged domain */
#define XS_MAX_PERMS        64u    /* entries in one permission list */
#define XS_DOMID_MAX        0x7fefu /* DOMID_FIRST_RESERVED - 1 */

struct xs_perm {
	uint16_t id;
	uint8_t perm; /* XS_P_* */
};

struct xs_node {
	char *name;              /* last path component; "" for the root */
	struct xs_node *parent;
	char *value;
	uint32_t vlen;
	struct xs_perm *perms;   /* nperms >= 1 */
	uint32_t nperms;
	struct xs_node **kids;   /* in creation order, like xenstored */
	uint32_t nkids, kcap;
	uint64_t gen;            /* store generation of its last change */
};

struct xs_dom_count {
	uint16_t domid;
	uint32_t nodes;
};

struct xs_tree {
	struct xs_node *root;
	uint64_t gen;            /* bumped by every change */
	struct xs_dom_count *counts;
	uint32_t ncounts, ccap;
};

/* Who is asking. */
struct xs_who {
	uint16_t domid;
	bool priv;
};

struct xs_tree *xs_tree_new(void);
struct xs_tree *xs_tree_clone(const struct xs_tree *t); /* NULL on ENOMEM */
void xs_tree_free(struct xs_tree *t);

/* True if path is a canonical absolute node path of at most maxlen bytes. */
bool xs_path_valid(const char *path, size_t maxlen);

struct xs_node *xs_lookup(struct xs_tree *t, const char *path);

/* The access who has to n (XS_P_* bits). */
unsigned xs_access(const struct xs_node *n, struct xs_who who);

/* Write (or with value NULL, mkdir) path, creating missing ancestors with
 * inherited permissions.  0 or -errno (EACCES, ENOSPC, ENOMEM). *created
 * tells whether the node is new. */
int xs_set(struct xs_tree *t, const char *path, const void *value, uint32_t vlen,
	   bool mkdir, struct xs_who who, bool *created);

/* Remove path and its subtree; 0 or -errno.  Removing "/" is EINVAL. */
int xs_remove(struct xs_tree *t, const char *path, struct xs_who who);

/* Replace n's permission list (validated by the caller). */
int xs_set_perms(struct xs_tree *t, struct xs_node *n, const struct xs_perm *p, uint32_t np,
		 struct xs_who who);

/* Number of nodes owned by domid. */
uint32_t xs_owned(const struct xs_tree *t, uint16_t domid);

/* Full path of n into buf (NUL terminated); length or 0 if it does not fit. */
size_t xs_node_path(const struct xs_node *n, char *buf, size_t len);

#endif
