/*
 * Unit tests: an open image with several owners (img_ref) stays open, and
 * locked, until the last img_close; img_check_free() says whether a writer
 * could open a file; img_is_file() and img_format() identify an image.
 * (vbdfs shares the image of a detached disk still held open this way.)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/image.h"
#include "util/tap.h"

int main(void)
{
	char dir[64], path[96], other[96], err[512], buf[512];
	struct img *img = NULL, *img2 = NULL;
	struct stat st, st_other;

	snprintf(dir, sizeof(dir), "/tmp/vbdfs-109.XXXXXX");
	if (!mkdtemp(dir))
		bail_out("mkdtemp");
	snprintf(path, sizeof(path), "%s/a.raw", dir);
	snprintf(other, sizeof(other), "%s/b.raw", dir);
	for (int i = 0; i < 2; i++) {
		int fd = open(i ? other : path, O_CREAT | O_RDWR, 0600);
		if (fd < 0 || ftruncate(fd, 1 << 20) < 0)
			bail_out("cannot make the images");
		close(fd);
	}
	plan(11);

	is_int(img_check_free(path, err, sizeof(err)), 0, "a file nobody opened is free");
	is_int(img_open(path, "raw", 0, &img, err, sizeof(err)), 0, "open it writable");
	is_int(img_check_free(path, err, sizeof(err)), -EBUSY, "then a writer could not open it");
	ok(strstr(err, path) != NULL, "and the message names the file");
	is_str(img_format(img), "raw", "img_format");
	stat(path, &st);
	stat(other, &st_other);
	ok(img_is_file(img, &st) && !img_is_file(img, &st_other), "img_is_file tells the files apart");

	ok(img_ref(img) == img, "img_ref returns the image");
	img_close(img); /* one owner left */
	memset(buf, 0x5a, sizeof(buf));
	is_int(img_pwrite(img, buf, sizeof(buf), 0), 0, "after one close the other owner still writes");
	is_int(img_check_free(path, err, sizeof(err)), -EBUSY, "and still holds the lock");
	img_close(img); /* the last owner */
	is_int(img_check_free(path, err, sizeof(err)), 0, "the last close lets the file go");
	is_int(img_open(path, "raw", 0, &img2, err, sizeof(err)), 0, "and a writer opens it again");
	img_close(img2);

	snprintf(buf, sizeof(buf), "rm -rf '%s'", dir);
	(void)!system(buf);
	return done_testing();
}
