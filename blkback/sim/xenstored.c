/*
 * xenstored.c - the simulator's xenstore protocol engine (see xenstored.h).
 *
 * Requests are handled in arrival order.  Transactions work on a private
 * copy of the whole tree; commit succeeds if nothing changed the store
 * since the copy was taken (a whole-store generation check, else EAGAIN)
 * and then simply adopts the copy, firing the watches of every change the
 * transaction made.  A transaction that changed nothing always commits.
 */
#include "xenstored.h"
#include "xs_store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xen/io/xs_wire.h>

#include "util/log.h"

struct xs_watch {
	struct xs_watch *next;
	char *path;     /* canonical absolute, or "@special" */
	char *token;
	bool relative;  /* registered relative to the domain's path */
};

struct xs_change {
	char *path;
	bool removed;
};

/* A node a transaction looked at, as it was in the store when it did. */
struct xs_note {
	char *path;
	bool existed;
	uint64_t gen;
};

#define XS_TXN_MAX_LOG 1024u /* notes or changes; beyond: whole-store check */

struct xs_txn {
	struct xs_txn *next;
	uint32_t id;
	struct xs_tree *tree;
	uint64_t base_gen;
	struct xs_change *changes;
	uint32_t nchanges, ccap;
	struct xs_note *notes;
	uint32_t nnotes, ncap;
	bool overflow;     /* logs too long: commit only if the store is untouched */
};

struct xs_event {
	struct xs_event *next;
	char *path;
	char *token;
};

struct xs_conn {
	struct xs_server *srv;
	struct xs_conn *next, *prev;
	uint16_t domid;
	bool priv;
	bool dead;

	uint8_t *in;
	size_t in_len, in_cap;

	uint8_t *out;
	size_t out_start, out_len, out_cap; /* pending bytes: out[out_start, out_len) */

	struct xs_event *ev_head, *ev_tail;
	unsigned nevents;
	size_t ev_bytes;        /* path and token bytes queued */
	uint64_t ev_dropped;

	struct xs_watch *watches;
	unsigned nwatches;
	struct xs_txn *txns;
	unsigned ntxns;
};

struct xs_server {
	struct xs_tree *tree;
	struct xs_conn *conns;
	uint32_t next_txn;
	xs_domain_hook *hook;
	void *hook_arg;
	uint16_t *doms;     /* introduced guest domains */
	unsigned ndoms, dcap;
	uint64_t activity;  /* see xs_server_activity() */
};

static struct ratelimit xs_rl = RATELIMIT_INIT(10, 5);

/* ------------------------------------------------------------ output */

static int out_reserve(struct xs_conn *c, size_t more)
{
	if (c->out_start && c->out_start == c->out_len)
		c->out_start = c->out_len = 0;
	if (c->out_len + more <= c->out_cap)
		return 0;
	/* Compact first, then grow. */
	if (c->out_start) {
		memmove(c->out, c->out + c->out_start, c->out_len - c->out_start);
		c->out_len -= c->out_start;
		c->out_start = 0;
		if (c->out_len + more <= c->out_cap)
			return 0;
	}
	size_t cap = c->out_cap ? c->out_cap : 4096;
	while (cap < c->out_len + more)
		cap *= 2;
	uint8_t *o = realloc(c->out, cap);
	if (!o)
		return -1;
	c->out = o;
	c->out_cap = cap;
	return 0;
}

static void send_msg(struct xs_conn *c, uint32_t type, uint32_t req_id, uint32_t tx_id,
		     const void *a, size_t alen, const void *b, size_t blen)
{
	struct xsd_sockmsg h = { .type = type, .req_id = req_id, .tx_id = tx_id,
				 .len = (uint32_t)(alen + blen) };
	if (out_reserve(c, sizeof(h) + alen + blen) < 0) {
		c->dead = true; /* cannot answer: drop the client rather than lie */
		return;
	}
	memcpy(c->out + c->out_len, &h, sizeof(h));
	c->out_len += sizeof(h);
	if (alen)
		memcpy(c->out + c->out_len, a, alen);
	c->out_len += alen;
	if (blen)
		memcpy(c->out + c->out_len, b, blen);
	c->out_len += blen;
}

/* Move queued events into the output, while the output stays small. */
static void serialize_events(struct xs_conn *c)
{
	while (c->ev_head && !c->dead && c->out_len - c->out_start < XS_OUT_LIMIT / 4) {
		struct xs_event *e = c->ev_head;
		send_msg(c, XS_WATCH_EVENT, 0, 0, e->path, strlen(e->path) + 1, e->token,
			 strlen(e->token) + 1);
		c->ev_head = e->next;
		if (!c->ev_head)
			c->ev_tail = NULL;
		c->nevents--;
		c->ev_bytes -= strlen(e->path) + strlen(e->token) + 2;
		free(e->path);
		free(e->token);
		free(e);
	}
}

size_t xs_conn_output(struct xs_conn *c, const void **data)
{
	if (c->ev_head && c->out_len - c->out_start < XS_OUT_LIMIT / 4)
		serialize_events(c);
	*data = c->out ? c->out + c->out_start : NULL;
	return c->out_len - c->out_start;
}

void xs_conn_consumed(struct xs_conn *c, size_t n)
{
	c->out_start += n;
	if (c->out_start >= c->out_len)
		c->out_start = c->out_len = 0;
	xs_pump(c);
}

/* ------------------------------------------------------------ replies */

struct req {
	struct xsd_sockmsg h;
	char *body;      /* payload + a terminating NUL (not counted in h.len) */
};

static const char *err_name(int err)
{
	for (size_t i = 0; i < sizeof(xsd_errors) / sizeof(xsd_errors[0]); i++)
		if (xsd_errors[i].errnum == err)
			return xsd_errors[i].errstring;
	return "EINVAL";
}

