/*
 * zcodec.h - inflating the compressed clusters of qcow and qcow2 images.
 *
 * Both formats store a compressed cluster as a raw deflate stream (no zlib
 * header) written with a 4 KiB window.  The reader must produce exactly one
 * cluster; bytes after the end of the stream are ignored (in qcow2 they may
 * be the next cluster's data), and, as QEMU accepts, a stream that would
 * run on past a full cluster still counts as one cluster.
 *
 * zlib decides exactly as QEMU does.  Thread-safe: each thread keeps its
 * own inflate state.  (zlib is the project's one compression library.)
 */
#ifndef VBDFS_ZCODEC_H
#define VBDFS_ZCODEC_H

#include <stddef.h>

/* Inflate in[0..in_len) into exactly out_len bytes at out.  0, -EIO if the
 * data is not one cluster's worth of valid deflate, -ENOMEM. */
int zcodec_inflate_cluster(const void *in, size_t in_len, void *out, size_t out_len);

#endif
