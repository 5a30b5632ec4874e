/*
 * xs_store.c - the simulator's xenstore tree (see xs_store.h).
 */
#include "xs_store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void count_add(struct xs_tree *t, uint16_t domid, int delta)
{
	for (uint32_t i = 0; i < t->ncounts; i++) {
		if (t->counts[i].domid == domid) {
			t->counts[i].nodes += (uint32_t)delta;
			return;
		}
	}
	if (delta <= 0)
		return;
	if (t->ncounts == t->ccap) {
		uint32_t cap = t->ccap ? t->ccap * 2 : 8;
		struct xs_dom_count *c = realloc(t->counts, cap * sizeof(*c));
		if (!c)
			return; /* counting is best effort under ENOMEM */
		t->counts = c;
		t->ccap = cap;
	}
	t->counts[t->ncounts].domid = domid;
	t->counts[t->ncounts].nodes = (uint32_t)delta;
	t->ncounts++;
}

uint32_t xs_owned(const struct xs_tree *t, uint16_t domid)
{
	for (uint32_t i = 0; i < t->ncounts; i++)
		if (t->counts[i].domid == domid)
			return t->counts[i].nodes;
	return 0;
}

static void node_free(struct xs_node *n)
{
	if (!n)
		return;
	for (uint32_t i = 0; i < n->nkids; i++)
		node_free(n->kids[i]);
	free(n->kids);
	free(n->name);
	free(n->value);
	free(n->perms);
	free(n);
}

static struct xs_node *node_new(const char *name, size_t namelen, const struct xs_perm *perms,
				uint32_t nperms)
{
	struct xs_node *n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->name = strndup(name, namelen);
	n->perms = malloc(nperms * sizeof(*perms));
	if (!n->name || !n->perms) {
		node_free(n);
		return NULL;
	}
	memcpy(n->perms, perms, nperms * sizeof(*perms));
	n->nperms = nperms;
	return n;
}

static int add_kid(struct xs_node *parent, struct xs_node *kid)
{
	if (parent->nkids == parent->kcap) {
		uint32_t cap = parent->kcap ? parent->kcap * 2 : 4;
		struct xs_node **k = realloc(parent->kids, cap * sizeof(*k));
		if (!k)
			return -ENOMEM;
		parent->kids = k;
		parent->kcap = cap;
	}
	parent->kids[parent->nkids++] = kid;
	kid->parent = parent;
	return 0;
}

struct xs_tree *xs_tree_new(void)
{
	struct xs_tree *t = calloc(1, sizeof(*t));
	struct xs_perm p = { .id = 0, .perm = 0 };
	if (!t)
		return NULL;
	t->root = node_new("", 0, &p, 1);
	if (!t->root) {
		free(t);
		return NULL;
	}
	count_add(t, 0, 1);
	return t;
}

static struct xs_node *node_clone(const struct xs_node *n, struct xs_node *parent)
{
	struct xs_node *c = node_new(n->name, strlen(n->name), n->perms, n->nperms);
	if (!c)
		return NULL;
	c->parent = parent;
	c->gen = n->gen;
	if (n->vlen) {
		c->value = malloc(n->vlen);
		if (!c->value)
			goto fail;
		memcpy(c->value, n->value, n->vlen);
		c->vlen = n->vlen;
	}
	if (n->nkids) {
		c->kids = calloc(n->nkids, sizeof(*c->kids));
		if (!c->kids)
			goto fail;
		c->kcap = n->nkids;
		for (uint32_t i = 0; i < n->nkids; i++) {
			c->kids[i] = node_clone(n->kids[i], c);
			if (!c->kids[i])
				goto fail;
			c->nkids++;
		}
	}
	return c;
fail:
	node_free(c);
	return NULL;
}

