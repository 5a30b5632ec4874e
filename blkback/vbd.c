/* vbd.c - the registry of served devices; see vbd.h. */
#include "vbd.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/image.h"
#include "util/stats.h"
#include "util/trace.h"

#define VBD_TRACE_RECORDS 65536 /* per device: ~3 MiB, bounded whatever the guest does */

struct vbd {
	_Atomic unsigned refs;
	bool registered;
	bool retired;              /* unregistered, kept alive by readers */
	uint16_t domid;
	uint32_t devid;
	char name[32];
	char vdev[32];
	char domain_name[128];
	bool readonly;
	struct img *img;
	struct dev_stats stats;
	struct trace *trace;
	pthread_mutex_t info_lock; /* guards info_fn against a concurrent unset */
	vbd_info_fn info_fn;
	void *info_arg;
	struct vbd *next;          /* registry list, or the retired list */
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vbd *reg_head;
static struct vbd *retired_head; /* unregistered devices someone still holds */

#define MAX_LISTENERS 4
static struct {
	vbd_event_fn fn;
	void *arg;
} listeners[MAX_LISTENERS];
static unsigned nr_listeners;

void vbd_registry_listen(vbd_event_fn fn, void *arg)
{
	pthread_mutex_lock(&reg_lock);
	if (nr_listeners < MAX_LISTENERS) {
		listeners[nr_listeners].fn = fn;
		listeners[nr_listeners].arg = arg;
		nr_listeners++;
	}
	pthread_mutex_unlock(&reg_lock);
}

struct vbd *vbd_create(uint16_t domid, uint32_t devid, struct img *img, bool readonly)
{
	struct vbd *v = calloc(1, sizeof(*v));

	if (!v)
		return NULL;
	v->trace = trace_new(VBD_TRACE_RECORDS);
	if (!v->trace) {
		free(v);
		return NULL;
	}
	atomic_init(&v->refs, 1);
	v->domid = domid;
	v->devid = devid;
	v->img = img;
	v->readonly = readonly;
	snprintf(v->name, sizeof(v->name), "%u-%" PRIu32, (unsigned)domid, devid);
	stats_init(&v->stats);
	pthread_mutex_init(&v->info_lock, NULL);
	return v;
}

void vbd_get(struct vbd *v)
{
	atomic_fetch_add(&v->refs, 1);
}

/* Unlink v from a list it is on.  Caller holds reg_lock. */
static bool unlink_from(struct vbd **head, struct vbd *v)
{
	for (struct vbd **p = head; *p; p = &(*p)->next) {
		if (*p == v) {
			*p = v->next;
			return true;
		}
	}
	return false;
}

void vbd_put(struct vbd *v)
{
	if (!v || atomic_fetch_sub(&v->refs, 1) != 1)
		return;
	/* vbd_adopt_image() may be looking at v's image: it does so under
	 * reg_lock, and v stays allocated until it is off the list. */
	pthread_mutex_lock(&reg_lock);
	if (v->retired)
		unlink_from(&retired_head, v);
	pthread_mutex_unlock(&reg_lock);
	trace_shutdown(v->trace);
	trace_free(v->trace);
	stats_destroy(&v->stats);
	pthread_mutex_destroy(&v->info_lock);
	if (v->img)
		img_close(v->img);
	free(v);
}

static void notify(struct vbd *v, bool added)
{
	for (unsigned i = 0; i < nr_listeners; i++)
		listeners[i].fn(listeners[i].arg, v, added);
}

void vbd_register(struct vbd *v)
{
	pthread_mutex_lock(&reg_lock);
	if (!v->registered) {
		v->registered = true;
		vbd_get(v); /* the registry's reference */
		v->next = reg_head;
		reg_head = v;
		notify(v, true);
	}
	pthread_mutex_unlock(&reg_lock);
}

void vbd_unregister(struct vbd *v)
{
	bool found;

	pthread_mutex_lock(&reg_lock);
	found = unlink_from(&reg_head, v);
	if (found) {
		v->registered = false;
		notify(v, false);
		v->retired = true;
		v->next = retired_head;
		retired_head = v;
	}
	pthread_mutex_unlock(&reg_lock);
	if (found) {
		trace_shutdown(v->trace); /* release blocked request-stream readers */
		vbd_put(v);
	}
}

size_t vbd_list(struct vbd **out, size_t max)
{
	size_t n = 0;

	pthread_mutex_lock(&reg_lock);
	for (struct vbd *v = reg_head; v && n < max; v = v->next) {
		vbd_get(v);
		out[n++] = v;
	}
	pthread_mutex_unlock(&reg_lock);
	return n;
}

struct vbd *vbd_find(const char *name)
{
	struct vbd *found = NULL;

