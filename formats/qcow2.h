/*
 * qcow2.h - the on-disk layout of qcow2 images (QEMU docs/interop/qcow2.txt),
 * shared by the qcow2 driver (qcow2*.c) and the image writers in vbd-img
 * (create, convert -c).
 *
 * Everything on disk is big endian and is read and written only through
 * util/endian.h at the byte offsets below, never by casting to a struct.
 *
 * Layout reminder:
 *   cluster 0     header (72 bytes in v2, header_length >= 104 in v3), then
 *                 header extensions (type u32, length u32, data padded to 8),
 *                 ended by type 0; then the backing file name (not NUL
 *                 terminated) at backing_file_offset, all inside cluster 0.
 *   L1 table      l1_size u64 entries -> L2 tables (one cluster each)
 *   L2 table      cluster_size/8 u64 entries -> data clusters
 *   refcount table refcount_table_clusters clusters of u64 -> refcount blocks
 *   refcount block cluster_size*8/refcount_bits entries, one per host cluster
 *
 * A writer that creates images (vbd-img create / convert -c) must produce:
 * version 3 (or 2 for compat=0.10), cluster-aligned tables, refcount_order 4
 * (16-bit refcounts) unless asked otherwise, every allocated host cluster
 * (header, L1, L2s, refcount table and blocks, data) with refcount 1, and
 * QCOW2_OFLAG_COPIED set in L1/L2 entries whose refcount is exactly 1
 * (never on compressed entries).
 */
#ifndef VBDFS_QCOW2_H
#define VBDFS_QCOW2_H

#include <stdbool.h>
#include <stdint.h>

#define QCOW2_MAGIC         0x514649fbu  /* "QFI\xfb" */

/* ---- header field byte offsets ---- */
#define QCOW2_HDR_MAGIC                 0   /* u32 */
#define QCOW2_HDR_VERSION               4   /* u32: 2 or 3 */
#define QCOW2_HDR_BACKING_FILE_OFFSET   8   /* u64, 0 = none */
#define QCOW2_HDR_BACKING_FILE_SIZE     16  /* u32, <= 1023 */
#define QCOW2_HDR_CLUSTER_BITS          20  /* u32 */
#define QCOW2_HDR_SIZE                  24  /* u64 virtual size in bytes */
#define QCOW2_HDR_CRYPT_METHOD          32  /* u32 */
#define QCOW2_HDR_L1_SIZE               36  /* u32 entries */
#define QCOW2_HDR_L1_TABLE_OFFSET       40  /* u64 */
#define QCOW2_HDR_REFCOUNT_TABLE_OFFSET 48  /* u64 */
#define QCOW2_HDR_REFCOUNT_TABLE_CLUSTERS 56 /* u32 */
#define QCOW2_HDR_NB_SNAPSHOTS          60  /* u32 */
#define QCOW2_HDR_SNAPSHOTS_OFFSET      64  /* u64 */
#define QCOW2_HDR_V2_LENGTH             72  /* the v2 header ends here */
/* version 3 only: */
#define QCOW2_HDR_INCOMPAT_FEATURES     72  /* u64 */
#define QCOW2_HDR_COMPAT_FEATURES       80  /* u64 */
#define QCOW2_HDR_AUTOCLEAR_FEATURES    88  /* u64 */
#define QCOW2_HDR_REFCOUNT_ORDER        96  /* u32, refcount_bits = 1 << order */
#define QCOW2_HDR_HEADER_LENGTH         100 /* u32, >= 104, multiple of 8 */
#define QCOW2_HDR_V3_MIN_LENGTH         104
#define QCOW2_HDR_COMPRESSION_TYPE      104 /* u8, present if header_length > 104 */
#define QCOW2_HDR_V3_LENGTH             112 /* what QEMU and vbd-img write */

/* crypt_method */
#define QCOW2_CRYPT_NONE 0
#define QCOW2_CRYPT_AES  1
#define QCOW2_CRYPT_LUKS 2

/* compression_type */
#define QCOW2_COMPRESSION_ZLIB 0
#define QCOW2_COMPRESSION_ZSTD 1

/* ---- feature bits (v3) ---- */
#define QCOW2_INCOMPAT_DIRTY        (1ull << 0) /* refcounts may be stale */
#define QCOW2_INCOMPAT_CORRUPT      (1ull << 1) /* metadata corrupt: read-only */
#define QCOW2_INCOMPAT_DATA_FILE    (1ull << 2) /* external data file */
#define QCOW2_INCOMPAT_COMPRESSION  (1ull << 3) /* compression_type != 0 */
#define QCOW2_INCOMPAT_EXTL2        (1ull << 4) /* extended L2 entries */
#define QCOW2_INCOMPAT_KNOWN        0x1full
#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ull << 0)
#define QCOW2_AUTOCLEAR_BITMAPS     (1ull << 0)
#define QCOW2_AUTOCLEAR_DATA_FILE_RAW (1ull << 1)