static void reply(struct xs_conn *c, const struct req *r, const void *data, size_t len)
{
	send_msg(c, r->h.type, r->h.req_id, r->h.tx_id, data, len, NULL, 0);
}

static void reply_err(struct xs_conn *c, const struct req *r, int err)
{
	const char *n = err_name(err);
	send_msg(c, XS_ERROR, r->h.req_id, r->h.tx_id, n, strlen(n) + 1, NULL, 0);
}

static void reply_ok(struct xs_conn *c, const struct req *r)
{
	reply(c, r, "OK", 3);
}

static void reply_str(struct xs_conn *c, const struct req *r, const char *s)
{
	reply(c, r, s, strlen(s) + 1);
}

/* ------------------------------------------------------------ helpers */

/* The single argument of a request: the payload must be one string. */
static const char *onearg(const struct req *r)
{
	if (r->h.len == 0 || r->body[r->h.len - 1] != '\0')
		return NULL;
	if (strlen(r->body) + 1 != r->h.len)
		return NULL;
	return r->body;
}

/* Split the payload into NUL-terminated strings; a trailing unterminated
 * piece is not counted.  Returns the number found (at most max). */
static unsigned args(const struct req *r, const char **argv, unsigned max)
{
	unsigned n = 0;
	size_t pos = 0;
	while (pos < r->h.len && n < max) {
		size_t l = strnlen(r->body + pos, r->h.len - pos);
		if (pos + l >= r->h.len)
			break; /* no terminator inside the payload */
		argv[n++] = r->body + pos;
		pos += l + 1;
	}
	return n;
}

static bool parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	unsigned long v = 0;
	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		v = v * 10 + (unsigned long)(*s - '0');
		if (v > max)
			return false;
	}
	*out = v;
	return true;
}

/* Canonical absolute path of a client path into buf; false if invalid. */
static bool canonical(const struct xs_conn *c, const char *in, char *buf, size_t len)
{
	int n;
	if (in[0] == '/')
		n = snprintf(buf, len, "%s", in);
	else
		n = snprintf(buf, len, "/local/domain/%u/%s", c->domid, in);
	if (n < 0 || (size_t)n >= len)
		return false;
	return xs_path_valid(buf, XENSTORE_ABS_PATH_MAX);
}

static struct xs_who who_of(const struct xs_conn *c)
{
	return (struct xs_who){ .domid = c->domid, .priv = c->priv };
}

static struct xs_txn *find_txn(struct xs_conn *c, uint32_t id)
{
	for (struct xs_txn *t = c->txns; t; t = t->next)
		if (t->id == id)
			return t;
	return NULL;
}

static bool is_child(const char *child, const char *parent)
{
	size_t pl = strlen(parent);
	if (pl == 1 && parent[0] == '/')
		return child[0] == '/';
	return strncmp(child, parent, pl) == 0 && (child[pl] == '/' || child[pl] == '\0');
}

/* ------------------------------------------------------------ watches */

static void queue_event(struct xs_conn *c, const char *path, const char *token)
{
	if (c->dead)
		return;
	c->srv->activity++;
	/* Coalesce: an identical event still queued says the same thing. */
	for (struct xs_event *e = c->ev_head; e; e = e->next)
		if (strcmp(e->path, path) == 0 && strcmp(e->token, token) == 0)
			return;
	size_t bytes = strlen(path) + strlen(token) + 2;
	if (c->nevents >= XS_MAX_EVENTS || c->ev_bytes + bytes > XS_MAX_EVENT_BYTES) {
		c->ev_dropped++;
		log_limited(&xs_rl, VLOG_WARN,
			    "xenstored: dom%u is not reading its watch events; %" PRIu64
			    " dropped", c->domid, c->ev_dropped);
		return;
	}
	struct xs_event *e = calloc(1, sizeof(*e));
	if (e) {
		e->path = strdup(path);
		e->token = strdup(token);
	}
	if (!e || !e->path || !e->token) {
		if (e) {
			free(e->path);
			free(e->token);
		}
		free(e);
		c->ev_dropped++;
		return;
	}
	if (c->ev_tail)
		c->ev_tail->next = e;
	else
		c->ev_head = e;
	c->ev_tail = e;
	c->nevents++;
	c->ev_bytes += bytes;
}

static void event_for(struct xs_conn *c, const struct xs_watch *w, const char *path)
{
	char prefix[32];
	int pl = snprintf(prefix, sizeof(prefix), "/local/domain/%u/", c->domid);
	if (w->relative && strncmp(path, prefix, (size_t)pl) == 0)
		path += pl;
	queue_event(c, path, w->token);
}

/* Fire the watches for a change of path.  node (the changed node, or the
 * removed one as it was) decides who may see it; NULL: dom0 only. */
static void fire(struct xs_server *s, const char *path, const struct xs_node *node, bool removed)
{
	for (struct xs_conn *c = s->conns; c; c = c->next) {
		if (c->dead)
			continue;
		if (!c->priv && (!node || !(xs_access(node, who_of(c)) & XS_P_READ)))
			continue;
		for (struct xs_watch *w = c->watches; w; w = w->next) {
			if (w->path[0] == '@')
				continue;
			if (is_child(path, w->path))
				event_for(c, w, path);
			else if (removed && is_child(w->path, path))
				event_for(c, w, w->path);
		}
	}
}

static void fire_special(struct xs_server *s, const char *name)
{
	for (struct xs_conn *c = s->conns; c; c = c->next)
		for (struct xs_watch *w = c->watches; w; w = w->next)
			if (strcmp(w->path, name) == 0)
				queue_event(c, name, w->token);
}

static void free_watch(struct xs_watch *w)
{
	free(w->path);
	free(w->token);
	free(w);
}

