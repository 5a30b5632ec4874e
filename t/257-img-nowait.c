/* img_preadv_nowait, what the engine's inline read path asks the image:
 * on raw, data in the page cache comes back; never an error other than
 * -EAGAIN (out of range, formats that cannot tell), and never wrong data. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/image.h"
#include "util/tap.h"

#define SIZE (1u << 20)

int main(void)
{
	char dir[] = "/tmp/vbdfs-nowait.XXXXXX", raw[64], q2[64], cmd[200], err[256];
	static char data[SIZE], back[SIZE];
	struct iovec v[2];
	struct img *im;
	int fd, r;

	if (!mkdtemp(dir))
		bail_out("mkdtemp");
	snprintf(raw, sizeof(raw), "%s/a.raw", dir);
	snprintf(q2, sizeof(q2), "%s/a.qcow2", dir);
	for (size_t i = 0; i < SIZE; i++)
		data[i] = (char)(i * 31 + (i >> 12));
	fd = open(raw, O_CREAT | O_WRONLY, 0600);
	if (fd < 0 || write(fd, data, SIZE) != SIZE || close(fd) < 0)
		bail_out("cannot write the raw image");

	r = img_open(raw, "raw", IMG_RDONLY, &im, err, sizeof(err));
	is_int(r, 0, "raw image opens");
	if (r == 0) {
		/* the file was just written: all of it is in the page cache */
		v[0] = (struct iovec){ back, 4096 };
		v[1] = (struct iovec){ back + 4096, 8192 };
		r = img_preadv_nowait(im, v, 2, 65536);
		if (r == -EAGAIN) {
			skip(1, "this file system has no RWF_NOWAIT reads");
		} else {
			ok(r == 0 && memcmp(back, data + 65536, 12288) == 0,
			   "cached range read without waiting, into two iovecs");
		}
		memset(back, 0, SIZE);
		r = img_preadv_nowait(im, v, 1, SIZE - 2048);
		is_int(r, -EAGAIN, "a range past the end: -EAGAIN (img_preadv reports it)");
		ok(back[0] == 0, "... and nothing read");
		r = img_preadv_nowait(im, v, -1, 0);
		is_int(r, -EAGAIN, "a bad iovec count: -EAGAIN");
		/* Whatever the cache holds now, the answer is the data or
		 * -EAGAIN, never anything else. */
		fd = open(raw, O_RDONLY);
		if (fd >= 0) {
			posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
			close(fd);
		}
		v[0] = (struct iovec){ back, SIZE };
		r = img_preadv_nowait(im, v, 1, 0);
		ok(r == -EAGAIN || (r == 0 && memcmp(back, data, SIZE) == 0),
		   "after dropping the cache: -EAGAIN or the right data");
		img_close(im);
	} else {
		skip(5, "no image");
	}

	snprintf(cmd, sizeof(cmd), "qemu-img create -q -f qcow2 %s 1M >/dev/null 2>&1", q2);
	if (system(cmd) != 0) {
		skip(1, "qemu-img create failed");
	} else if (img_open(q2, "qcow2", IMG_RDONLY, &im, err, sizeof(err)) != 0) {
		ok(0, "qcow2 image opens");
	} else {
		v[0] = (struct iovec){ back, 4096 };
		is_int(img_preadv_nowait(im, v, 1, 0), -EAGAIN,
		       "qcow2 cannot tell: always -EAGAIN (the workers read it)");
		img_close(im);
	}
	unlink(raw);
	unlink(q2);
	rmdir(dir);
	return done_testing();
}