/* ---- header extensions ---- */
#define QCOW2_EXT_END            0x00000000u
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acau
#define QCOW2_EXT_FEATURE_TABLE  0x6803f857u /* 48-byte entries: u8 type, u8 bit, char name[46] */
#define QCOW2_EXT_BITMAPS        0x23852875u
#define QCOW2_EXT_CRYPTO         0x0537be77u
#define QCOW2_EXT_DATA_FILE      0x44415441u
#define QCOW2_EXT_HDR_LEN        8           /* type + length */
#define QCOW2_BACKING_FMT_MAX    15          /* backing format name < 16 bytes */
#define QCOW2_BACKING_NAME_MAX   1023

/* ---- limits (QEMU block/qcow2.h; also ours) ---- */
#define QCOW2_MIN_CLUSTER_BITS   9           /* 512 B */
#define QCOW2_MAX_CLUSTER_BITS   21          /* 2 MiB */
#define QCOW2_DEFAULT_CLUSTER_BITS 16        /* 64 KiB */
#define QCOW2_MAX_REFCOUNT_ORDER 6           /* 64-bit refcounts */
#define QCOW2_DEFAULT_REFCOUNT_ORDER 4       /* 16-bit; implicit in v2 */
#define QCOW2_MAX_L1_BYTES       (32u << 20)
#define QCOW2_MAX_REFTABLE_BYTES (8u << 20)
#define QCOW2_MAX_SNAPSHOTS      65536u
#define QCOW2_MAX_SNAPSHOTS_BYTES (64u << 20)
#define QCOW2_MAX_SNAPSHOT_EXTRA 1024u
#define QCOW2_MAX_HOST_OFFSET    (1ull << 56) /* host offsets are below 2^56 */
#define QCOW2_MAX_BITMAPS        65535u
#define QCOW2_MAX_BITMAP_DIR_BYTES (64u << 20)

/* bitmaps extension data: u32 nb_bitmaps, u32 reserved, u64 directory
 * size, u64 directory offset.  Directory entries (padded to 8): */
#define QCOW2_BM_TABLE_OFFSET    0   /* u64 */
#define QCOW2_BM_TABLE_SIZE      8   /* u32 entries */
#define QCOW2_BM_FLAGS           12  /* u32 */
#define QCOW2_BM_TYPE            16  /* u8 */
#define QCOW2_BM_GRANULARITY     17  /* u8 */
#define QCOW2_BM_NAME_SIZE       18  /* u16 */
#define QCOW2_BM_EXTRA_SIZE      20  /* u32 */
#define QCOW2_BM_HDR_LEN         24  /* then extra data, name */
#define QCOW2_BMT_OFFSET_MASK    0x00fffffffffffe00ull /* bitmap table entry */

/* ---- L1 entries ---- */
#define QCOW2_OFLAG_COPIED       (1ull << 63) /* refcount is exactly 1 */
#define QCOW2_OFLAG_COMPRESSED   (1ull << 62) /* L2 only */
#define QCOW2_OFLAG_ZERO         (1ull << 0)  /* L2 standard entries, v3 only */
#define QCOW2_L1E_OFFSET_MASK    0x00fffffffffffe00ull /* bits 9..55 */
#define QCOW2_L1E_RESERVED_MASK  0x7f000000000001ffull /* bits 0..8, 56..62 */

/* ---- L2 standard entries ---- */
#define QCOW2_L2E_OFFSET_MASK    0x00fffffffffffe00ull /* bits 9..55 */
#define QCOW2_L2E_RESERVED_MASK  0x3f000000000001feull /* bits 1..8, 56..61 */

/* ---- refcount table entries ---- */
#define QCOW2_REFT_OFFSET_MASK   0xfffffffffffffe00ull /* bits 9..63 */
#define QCOW2_REFT_RESERVED_MASK 0x00000000000001ffull

/* ---- snapshot table entries (each padded to 8 bytes) ---- */
#define QCOW2_SN_L1_TABLE_OFFSET 0   /* u64 */
#define QCOW2_SN_L1_SIZE         8   /* u32 */
#define QCOW2_SN_ID_LEN          12  /* u16 */
#define QCOW2_SN_NAME_LEN        14  /* u16 */
#define QCOW2_SN_DATE_SEC        16  /* u32 */
#define QCOW2_SN_DATE_NSEC       20  /* u32 */
#define QCOW2_SN_VM_CLOCK_NSEC   24  /* u64 */
#define QCOW2_SN_VM_STATE_SIZE   32  /* u32 */
#define QCOW2_SN_EXTRA_DATA_SIZE 36  /* u32 */
#define QCOW2_SN_HDR_LEN         40  /* then extra data, id, name */

/*
 * Compressed cluster descriptor (L2 entry with QCOW2_OFLAG_COMPRESSED).
 * x = 62 - (cluster_bits - 8): bits 0..x-1 hold the host BYTE offset of the
 * compressed data (not aligned); bits x..61 hold the number of additional
 * 512-byte sectors it spans, counted from the sector holding the offset.
 * Readers read (nb_sectors+1)*512 - (offset % 512) bytes (the tail may be
 * the next compressed cluster's data).  Data is raw deflate, window 12
 * (deflateInit2(.., Z_DEFLATED, -12, 9, ..); inflateInit2(-12)); it must
 * inflate to exactly one cluster.  Writers compress into a buffer of
 * cluster_size - 1 bytes and store the cluster uncompressed if it does not
 * fit.  A compressed entry never has QCOW2_OFLAG_COPIED.
 */