static void drop_events(struct xs_conn *c)
{
	while (c->ev_head) {
		struct xs_event *e = c->ev_head;
		c->ev_head = e->next;
		free(e->path);
		free(e->token);
		free(e);
	}
	c->ev_tail = NULL;
	c->nevents = 0;
	c->ev_bytes = 0;
}

/* ------------------------------------------------------------ transactions */

static void txn_free(struct xs_txn *t)
{
	xs_tree_free(t->tree);
	for (uint32_t i = 0; i < t->nchanges; i++)
		free(t->changes[i].path);
	free(t->changes);
	for (uint32_t i = 0; i < t->nnotes; i++)
		free(t->notes[i].path);
	free(t->notes);
	free(t);
}

/* Remember that the transaction depends on path as it is now in its copy
 * (the first look counts: that is the store as it was at the start). */
static void txn_note(struct xs_txn *t, const char *path)
{
	if (!t || t->overflow)
		return;
	for (uint32_t i = 0; i < t->nnotes; i++)
		if (strcmp(t->notes[i].path, path) == 0)
			return;
	/* Below a node this transaction removed, everything is its own doing
	 * (remove a directory, write it anew: the usual way to rewrite keys);
	 * the removal already depends on that node. */
	for (uint32_t i = 0; i < t->nchanges; i++)
		if (t->changes[i].removed && is_child(path, t->changes[i].path))
			return;
	if (t->nnotes == t->ncap) {
		uint32_t cap = t->ncap ? t->ncap * 2 : 8;
		struct xs_note *n = cap <= XS_TXN_MAX_LOG ? realloc(t->notes, cap * sizeof(*n)) : NULL;
		if (!n) {
			t->overflow = true;
			return;
		}
		t->notes = n;
		t->ncap = cap;
	}
	char *p = strdup(path);
	if (!p) {
		t->overflow = true;
		return;
	}
	struct xs_node *node = xs_lookup(t->tree, path);
	t->notes[t->nnotes++] = (struct xs_note){ .path = p, .existed = node != NULL,
						  .gen = node ? node->gen : 0 };
}

/* Note path and its ancestors up to the first that exists: creating a node
 * changes that ancestor's list of children. */
static void txn_note_chain(struct xs_txn *t, const char *path)
{
	char buf[XENSTORE_ABS_PATH_MAX + 64];
	if (!t)
		return;
	snprintf(buf, sizeof(buf), "%s", path);
	for (;;) {
		txn_note(t, buf);
		if (strcmp(buf, "/") == 0 || xs_lookup(t->tree, buf))
			return;
		char *slash = strrchr(buf, '/');
		if (slash == buf)
			slash[1] = '\0';
		else
			*slash = '\0';
	}
}

/* True if every node the transaction depended on is as it was. */
static bool txn_still_valid(const struct xs_txn *t, struct xs_tree *store)
{
	for (uint32_t i = 0; i < t->nnotes; i++) {
		struct xs_node *n = xs_lookup(store, t->notes[i].path);
		if ((n != NULL) != t->notes[i].existed || (n && n->gen != t->notes[i].gen))
			return false;
	}
	return true;
}

/* Make path in the store what it is in the transaction's copy (value and
 * permissions), creating missing ancestors as they are in the copy. */
static void copy_node(struct xs_tree *store, struct xs_tree *copy, const char *path)
{
	char buf[XENSTORE_ABS_PATH_MAX + 64];
	struct xs_who priv = { .priv = true };
	size_t len = strlen(path);
	bool created;
	for (size_t end = 1; end <= len; end++) {
		if (end < len && path[end] != '/')
			continue;
		memcpy(buf, path, end);
		buf[end] = '\0';
		struct xs_node *c = xs_lookup(copy, buf);
		struct xs_node *m = xs_lookup(store, buf);
		if (!c || (m && end < len))
			continue; /* existing ancestors stay as they are */
		if (xs_set(store, buf, c->value, c->vlen, false, priv, &created) < 0)
			return;
		m = xs_lookup(store, buf);
		if (m && (m->nperms != c->nperms ||
			  memcmp(m->perms, c->perms, c->nperms * sizeof(*c->perms)) != 0))
			xs_set_perms(store, m, c->perms, c->nperms, priv);
	}
}

static void txn_unlink(struct xs_conn *c, struct xs_txn *t)
{
	for (struct xs_txn **p = &c->txns; *p; p = &(*p)->next) {
		if (*p == t) {
			*p = t->next;
			c->ntxns--;
			return;
		}
	}
}

/* Remember a change made inside a transaction, fired at commit. */
static void txn_record(struct xs_txn *t, const char *path, bool removed)
{
	if (t->overflow)
		return;
	if (t->nchanges == t->ccap) {
		uint32_t cap = t->ccap ? t->ccap * 2 : 8;
		struct xs_change *n = cap <= XS_TXN_MAX_LOG ? realloc(t->changes, cap * sizeof(*n)) : NULL;
		if (!n) {
			t->overflow = true;
			return;
		}
		t->changes = n;
		t->ccap = cap;
	}
	char *p = strdup(path);
	if (!p) {
		t->overflow = true;
		return;
	}
	t->changes[t->nchanges].path = p;
	t->changes[t->nchanges].removed = removed;
	t->nchanges++;
}

/* A change either goes to the transaction's log or fires at once. */
static void changed(struct xs_conn *c, struct xs_txn *t, const char *path,
		    const struct xs_node *node, bool removed)
{
	if (t)
		txn_record(t, path, removed);
	else
		fire(c->srv, path, node, removed);
}

/* ------------------------------------------------------------ operations */

struct op_ctx {
	struct xs_conn *c;
	const struct req *r;
	struct xs_tree *tree;
	struct xs_txn *txn;
	char path[XENSTORE_ABS_PATH_MAX + 64];
};

