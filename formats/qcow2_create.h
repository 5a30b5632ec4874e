/*
 * qcow2_create.h - make new qcow2 images (QEMU docs/interop/qcow2.txt).
 *
 * qcow2_create() writes an empty image: header (+ backing format extension
 * and backing file name) in cluster 0, then the refcount table, the refcount
 * blocks and a zeroed L1 table, in the order qemu-img uses.  The result
 * passes `qemu-img check` and reads as zeros (or as its backing file).
 *
 * qcow2_header_build() is shared with the streaming writer
 * (qcow2_writer.h), which lays out its own metadata.
 */
#ifndef VBDFS_QCOW2_CREATE_H
#define VBDFS_QCOW2_CREATE_H

#include <stddef.h>
#include <stdint.h>

struct qcow2_create_opts {
	uint64_t size;              /* virtual size in bytes */
	unsigned cluster_bits;      /* 9..21; 16 (64 KiB) by default */
	int version;                /* 2 (compat=0.10) or 3 (compat=1.1) */
	unsigned refcount_order;    /* refcount_bits = 1 << order; v2 needs 4 */
	const char *backing_file;   /* NULL: none */
	const char *backing_format; /* NULL: no backing format extension */
};

/* Defaults of qemu-img 7.2: 64 KiB clusters, v3, 16-bit refcounts. */
void qcow2_create_opts_default(struct qcow2_create_opts *o, uint64_t size);

/* Check the options (cluster size, version/refcount combination, size
 * limits, backing name length).  0 or -EINVAL with a message in err. */
int qcow2_create_opts_check(const struct qcow2_create_opts *o, char *err, size_t errlen);

/* Create (or truncate and overwrite) path as an empty qcow2 image, durably.
 * 0 or a negative errno with a one-line message in err. */
int qcow2_create(const char *path, const struct qcow2_create_opts *o, char *err, size_t errlen);

/* Where the metadata of an image lives, for qcow2_header_build(). */
struct qcow2_layout {
	uint64_t l1_offset;
	uint32_t l1_size;               /* entries */
	uint64_t refcount_table_offset;
	uint32_t refcount_table_clusters;
};

/* Number of L1 entries needed for o->size; UINT64_MAX if it overflows. */
uint64_t qcow2_l1_entries(const struct qcow2_create_opts *o);

/* Fill buf (one cluster, zeroed by the callee) with the header, the header
 * extensions and the backing file name.  -EINVAL if they do not fit. */
int qcow2_header_build(uint8_t *buf, const struct qcow2_create_opts *o,
		       const struct qcow2_layout *l);

/* Number of refcount blocks and refcount table clusters needed to cover
 * `clusters` data/metadata clusters plus the refcount structures themselves,
 * which are assumed to be placed after them. */
void qcow2_refcount_space(uint64_t clusters, unsigned cluster_bits, unsigned refcount_order,
			  uint64_t *blocks, uint64_t *table_clusters);

#endif
