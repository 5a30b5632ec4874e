/*
 * qcow2_writer.h - write a fresh qcow2 image sequentially (vbd-img convert).
 *
 * The caller hands over guest clusters in increasing order, each either as
 * plain data (one full cluster) or as a compressed stream made by
 * qcow2_compress_cluster().  The writer appends them to the file, keeps the
 * current L2 table in memory and appends it when the guest moves past its
 * range, packs compressed clusters byte by byte (a compressed cluster may
 * run into the next host cluster when that one is the next one appended,
 * as QEMU's allocator does), and counts references.  qcow2_writer_finish()
 * writes the L1 table (reserved right after the header), the refcount blocks
 * and table at the end of the file, and last the header: until then cluster
 * 0 is zeros, so an interrupted convert never looks like a valid image.
 *
 * Clusters never passed read as zeros.  Not thread-safe: one writer thread.
 */
#ifndef VBDFS_QCOW2_WRITER_H
#define VBDFS_QCOW2_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "qcow2_create.h"

struct qcow2_writer;

/* Create path (truncating it).  Backing files are not supported here. */
int qcow2_writer_open(const char *path, const struct qcow2_create_opts *o,
		      struct qcow2_writer **out, char *err, size_t errlen);

/*
 * Store guest cluster `index` (indices strictly increasing).  compressed:
 * data/len is a raw deflate stream of exactly one cluster (len < cluster
 * size); otherwise data is one full cluster and len must equal its size.
 */
int qcow2_writer_put(struct qcow2_writer *w, uint64_t index, const void *data, size_t len,
		     bool compressed);

/* Write the remaining metadata and the header, close and free w.  With
 * sync, everything is made durable first and the header last (fdatasync,
 * header, fsync); without it the page cache decides, as with qemu-img
 * convert's default cache=unsafe.  On failure err names the problem; w is
 * freed either way. */
int qcow2_writer_finish(struct qcow2_writer *w, bool sync, char *err, size_t errlen);

/* Give up: close and free w (the file is left as it is: not an image). */
void qcow2_writer_abort(struct qcow2_writer *w);

/* Bytes of the file written so far (for progress and tests). */
uint64_t qcow2_writer_file_size(const struct qcow2_writer *w);

/*
 * Compression in the format of QEMU's qcow2 zlib codec: raw deflate with a
 * 2^12 window (zlib level 4, memLevel 8: faster than QEMU's level 6 for
 * about 1% more output).  One struct per thread (it keeps a z_stream).
 */
struct qcow2_compressor;
struct qcow2_compressor *qcow2_compressor_new(void);
void qcow2_compressor_free(struct qcow2_compressor *c);

/* Compress one cluster of cs bytes into out (capacity cs - 1, QEMU's limit).
 * Returns the compressed length, 0 if it does not fit (store it
 * uncompressed), or a negative errno. */
ssize_t qcow2_compress_cluster(struct qcow2_compressor *c, const void *in, size_t cs,
			       void *out);

#endif