/* Canonical path from the single argument; replies EINVAL itself. */
static bool path_arg(struct op_ctx *o, const char *arg)
{
	if (!arg || !canonical(o->c, arg, o->path, sizeof(o->path))) {
		reply_err(o->c, o->r, EINVAL);
		return false;
	}
	return true;
}

/* Look up o->path needing access `need`; replies the error itself. */
static struct xs_node *get_node(struct op_ctx *o, unsigned need)
{
	struct xs_node *n = xs_lookup(o->tree, o->path);
	if (!n) {
		reply_err(o->c, o->r, ENOENT);
		return NULL;
	}
	if ((xs_access(n, who_of(o->c)) & need) != need) {
		reply_err(o->c, o->r, EACCES);
		return NULL;
	}
	return n;
}

static void do_read(struct op_ctx *o)
{
	if (!path_arg(o, onearg(o->r)))
		return;
	txn_note(o->txn, o->path);
	struct xs_node *n = get_node(o, XS_P_READ);
	if (n)
		reply(o->c, o->r, n->value, n->vlen);
}

static void do_write(struct op_ctx *o, bool mkdir)
{
	const char *path;
	const char *value = NULL;
	uint32_t vlen = 0;
	if (mkdir) {
		path = onearg(o->r);
	} else {
		const char *argv[1];
		path = args(o->r, argv, 1) == 1 ? argv[0] : NULL;
		if (path) {
			value = path + strlen(path) + 1;
			vlen = o->r->h.len - (uint32_t)(strlen(path) + 1);
		}
	}
	if (!path_arg(o, path))
		return;
	txn_note_chain(o->txn, o->path);
	bool created;
	int err = xs_set(o->tree, o->path, value, vlen, mkdir, who_of(o->c), &created);
	if (err) {
		reply_err(o->c, o->r, -err);
		return;
	}
	if (!mkdir || created)
		changed(o->c, o->txn, o->path, xs_lookup(o->tree, o->path), false);
	reply_ok(o->c, o->r);
}

static void do_rm(struct op_ctx *o)
{
	if (!path_arg(o, onearg(o->r)))
		return;
	txn_note_chain(o->txn, o->path);
	if (o->txn && xs_lookup(o->tree, o->path)) {
		/* The parent's list of children changes too. */
		char parent[sizeof(o->path)];
		snprintf(parent, sizeof(parent), "%s", o->path);
		char *slash = strrchr(parent, '/');
		slash[slash == parent ? 1 : 0] = '\0';
		txn_note(o->txn, parent);
	}
	struct xs_node *n = xs_lookup(o->tree, o->path);
	if (!n) {
		/* Removing what is not there is fine if the parent exists. */
		char *slash = strrchr(o->path, '/');
		if (slash == o->path)
			slash[1] = '\0';
		else
			*slash = '\0';
		if (xs_lookup(o->tree, o->path))
			reply_ok(o->c, o->r);
		else
			reply_err(o->c, o->r, ENOENT);
		return;
	}
	if (!n->parent) {
		reply_err(o->c, o->r, EINVAL);
		return;
	}
	if (!(xs_access(n, who_of(o->c)) & XS_P_WRITE)) {
		reply_err(o->c, o->r, EACCES);
		return;
	}
	/* Fire before freeing: watchers' access is judged on the node as it was. */
	changed(o->c, o->txn, o->path, n, true);
	int err = xs_remove(o->tree, o->path, who_of(o->c));
	if (err)
		reply_err(o->c, o->r, -err);
	else
		reply_ok(o->c, o->r);
}

static size_t children_len(const struct xs_node *n)
{
	size_t len = 0;
	for (uint32_t i = 0; i < n->nkids; i++)
		len += strlen(n->kids[i]->name) + 1;
	return len;
}

static void do_directory(struct op_ctx *o)
{
	if (!path_arg(o, onearg(o->r)))
		return;
	txn_note(o->txn, o->path);
	struct xs_node *n = get_node(o, XS_P_READ);
	if (!n)
		return;
	size_t len = children_len(n);
	if (len > XENSTORE_PAYLOAD_MAX) {
		reply_err(o->c, o->r, E2BIG);
		return;
	}
	char buf[XENSTORE_PAYLOAD_MAX];
	size_t pos = 0;
	for (uint32_t i = 0; i < n->nkids; i++) {
		size_t l = strlen(n->kids[i]->name) + 1;
		memcpy(buf + pos, n->kids[i]->name, l);
		pos += l;
	}
	reply(o->c, o->r, buf, pos);
}

/* DIRECTORY_PART path offset: "<generation>\0" then whole child names from
 * byte offset `offset` of the full list; the last part ends with an extra
 * NUL (that is how libxenstore's xs_directory_part knows it is done). */
static void do_directory_part(struct op_ctx *o)
{
	const char *argv[2];
	if (args(o->r, argv, 2) != 2) {
		reply_err(o->c, o->r, EINVAL);
		return;
	}
	unsigned long off;
	if (!path_arg(o, argv[0]))
		return;
	if (!parse_uint(argv[1], UINT32_MAX, &off)) {
		reply_err(o->c, o->r, EINVAL);
		return;
	}
	txn_note(o->txn, o->path);
	struct xs_node *n = get_node(o, XS_P_READ);
	if (!n)
		return;
	char buf[XENSTORE_PAYLOAD_MAX];
	int gl = snprintf(buf, sizeof(buf), "%" PRIu64, n->gen) + 1;
	size_t pos = (size_t)gl, at = 0;
	uint32_t i = 0;
	/* Skip to the offset, which must fall on a name boundary. */
	while (i < n->nkids && at < off)
		at += strlen(n->kids[i++]->name) + 1;
	if (at != off) {
		reply_err(o->c, o->r, EINVAL);
		return;
	}
	for (; i < n->nkids; i++) {
		size_t l = strlen(n->kids[i]->name) + 1;
		if (pos + l + 1 > sizeof(buf))
			break;
		memcpy(buf + pos, n->kids[i]->name, l);
		pos += l;
	}
	if (i == n->nkids)
		buf[pos++] = '\0';
	reply(o->c, o->r, buf, pos);
}

