/* zcodec.c - inflating compressed clusters; see zcodec.h. */
#include "zcodec.h"

#include <errno.h>
#include <libdeflate.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <zlib.h>

static pthread_key_t dec_key;
static pthread_once_t dec_once = PTHREAD_ONCE_INIT;
static int dec_key_ok;

static void dec_free(void *p)
{
	libdeflate_free_decompressor(p);
}

static void dec_key_init(void)
{
	dec_key_ok = pthread_key_create(&dec_key, dec_free) == 0;
}

/* This thread's libdeflate decompressor, or NULL (then zlib does it all). */
static struct libdeflate_decompressor *decompressor(void)
{
	pthread_once(&dec_once, dec_key_init);
	if (!dec_key_ok)
		return NULL;
	struct libdeflate_decompressor *d = pthread_getspecific(dec_key);
	if (!d) {
		d = libdeflate_alloc_decompressor();
		if (d && pthread_setspecific(dec_key, d) != 0) {
			libdeflate_free_decompressor(d);
			d = NULL;
		}
	}
	return d;
}

/* QEMU's rule (block/qcow2-threads.c, block/qcow.c): inflate with a raw
 * 4 KiB window; done when the output buffer is full, whether the stream
 * ended (Z_STREAM_END) or not (Z_BUF_ERROR). */
static int zlib_inflate(const void *in, size_t in_len, void *out, size_t out_len)
{
	z_stream z;
	int zr, r;

	memset(&z, 0, sizeof(z));
	if (inflateInit2(&z, -12) != Z_OK)
		return -ENOMEM;
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = (uInt)in_len;
	z.next_out = out;
	z.avail_out = (uInt)out_len;
	zr = inflate(&z, Z_FINISH);
	r = ((zr == Z_STREAM_END || zr == Z_BUF_ERROR) && z.avail_out == 0) ? 0 : -EIO;
	inflateEnd(&z);
	return r;
}

int zcodec_inflate_cluster(const void *in, size_t in_len, void *out, size_t out_len)
{
	struct libdeflate_decompressor *d = decompressor();

	if (d) {
		size_t got_in, got_out;
		enum libdeflate_result r = libdeflate_deflate_decompress_ex(
			d, in, in_len, out, out_len, &got_in, &got_out);
		if (r == LIBDEFLATE_SUCCESS)
			return got_out == out_len ? 0 : -EIO; /* zlib: Z_STREAM_END, short */
		/* longer than a cluster, truncated or bad: zlib has the last word */
	}
	return zlib_inflate(in, in_len, out, out_len);
}