struct xs_tree *xs_tree_clone(const struct xs_tree *t)
{
	struct xs_tree *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->root = node_clone(t->root, NULL);
	c->counts = malloc((t->ccap ? t->ccap : 1) * sizeof(*c->counts));
	if (!c->root || !c->counts) {
		xs_tree_free(c);
		return NULL;
	}
	memcpy(c->counts, t->counts, t->ncounts * sizeof(*c->counts));
	c->ncounts = t->ncounts;
	c->ccap = t->ccap ? t->ccap : 1;
	c->gen = t->gen;
	return c;
}

void xs_tree_free(struct xs_tree *t)
{
	if (!t)
		return;
	node_free(t->root);
	free(t->counts);
	free(t);
}

static bool valid_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '@';
}

bool xs_path_valid(const char *path, size_t maxlen)
{
	size_t len = strlen(path);
	if (len == 0 || len > maxlen || path[0] != '/')
		return false;
	if (len == 1)
		return true;
	if (path[len - 1] == '/')
		return false;
	for (size_t i = 1; i < len; i++) {
		if (path[i] == '/') {
			if (path[i - 1] == '/')
				return false;
		} else if (!valid_char(path[i])) {
			return false;
		}
	}
	return true;
}

static struct xs_node *find_kid(const struct xs_node *n, const char *name, size_t len)
{
	for (uint32_t i = 0; i < n->nkids; i++) {
		const char *k = n->kids[i]->name;
		if (strncmp(k, name, len) == 0 && k[len] == '\0')
			return n->kids[i];
	}
	return NULL;
}

/* Walk as far as path exists; *rest points at the first missing component
 * (or at the terminating NUL if everything exists). */
static struct xs_node *walk(struct xs_tree *t, const char *path, const char **rest)
{
	struct xs_node *n = t->root;
	const char *p = path + 1;
	while (*p) {
		const char *e = strchr(p, '/');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		struct xs_node *k = find_kid(n, p, len);
		if (!k)
			break;
		n = k;
		p += len;
		if (*p == '/')
			p++;
	}
	*rest = p;
	return n;
}

struct xs_node *xs_lookup(struct xs_tree *t, const char *path)
{
	const char *rest;
	struct xs_node *n = walk(t, path, &rest);
	return *rest ? NULL : n;
}

unsigned xs_access(const struct xs_node *n, struct xs_who who)
{
	if (who.priv || n->perms[0].id == who.domid)
		return XS_P_READ | XS_P_WRITE;
	for (uint32_t i = 1; i < n->nperms; i++)
		if (n->perms[i].id == who.domid)
			return n->perms[i].perm;
	return n->perms[0].perm;
}

/* Permissions of a node created under parent by who: inherited, but an
 * unprivileged creator owns it (and is dropped from the list). */
static uint32_t inherit_perms(const struct xs_node *parent, struct xs_who who,
			      struct xs_perm *out)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < parent->nperms; i++) {
		if (i > 0 && !who.priv && parent->perms[i].id == who.domid)
			continue;
		out[n++] = parent->perms[i];
	}
	if (!who.priv)
		out[0].id = who.domid;
	return n;
}

static int set_value(struct xs_node *n, const void *value, uint32_t vlen)
{
	char *v = NULL;
	if (vlen) {
		v = malloc(vlen);
		if (!v)
			return -ENOMEM;
		memcpy(v, value, vlen);
	}
	free(n->value);
	n->value = v;
	n->vlen = vlen;
	return 0;
}

int xs_set(struct xs_tree *t, const char *path, const void *value, uint32_t vlen, bool mkdir,
	   struct xs_who who, bool *created)
{
	const char *rest;
	struct xs_node *n = walk(t, path, &rest);
	uint64_t gen = t->gen + 1;
	*created = false;
	if (!who.priv && !mkdir && vlen > XS_QUOTA_VALUE)
		return -ENOSPC;
	if (!(xs_access(n, who) & XS_P_WRITE))
		return -EACCES;
	if (!*rest) {
		if (mkdir)
			return 0;
		int r = set_value(n, value, vlen);
		if (r == 0) {
			n->gen = gen;
			t->gen = gen;
		}
		return r;
	}
	/* Count the missing components for the quota check. */
	uint32_t missing = 1;
	for (const char *p = rest; *p; p++)
		missing += *p == '/';
	uint16_t owner = who.priv ? n->perms[0].id : who.domid;
	if (!who.priv && xs_owned(t, owner) + missing > XS_QUOTA_NODES)
		return -ENOSPC;