static void do_get_perms(struct op_ctx *o)
{
	if (!path_arg(o, onearg(o->r)))
		return;
	txn_note(o->txn, o->path);
	struct xs_node *n = get_node(o, XS_P_READ);
	if (!n)
		return;
	static const char letter[] = { 'n', 'r', 'w', 'b' };
	char buf[XS_MAX_PERMS * 8];
	size_t pos = 0;
	for (uint32_t i = 0; i < n->nperms; i++)
		pos += (size_t)snprintf(buf + pos, sizeof(buf) - pos, "%c%u", letter[n->perms[i].perm & 3],
					n->perms[i].id) + 1;
	reply(o->c, o->r, buf, pos);
}

static bool parse_perm(const char *s, struct xs_perm *p)
{
	unsigned long id;
	switch (s[0]) {
	case 'n': p->perm = 0; break;
	case 'r': p->perm = XS_P_READ; break;
	case 'w': p->perm = XS_P_WRITE; break;
	case 'b': p->perm = XS_P_READ | XS_P_WRITE; break;
	default: return false;
	}
	if (!parse_uint(s + 1, XS_DOMID_MAX, &id))
		return false;
	p->id = (uint16_t)id;
	return true;
}

static void do_set_perms(struct op_ctx *o)
{
	const char *argv[XS_MAX_PERMS + 2];
	unsigned n = args(o->r, argv, XS_MAX_PERMS + 2);
	struct xs_perm perms[XS_MAX_PERMS];
	if (n < 2) {
		reply_err(o->c, o->r, EINVAL);
		return;
	}
	if (n > XS_MAX_PERMS + 1) {
		reply_err(o->c, o->r, E2BIG);
		return;
	}
	for (unsigned i = 1; i < n; i++) {
		if (!parse_perm(argv[i], &perms[i - 1])) {
			reply_err(o->c, o->r, EINVAL);
			return;
		}
	}
	if (!path_arg(o, argv[0]))
		return;
	txn_note(o->txn, o->path);
	struct xs_node *node = xs_lookup(o->tree, o->path);
	if (!node) {
		reply_err(o->c, o->r, ENOENT);
		return;
	}
	int err = xs_set_perms(o->tree, node, perms, n - 1, who_of(o->c));
	if (err) {
		reply_err(o->c, o->r, -err);
		return;
	}
	changed(o->c, o->txn, o->path, node, false);
	reply_ok(o->c, o->r);
}

/* The watch path as stored: "@name" as is, else canonical. */
static bool watch_path(struct op_ctx *o, const char *arg, bool *relative)
{
	*relative = arg[0] != '/' && arg[0] != '@';
	if (arg[0] == '@') {
		size_t l = strlen(arg);
		if (l > XENSTORE_REL_PATH_MAX)
			return false;
		for (size_t i = 1; i < l; i++)
			if (arg[i] == '/')
				return false;
		snprintf(o->path, sizeof(o->path), "%s", arg);
		return l > 1;
	}
	return canonical(o->c, arg, o->path, sizeof(o->path));
}

/* Watches of guest domid over all its connections. */
static unsigned guest_watches(const struct xs_server *s, uint16_t domid)
{
	unsigned n = 0;
	for (const struct xs_conn *k = s->conns; k; k = k->next)
		if (!k->priv && k->domid == domid)
			n += k->nwatches;
	return n;
}

static void do_watch(struct op_ctx *o)
{
	const char *argv[2];
	bool relative;
	if (args(o->r, argv, 2) != 2 || !watch_path(o, argv[0], &relative)) {
		reply_err(o->c, o->r, EINVAL);
		return;
	}
	struct xs_conn *c = o->c;
	for (struct xs_watch *w = c->watches; w; w = w->next) {
		if (strcmp(w->path, o->path) == 0 && strcmp(w->token, argv[1]) == 0) {
			reply_err(c, o->r, EEXIST);
			return;
		}
	}
	if (!c->priv && guest_watches(c->srv, c->domid) >= XS_MAX_WATCHES) {
		reply_err(c, o->r, E2BIG);
		return;
	}
	struct xs_watch *w = calloc(1, sizeof(*w));
	if (w) {
		w->path = strdup(o->path);
		w->token = strdup(argv[1]);
	}
	if (!w || !w->path || !w->token) {
		if (w)
			free_watch(w);
		reply_err(c, o->r, ENOMEM);
		return;
	}
	w->relative = relative;
	w->next = c->watches;
	c->watches = w;
	c->nwatches++;
	reply_ok(c, o->r);
	/* As xenstored does, every new watch fires once at once. */
	queue_event(c, argv[0], argv[1]);
}

static void do_unwatch(struct op_ctx *o)
{
	const char *argv[2];
	bool relative;
	if (args(o->r, argv, 2) != 2 || !watch_path(o, argv[0], &relative)) {
		reply_err(o->c, o->r, EINVAL);
		return;
	}
	for (struct xs_watch **p = &o->c->watches; *p; p = &(*p)->next) {
		struct xs_watch *w = *p;
		if (strcmp(w->path, o->path) == 0 && strcmp(w->token, argv[1]) == 0) {
			*p = w->next;
			free_watch(w);
			o->c->nwatches--;
			reply_ok(o->c, o->r);
			return;
		}
	}
	reply_err(o->c, o->r, ENOENT);
}

