/*
 * vbd.h - the devices a vbdfs process serves, as the FUSE tree sees them.
 *
 * The request engine (blkback.c, xenbus.c) creates a struct vbd for each
 * backend device it takes on and registers it here; fusefs/ lists them and
 * reads their image, stats and trace.  A struct vbd is reference counted:
 * it (and its open image) stays valid while anyone holds a reference, even
 * after the guest detached.
 */
#ifndef VBDFS_VBD_H
#define VBDFS_VBD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct img;
struct dev_stats;
struct trace;
struct vbd;

/* Called on every device added (added=true) or removed.  The callee may
 * take a reference with vbd_get(). */
typedef void (*vbd_event_fn)(void *arg, struct vbd *v, bool added);
void vbd_registry_listen(vbd_event_fn fn, void *arg);

/* Referenced snapshot of the registry; returns the count (<= max). */
size_t vbd_list(struct vbd **out, size_t max);
/* Find by name "<domid>-<devid>"; referenced, or NULL. */
struct vbd *vbd_find(const char *name);
void vbd_get(struct vbd *v);
void vbd_put(struct vbd *v);

const char *vbd_name(const struct vbd *v);        /* "5-51712" */
uint16_t vbd_domid(const struct vbd *v);
uint32_t vbd_devid(const struct vbd *v);
const char *vbd_vdev(const struct vbd *v);        /* "xvda", or NULL */
const char *vbd_domain_name(const struct vbd *v); /* "web1", or NULL */
struct img *vbd_image(struct vbd *v);             /* the image the engine serves */
bool vbd_readonly(const struct vbd *v);
struct dev_stats *vbd_stats(struct vbd *v);
struct trace *vbd_trace(struct vbd *v);
/* Device facts (state, ABI, negotiated features, image chain) as
 * "key: value" lines, or as one JSON object.  Returns the length. */
size_t vbd_format_info(struct vbd *v, char *buf, size_t len, bool json);


/* ---- Engine side: creating and publishing devices ---- */

/* A new device around an open image (the vbd takes ownership of img and
 * closes it when the last reference goes).  Starts with one reference. */
struct vbd *vbd_create(uint16_t domid, uint32_t devid, struct img *img, bool readonly);
void vbd_set_vdev(struct vbd *v, const char *vdev);
void vbd_set_domain_name(struct vbd *v, const char *name);
/* Who formats the info file (xenbus.c: state, features...). */
typedef size_t (*vbd_info_fn)(void *arg, char *buf, size_t len, bool json);
void vbd_set_info_fn(struct vbd *v, vbd_info_fn fn, void *arg);
/* Make the device visible to vbd_list()/vbd_find() and listeners, or
 * remove it (the caller's reference stays valid). */
void vbd_register(struct vbd *v);
void vbd_unregister(struct vbd *v);

/*
 * A device that left the registry while someone (a reader of its /vbd
 * files, a loop mount) still holds it keeps its image open, and with it
 * the image's lock.  When the same image is attached again (a guest
 * rebooted: a new domain, the same disk), the new device shares that open
 * image instead of failing on the lock: returns a new reference to it
 * (img_close() drops it), or NULL if no retired device holds path open in
 * a way that can serve this attach (a writer needs an image opened
 * writable; fmt, if given, must match).  Only detached devices are
 * considered, and only an image no attached device serves: two attached
 * devices never share an image this way.
 */
struct img *vbd_adopt_image(const char *path, const char *fmt, bool readonly);

#endif
