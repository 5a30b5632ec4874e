/*
 * vdev.h - virtual disk names ("xvda", "sdb", "hdc") and Xen device ids.
 *
 * A Xen VBD is identified in xenstore by its device id (devid), the number
 * in backend/<type>/<domid>/<devid> and the frontend's virtual-device key.
 * The encoding is that of libxl and Linux xen-blkfront:
 *   xvdX, index < 16      202 << 8 | index << 4        (xvda = 51712)
 *   xvdX, index >= 16     1 << 28 | index << 8          ("extended")
 *   sdX,  index < 16      8 << 8 | index << 4
 *   hda/hdb, hdc/hdd      3 << 8 | n << 6, 22 << 8 | n << 6
 * Letters count like spreadsheet columns: a..z, then aa, ab...
 * Only whole disks are handled; a partition suffix ("xvda1") is refused.
 */
#ifndef VBDFS_VDEV_H
#define VBDFS_VDEV_H

#include <stddef.h>
#include <stdint.h>

#define VDEV_EXTENDED (1u << 28)
#define VDEV_MAX_INDEX ((1u << 20) - 1)

/* Parse a disk name or a decimal device id into a devid.  Returns 0 or
 * -EINVAL (unknown prefix, bad letters, partition, index out of range). */
int vdev_parse(const char *name, uint32_t *devid);

/* The disk name of a devid ("xvda"); partitions get their number appended
 * ("xvda1").  Returns 0, or -EINVAL for a devid with no disk name (buf then
 * holds the decimal devid), or -ENOSPC if len is too small. */
int vdev_name(uint32_t devid, char *buf, size_t len);

#endif