static void do_reset_watches(struct op_ctx *o)
{
	struct xs_conn *c = o->c;
	while (c->watches) {
		struct xs_watch *w = c->watches;
		c->watches = w->next;
		free_watch(w);
	}
	c->nwatches = 0;
	drop_events(c);
	while (c->txns) {
		struct xs_txn *t = c->txns;
		c->txns = t->next;
		txn_free(t);
	}
	c->ntxns = 0;
	reply_ok(c, o->r);
}

#define XS_ALL_GUESTS 0xffffu

/* Open transactions of guest domid, or of all guests. */
static unsigned guest_txns(const struct xs_server *s, uint16_t domid)
{
	unsigned n = 0;
	for (const struct xs_conn *k = s->conns; k; k = k->next)
		if (!k->priv && (domid == XS_ALL_GUESTS || k->domid == domid))
			n += k->ntxns;
	return n;
}

static void do_txn_start(struct op_ctx *o)
{
	struct xs_conn *c = o->c;
	struct xs_server *s = c->srv;
	if (o->r->h.tx_id) {
		reply_err(c, o->r, EBUSY);
		return;
	}
	/* Each transaction holds a copy of the store: bound what guests can
	 * make us hold, per domain (whatever its number of connections) and
	 * for all guests together. */
	if (!c->priv && (guest_txns(s, c->domid) >= XS_MAX_TXNS ||
			 guest_txns(s, XS_ALL_GUESTS) >= XS_MAX_GUEST_TXNS)) {
		reply_err(c, o->r, ENOSPC);
		return;
	}
	struct xs_txn *t = calloc(1, sizeof(*t));
	if (t)
		t->tree = xs_tree_clone(s->tree);
	if (!t || !t->tree) {
		free(t);
		reply_err(c, o->r, ENOMEM);
		return;
	}
	do {
		t->id = ++s->next_txn;
	} while (t->id == 0);
	t->base_gen = s->tree->gen;
	t->next = c->txns;
	c->txns = t;
	c->ntxns++;
	char buf[16];
	snprintf(buf, sizeof(buf), "%u", t->id);
	/* The reply carries the new id in its payload; the header keeps 0. */
	reply_str(c, o->r, buf);
}

/* Commit a transaction whose logs overflowed: only if nothing at all
 * changed since it began, by adopting its copy of the store.  False on
 * conflict. */
static bool commit_whole(struct xs_server *s, struct xs_txn *t)
{
	if (s->tree->gen != t->base_gen)
		return false;
	struct xs_tree *old = s->tree;
	s->tree = t->tree;
	/* Generations must keep growing in the adopted tree, so that a node
	 * never gets back a generation a transaction has noted. */
	s->tree->gen = (old->gen > t->tree->gen ? old->gen : t->tree->gen) + 1;
	t->tree = old; /* freed with the transaction */
	fire(s, "/", NULL, true);
	for (uint32_t i = 0; i < t->nchanges; i++) {
		const char *p = t->changes[i].path;
		struct xs_node *n = xs_lookup(s->tree, p);
		fire(s, p, n ? n : xs_lookup(old, p), t->changes[i].removed);
	}
	return true;
}

/* Replay the transaction's changes on the store, in order, firing the
 * watches as the changes land. */
static void commit_changes(struct xs_server *s, struct xs_txn *t)
{
	struct xs_who priv = { .priv = true };
	for (uint32_t i = 0; i < t->nchanges; i++) {
		const char *p = t->changes[i].path;
		if (t->changes[i].removed) {
			struct xs_node *n = xs_lookup(s->tree, p);
			if (n && n->parent) {
				fire(s, p, n, true);
				xs_remove(s->tree, p, priv);
			}
		} else if (xs_lookup(t->tree, p)) {
			copy_node(s->tree, t->tree, p);
			fire(s, p, xs_lookup(s->tree, p), false);
		}
	}
}

static void do_txn_end(struct op_ctx *o)
{
	struct xs_conn *c = o->c;
	struct xs_server *s = c->srv;
	const char *arg = onearg(o->r);
	struct xs_txn *t = o->txn;
	if (!arg || (strcmp(arg, "T") != 0 && strcmp(arg, "F") != 0)) {
		reply_err(c, o->r, EINVAL);
		return;
	}
	if (!t) {
		reply_err(c, o->r, ENOENT);
		return;
	}
	txn_unlink(c, t);
	if (arg[0] == 'F' || (t->nchanges == 0 && !t->overflow)) {
		txn_free(t);
		reply_ok(c, o->r);
		return;
	}
	bool done;
	if (t->overflow) {
		done = commit_whole(s, t);
	} else {
		done = txn_still_valid(t, s->tree);
		if (done)
			commit_changes(s, t);
	}
	txn_free(t);
	if (done)
		reply_ok(c, o->r);
	else
		reply_err(c, o->r, EAGAIN);
}

static bool domid_arg(const char *s, uint16_t *domid)
{
	unsigned long v;
	if (!s || !parse_uint(s, XS_DOMID_MAX, &v))
		return false;
	*domid = (uint16_t)v;
	return true;
}

static void do_get_domain_path(struct op_ctx *o)
{
	uint16_t d;
	if (!domid_arg(onearg(o->r), &d)) {
		reply_err(o->c, o->r, EINVAL);
		return;
	}
	char buf[32];
	snprintf(buf, sizeof(buf), "/local/domain/%u", d);
	reply_str(o->c, o->r, buf);
}

static int dom_index(const struct xs_server *s, uint16_t domid)
{
	for (unsigned i = 0; i < s->ndoms; i++)
		if (s->doms[i] == domid)
			return (int)i;
	return -1;
}

bool xs_domain_is_introduced(const struct xs_server *s, uint16_t domid)
{
	return domid == 0 || dom_index(s, domid) >= 0;
}