	pthread_mutex_lock(&reg_lock);
	for (struct vbd *v = reg_head; v; v = v->next) {
		if (strcmp(v->name, name) == 0) {
			vbd_get(v);
			found = v;
			break;
		}
	}
	pthread_mutex_unlock(&reg_lock);
	return found;
}

/* Whether a device in the registry serves img.  Caller holds reg_lock. */
static bool served(const struct img *img)
{
	for (struct vbd *v = reg_head; v; v = v->next)
		if (v->img == img)
			return true;
	return false;
}

struct img *vbd_adopt_image(const char *path, const char *fmt, bool readonly)
{
	struct img *img = NULL;
	struct stat st;

	if (stat(path, &st) < 0)
		return NULL;
	pthread_mutex_lock(&reg_lock);
	for (struct vbd *v = retired_head; v && !img; v = v->next) {
		if (!v->img || !img_is_file(v->img, &st))
			continue;
		if (!readonly && !(img_caps(v->img) & IMG_CAN_WRITE))
			continue; /* opened read-only: cannot serve a writer */
		if (fmt && strcmp(fmt, img_format(v->img)) != 0)
			continue;
		if (served(v->img))
			continue; /* already adopted by an attached disk: one at a time */
		img = img_ref(v->img);
	}
	pthread_mutex_unlock(&reg_lock);
	return img;
}

void vbd_set_vdev(struct vbd *v, const char *vdev)
{
	snprintf(v->vdev, sizeof(v->vdev), "%s", vdev ? vdev : "");
}

void vbd_set_domain_name(struct vbd *v, const char *name)
{
	snprintf(v->domain_name, sizeof(v->domain_name), "%s", name ? name : "");
}

void vbd_set_info_fn(struct vbd *v, vbd_info_fn fn, void *arg)
{
	pthread_mutex_lock(&v->info_lock);
	v->info_fn = fn;
	v->info_arg = arg;
	pthread_mutex_unlock(&v->info_lock);
}

const char *vbd_name(const struct vbd *v) { return v->name; }
uint16_t vbd_domid(const struct vbd *v) { return v->domid; }
uint32_t vbd_devid(const struct vbd *v) { return v->devid; }
const char *vbd_vdev(const struct vbd *v) { return v->vdev[0] ? v->vdev : NULL; }
const char *vbd_domain_name(const struct vbd *v)
{
	return v->domain_name[0] ? v->domain_name : NULL;
}
struct img *vbd_image(struct vbd *v) { return v->img; }
bool vbd_readonly(const struct vbd *v) { return v->readonly; }
struct dev_stats *vbd_stats(struct vbd *v) { return &v->stats; }
struct trace *vbd_trace(struct vbd *v) { return v->trace; }

size_t vbd_format_info(struct vbd *v, char *buf, size_t len, bool json)
{
	size_t n = 0;
	int r;

	if (len == 0)
		return 0;
	pthread_mutex_lock(&v->info_lock);
	if (v->info_fn) {
		n = v->info_fn(v->info_arg, buf, len, json);
	} else {
		r = json ? snprintf(buf, len, "{\"domid\": %u, \"devid\": %" PRIu32 "}\n",
				    (unsigned)v->domid, v->devid)
			 : snprintf(buf, len, "domid: %u\ndevid: %" PRIu32 "\n",
				    (unsigned)v->domid, v->devid);
		n = r < 0 ? 0 : (size_t)r < len ? (size_t)r : len - 1;
	}
	pthread_mutex_unlock(&v->info_lock);
	return n;
}