#define QCOW2_COMPRESSED_SECTOR_SIZE 512u

static inline unsigned qcow2_csize_shift(unsigned cluster_bits)
{
	return 62 - (cluster_bits - 8);
}

static inline uint64_t qcow2_csize_mask(unsigned cluster_bits)
{
	/* the count field: bits x..61, (cluster_bits - 8) bits wide */
	return (1ull << (cluster_bits - 8)) - 1;
}

static inline uint64_t qcow2_coffset_mask(unsigned cluster_bits)
{
	return (1ull << qcow2_csize_shift(cluster_bits)) - 1;
}

/* Decode: host byte offset and the number of bytes a reader fetches. */
static inline void qcow2_compressed_decode(uint64_t l2e, unsigned cluster_bits,
					   uint64_t *host_off, uint64_t *nbytes)
{
	unsigned x = qcow2_csize_shift(cluster_bits);
	uint64_t off = l2e & qcow2_coffset_mask(cluster_bits);
	uint64_t nsec = ((l2e >> x) & qcow2_csize_mask(cluster_bits)) + 1;

	*host_off = off;
	*nbytes = nsec * QCOW2_COMPRESSED_SECTOR_SIZE - (off % QCOW2_COMPRESSED_SECTOR_SIZE);
}

/* Encode an L2 entry for len bytes of compressed data at host byte offset
 * host_off (len >= 1, host_off < 2^x and below QCOW2_MAX_HOST_OFFSET). */
static inline uint64_t qcow2_compressed_encode(uint64_t host_off, uint64_t len,
					       unsigned cluster_bits)
{
	unsigned x = qcow2_csize_shift(cluster_bits);
	uint64_t first = host_off / QCOW2_COMPRESSED_SECTOR_SIZE;
	uint64_t last = (host_off + len - 1) / QCOW2_COMPRESSED_SECTOR_SIZE;

	return QCOW2_OFLAG_COMPRESSED | ((last - first) << x) | host_off;
}

/* ---- refcount geometry ---- */
/* Entries per refcount block: cluster_size * 8 / refcount_bits. */
static inline unsigned qcow2_refblock_bits(unsigned cluster_bits, unsigned refcount_order)
{
	return cluster_bits + 3 - refcount_order;   /* log2(entries per block) */
}

/* Read entry i of a refcount block (sub-byte widths are LSB-first). */
static inline uint64_t qcow2_refblock_get(const uint8_t *blk, uint64_t i, unsigned order)
{
	switch (order) {
	case 0: return (blk[i / 8] >> (i % 8)) & 1;
	case 1: return (blk[i / 4] >> (2 * (i % 4))) & 3;
	case 2: return (blk[i / 2] >> (4 * (i % 2))) & 15;
	case 3: return blk[i];
	case 4: return (uint64_t)blk[2 * i] << 8 | blk[2 * i + 1];
	case 5: {
		const uint8_t *p = blk + 4 * i;
		return (uint64_t)p[0] << 24 | (uint64_t)p[1] << 16 | (uint64_t)p[2] << 8 | p[3];
	}
	default: {
		const uint8_t *p = blk + 8 * i;
		uint64_t v = 0;
		for (int k = 0; k < 8; k++)
			v = v << 8 | p[k];
		return v;
	}
	}
}

/* Store entry i; v must fit in 1 << order bits. */
static inline void qcow2_refblock_set(uint8_t *blk, uint64_t i, unsigned order, uint64_t v)
{
	switch (order) {
	case 0: blk[i / 8] = (uint8_t)((blk[i / 8] & ~(1u << (i % 8))) | (v & 1) << (i % 8)); break;
	case 1: {
		unsigned sh = 2 * (i % 4);
		blk[i / 4] = (uint8_t)((blk[i / 4] & ~(3u << sh)) | (v & 3) << sh);
		break;
	}
	case 2: {
		unsigned sh = 4 * (i % 2);
		blk[i / 2] = (uint8_t)((blk[i / 2] & ~(15u << sh)) | (v & 15) << sh);
		break;
	}
	case 3: blk[i] = (uint8_t)v; break;
	case 4: blk[2 * i] = (uint8_t)(v >> 8); blk[2 * i + 1] = (uint8_t)v; break;
	case 5: {
		uint8_t *p = blk + 4 * i;
		p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16);
		p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
		break;
	}
	default: {
		uint8_t *p = blk + 8 * i;
		for (int k = 7; k >= 0; k--) {
			p[k] = (uint8_t)v;
			v >>= 8;
		}
		break;
	}
	}
}

/* Largest refcount representable with 1 << order bits. */
static inline uint64_t qcow2_refcount_max(unsigned order)
{
	return order >= 6 ? UINT64_MAX : (1ull << (1u << order)) - 1;
}

#endif