/* Mark domid introduced; fire @introduceDomain and call the hook. */
static int introduce(struct xs_server *s, uint16_t domid)
{
	if (domid == 0 || dom_index(s, domid) >= 0)
		return 0;
	if (s->ndoms == s->dcap) {
		unsigned cap = s->dcap ? s->dcap * 2 : 8;
		uint16_t *d = realloc(s->doms, cap * sizeof(*d));
		if (!d)
			return -ENOMEM;
		s->doms = d;
		s->dcap = cap;
	}
	s->doms[s->ndoms++] = domid;
	if (s->hook)
		s->hook(s->hook_arg, domid, true);
	fire_special(s, "@introduceDomain");
	return 0;
}

/* Forget domid: its connections die; fire @releaseDomain. */
static int release(struct xs_server *s, uint16_t domid, bool remove_nodes)
{
	int i = dom_index(s, domid);
	if (i < 0)
		return -ENOENT;
	s->doms[i] = s->doms[--s->ndoms];
	s->activity++;
	for (struct xs_conn *c = s->conns; c; c = c->next)
		if (!c->priv && c->domid == domid)
			c->dead = true;
	if (s->hook)
		s->hook(s->hook_arg, domid, false);
	if (remove_nodes) {
		char path[32];
		snprintf(path, sizeof(path), "/local/domain/%u", domid);
		struct xs_node *n = xs_lookup(s->tree, path);
		if (n) {
			fire(s, path, n, true);
			xs_remove(s->tree, path, (struct xs_who){ .priv = true });
		}
	}
	fire_special(s, "@releaseDomain");
	return 0;
}

static void do_introduce(struct op_ctx *o)
{
	const char *argv[3];
	uint16_t d;
	if (!o->c->priv) {
		reply_err(o->c, o->r, EACCES);
		return;
	}
	if (args(o->r, argv, 3) != 3 || !domid_arg(argv[0], &d) || d == 0) {
		reply_err(o->c, o->r, EINVAL);
		return;
	}
	int err = introduce(o->c->srv, d);
	if (err)
		reply_err(o->c, o->r, -err);
	else
		reply_ok(o->c, o->r);
}

static void do_release(struct op_ctx *o)
{
	uint16_t d;
	if (!o->c->priv) {
		reply_err(o->c, o->r, EACCES);
		return;
	}
	if (!domid_arg(onearg(o->r), &d) || d == 0) {
		reply_err(o->c, o->r, EINVAL);
		return;
	}
	int err = release(o->c->srv, d, false);
	if (err)
		reply_err(o->c, o->r, -err);
	else
		reply_ok(o->c, o->r);
}

static void do_is_introduced(struct op_ctx *o)
{
	uint16_t d;
	if (!domid_arg(onearg(o->r), &d)) {
		reply_err(o->c, o->r, EINVAL);
		return;
	}
	reply_str(o->c, o->r, xs_domain_is_introduced(o->c->srv, d) ? "T" : "F");
}

static void do_control(struct op_ctx *o)
{
	const char *argv[2];
	unsigned n = args(o->r, argv, 2);
	if (!o->c->priv) {
		reply_err(o->c, o->r, EACCES);
		return;
	}
	if (n >= 1 && strcmp(argv[0], "help") == 0) {
		reply_str(o->c, o->r, "help\nprint <string>\n");
	} else if (n == 2 && strcmp(argv[0], "print") == 0) {
		log_info("xenstored: %s", argv[1]);
		reply_ok(o->c, o->r);
	} else {
		reply_err(o->c, o->r, EINVAL);
	}
}

static void handle(struct xs_conn *c, const struct req *r)
{
	struct op_ctx o = { .c = c, .r = r, .tree = c->srv->tree };
	c->srv->activity++;
	if (r->h.tx_id && r->h.type != XS_TRANSACTION_START) {
		o.txn = find_txn(c, r->h.tx_id);
		if (!o.txn) {
			reply_err(c, r, ENOENT);
			return;
		}
		o.tree = o.txn->tree;
	}
	switch (r->h.type) {
	case XS_READ: do_read(&o); break;
	case XS_WRITE: do_write(&o, false); break;
	case XS_MKDIR: do_write(&o, true); break;
	case XS_RM: do_rm(&o); break;
	case XS_DIRECTORY: do_directory(&o); break;
	case XS_DIRECTORY_PART: do_directory_part(&o); break;
	case XS_GET_PERMS: do_get_perms(&o); break;
	case XS_SET_PERMS: do_set_perms(&o); break;
	case XS_WATCH: do_watch(&o); break;
	case XS_UNWATCH: do_unwatch(&o); break;
	case XS_RESET_WATCHES: do_reset_watches(&o); break;
	case XS_TRANSACTION_START: do_txn_start(&o); break;
	case XS_TRANSACTION_END: do_txn_end(&o); break;
	case XS_GET_DOMAIN_PATH: do_get_domain_path(&o); break;
	case XS_INTRODUCE: do_introduce(&o); break;
	case XS_RELEASE: do_release(&o); break;
	case XS_IS_DOMAIN_INTRODUCED: do_is_introduced(&o); break;
	case XS_CONTROL: do_control(&o); break;
	case XS_RESUME:
	case XS_SET_TARGET:
		if (c->priv)
			reply_ok(c, r);
		else
			reply_err(c, r, EACCES);
		break;
	default:
		reply_err(c, r, EINVAL);
		break;
	}
}

/* ------------------------------------------------------------ input */

