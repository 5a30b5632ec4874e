/* zcodec.c - inflating compressed clusters with zlib; see zcodec.h. */
#include "zcodec.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/*
 * Each thread keeps one raw-deflate z_stream and resets it per cluster:
 * inflateInit2/inflateEnd per cluster would allocate and free the 4 KiB
 * window and the inflate state every time, which shows up when several
 * threads decompress a whole image.
 */
struct tls_stream {
	z_stream z;
	bool ready;
};

static pthread_key_t stream_key;
static pthread_once_t stream_once = PTHREAD_ONCE_INIT;
static int stream_key_ok;

static void stream_free(void *p)
{
	struct tls_stream *s = p;
	if (s->ready)
		inflateEnd(&s->z);
	free(s);
}

static void stream_key_init(void)
{
	stream_key_ok = pthread_key_create(&stream_key, stream_free) == 0;
}

/* This thread's stream, reset and ready; NULL on allocation failure. */
static z_stream *thread_stream(void)
{
	struct tls_stream *s;

	pthread_once(&stream_once, stream_key_init);
	if (!stream_key_ok)
		return NULL;
	s = pthread_getspecific(stream_key);
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return NULL;
		if (inflateInit2(&s->z, -12) != Z_OK || pthread_setspecific(stream_key, s) != 0) {
			stream_free(s);
			return NULL;
		}
		s->ready = true;
		return &s->z;
	}
	if (inflateReset(&s->z) != Z_OK)
		return NULL;
	return &s->z;
}

/* QEMU's rule (block/qcow2-threads.c, block/qcow.c): inflate with a raw
 * 4 KiB window; done when the output buffer is full, whether the stream
 * ended (Z_STREAM_END) or not (Z_BUF_ERROR). */
int zcodec_inflate_cluster(const void *in, size_t in_len, void *out, size_t out_len)
{
	z_stream *z = thread_stream();
	int zr;

	if (!z)
		return -ENOMEM;
	z->next_in = (Bytef *)(uintptr_t)in;
	z->avail_in = (uInt)in_len;
	z->next_out = out;
	z->avail_out = (uInt)out_len;
	zr = inflate(z, Z_FINISH);
	return ((zr == Z_STREAM_END || zr == Z_BUF_ERROR) && z->avail_out == 0) ? 0 : -EIO;
}