	struct xs_perm perms[XS_MAX_PERMS + 1];
	struct xs_node *top = NULL, *parent = n;
	while (*rest) {
		const char *e = strchr(rest, '/');
		size_t len = e ? (size_t)(e - rest) : strlen(rest);
		uint32_t np = inherit_perms(parent, who, perms);
		struct xs_node *k = node_new(rest, len, perms, np);
		if (!k || (parent != n && add_kid(parent, k) < 0)) {
			node_free(k);
			node_free(top);
			return -ENOMEM;
		}
		if (parent == n)
			top = k; /* attached to the tree last, so failure leaves no trace */
		k->parent = parent;
		k->gen = gen;
		parent = k;
		rest += len;
		if (*rest == '/')
			rest++;
	}
	if (!mkdir && set_value(parent, value, vlen) < 0) {
		node_free(top);
		return -ENOMEM;
	}
	if (add_kid(n, top) < 0) {
		node_free(top);
		return -ENOMEM;
	}
	/* Account every new node to its owner. */
	for (struct xs_node *k = parent; k != n; k = k->parent)
		count_add(t, k->perms[0].id, 1);
	n->gen = gen;
	t->gen = gen;
	*created = true;
	return 0;
}

static void uncount(struct xs_tree *t, const struct xs_node *n)
{
	count_add(t, n->perms[0].id, -1);
	for (uint32_t i = 0; i < n->nkids; i++)
		uncount(t, n->kids[i]);
}

int xs_remove(struct xs_tree *t, const char *path, struct xs_who who)
{
	struct xs_node *n = xs_lookup(t, path);
	if (!n)
		return -ENOENT;
	if (!n->parent)
		return -EINVAL;
	if (!(xs_access(n, who) & XS_P_WRITE))
		return -EACCES;
	struct xs_node *p = n->parent;
	for (uint32_t i = 0; i < p->nkids; i++) {
		if (p->kids[i] == n) {
			memmove(&p->kids[i], &p->kids[i + 1], (p->nkids - i - 1) * sizeof(n));
			p->nkids--;
			break;
		}
	}
	uncount(t, n);
	node_free(n);
	t->gen++;
	p->gen = t->gen;
	return 0;
}

int xs_set_perms(struct xs_tree *t, struct xs_node *n, const struct xs_perm *p, uint32_t np,
		 struct xs_who who)
{
	if (!who.priv && n->perms[0].id != who.domid)
		return -EACCES;
	if (!who.priv && p[0].id != who.domid)
		return -EPERM; /* an unprivileged owner cannot give a node away */
	struct xs_perm *copy = malloc(np * sizeof(*p));
	if (!copy)
		return -ENOMEM;
	memcpy(copy, p, np * sizeof(*p));
	if (copy[0].id != n->perms[0].id) {
		count_add(t, n->perms[0].id, -1);
		count_add(t, copy[0].id, 1);
	}
	free(n->perms);
	n->perms = copy;
	n->nperms = np;
	t->gen++;
	n->gen = t->gen;
	return 0;
}

size_t xs_node_path(const struct xs_node *n, char *buf, size_t len)
{
	if (!n->parent) {
		if (len < 2)
			return 0;
		strcpy(buf, "/");
		return 1;
	}
	/* Measure, then fill from the end. */
	size_t total = 0;
	for (const struct xs_node *k = n; k->parent; k = k->parent)
		total += 1 + strlen(k->name);
	if (total + 1 > len)
		return 0;
	size_t pos = total;
	buf[pos] = '\0';
	for (const struct xs_node *k = n; k->parent; k = k->parent) {
		size_t l = strlen(k->name);
		pos -= l;
		memcpy(buf + pos, k->name, l);
		buf[--pos] = '/';
	}
	return total;
}