void xs_pump(struct xs_conn *c)
{
	size_t pos = 0;
	while (!c->dead && c->out_len - c->out_start < XS_OUT_LIMIT) {
		struct req r;
		if (c->in_len - pos < sizeof(r.h))
			break;
		memcpy(&r.h, c->in + pos, sizeof(r.h));
		if (r.h.len > XENSTORE_PAYLOAD_MAX) {
			log_limited(&xs_rl, VLOG_WARN,
				    "xenstored: dom%u sent an oversized message (%u bytes); "
				    "closing its connection", c->domid, r.h.len);
			c->dead = true;
			break;
		}
		if (c->in_len - pos < sizeof(r.h) + r.h.len)
			break;
		char body[XENSTORE_PAYLOAD_MAX + 1];
		memcpy(body, c->in + pos + sizeof(r.h), r.h.len);
		body[r.h.len] = '\0';
		r.body = body;
		pos += sizeof(r.h) + r.h.len;
		handle(c, &r);
	}
	if (pos) {
		memmove(c->in, c->in + pos, c->in_len - pos);
		c->in_len -= pos;
	}
}

void xs_process(struct xs_conn *c, const void *bytes, size_t len)
{
	if (c->dead || len == 0)
		return;
	if (c->in_len + len > c->in_cap) {
		size_t cap = c->in_cap ? c->in_cap : 4096;
		while (cap < c->in_len + len)
			cap *= 2;
		uint8_t *n = realloc(c->in, cap);
		if (!n) {
			c->dead = true;
			return;
		}
		c->in = n;
		c->in_cap = cap;
	}
	memcpy(c->in + c->in_len, bytes, len);
	c->in_len += len;
	xs_pump(c);
}

bool xs_conn_dead(const struct xs_conn *c)
{
	return c->dead;
}

bool xs_conn_can_read(const struct xs_conn *c)
{
	return !c->dead && c->out_len - c->out_start < XS_OUT_LIMIT && c->in_len < XS_IN_LIMIT;
}

uint64_t xs_server_activity(const struct xs_server *s)
{
	return s->activity;
}

uint16_t xs_conn_domid(const struct xs_conn *c)
{
	return c->domid;
}

/* ------------------------------------------------------------ lifecycle */

struct xs_conn *xs_conn_new(struct xs_server *s, uint16_t domid)
{
	struct xs_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->srv = s;
	c->domid = domid;
	c->priv = domid == 0;
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	return c;
}

void xs_conn_free(struct xs_conn *c)
{
	if (!c)
		return;
	struct xs_server *s = c->srv;
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	while (c->watches) {
		struct xs_watch *w = c->watches;
		c->watches = w->next;
		free_watch(w);
	}
	while (c->txns) {
		struct xs_txn *t = c->txns;
		c->txns = t->next;
		txn_free(t);
	}
	drop_events(c);
	free(c->in);
	free(c->out);
	free(c);
}

int xs_server_write(struct xs_server *s, const char *path, const char *value)
{
	bool created;
	int err = xs_set(s->tree, path, value, (uint32_t)strlen(value), false,
			 (struct xs_who){ .priv = true }, &created);
	if (!err)
		fire(s, path, xs_lookup(s->tree, path), false);
	return err;
}

struct xs_server *xs_server_new(xs_domain_hook *hook, void *hook_arg)
{
	struct xs_server *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->hook = hook;
	s->hook_arg = hook_arg;
	s->tree = xs_tree_new();
	if (!s->tree || xs_server_write(s, "/local/domain/0/name", "Domain-0") ||
	    xs_server_write(s, "/local/domain/0/domid", "0")) {
		xs_server_free(s);
		return NULL;
	}
	return s;
}

void xs_server_free(struct xs_server *s)
{
	if (!s)
		return;
	while (s->conns)
		xs_conn_free(s->conns);
	xs_tree_free(s->tree);
	free(s->doms);
	free(s);
}

int xs_domain_introduce(struct xs_server *s, uint16_t domid, const char *name)
{
	char path[64], val[16];
	struct xs_perm ro[2] = { { .id = 0, .perm = 0 }, { .id = domid, .perm = XS_P_READ } };
	struct xs_perm rw[1] = { { .id = domid, .perm = 0 } };
	struct xs_who priv = { .priv = true };
	bool created;
	int err;

	if (domid == 0 || domid > XS_DOMID_MAX)
		return -EINVAL;
	/* As libxl lays it out: the domain may read its directory, owns data/. */
	snprintf(path, sizeof(path), "/local/domain/%u", domid);
	err = xs_set(s->tree, path, NULL, 0, true, priv, &created);
	if (!err)
		err = xs_set_perms(s->tree, xs_lookup(s->tree, path), ro, 2, priv);
	snprintf(path, sizeof(path), "/local/domain/%u/name", domid);
	if (!err)
		err = xs_server_write(s, path, name);
	snprintf(path, sizeof(path), "/local/domain/%u/domid", domid);
	snprintf(val, sizeof(val), "%u", domid);
	if (!err)
		err = xs_server_write(s, path, val);
	snprintf(path, sizeof(path), "/local/domain/%u/device", domid);
	if (!err)
		err = xs_set(s->tree, path, NULL, 0, true, priv, &created);
	snprintf(path, sizeof(path), "/local/domain/%u/data", domid);
	if (!err)
		err = xs_set(s->tree, path, NULL, 0, true, priv, &created);
	if (!err)
		err = xs_set_perms(s->tree, xs_lookup(s->tree, path), rw, 1, priv);
	snprintf(path, sizeof(path), "/local/domain/%u", domid);
	if (!err)
		fire(s, path, xs_lookup(s->tree, path), false);
	if (!err)
		err = introduce(s, domid);
	return err;
}

void xs_domain_release(struct xs_server *s, uint16_t domid)
{
	if (release(s, domid, true) == -ENOENT) {
		/* Not introduced (e.g. already released): still drop its nodes. */
		char path[32];
		snprintf(path, sizeof(path), "/local/domain/%u", domid);
		struct xs_node *n = xs_lookup(s->tree, path);
		if (n) {
			fire(s, path, n, true);
			xs_remove(s->tree, path, (struct xs_who){ .priv = true });
		}
	}
}
