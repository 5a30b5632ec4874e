/* vdev.c - disk names <-> Xen device ids; see vdev.h. */
#include "vdev.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define XEN_IDE0_MAJOR 3
#define XEN_IDE1_MAJOR 22
#define XEN_SCSI_MAJOR 8
#define XEN_VBD_MAJOR 202

/* Bijective base 26: "a" = 0, "z" = 25, "aa" = 26.  Returns the number of
 * letters consumed (0 if none or on overflow) and the index in *index. */
static size_t parse_letters(const char *s, uint32_t *index)
{
	uint64_t v = 0;
	size_t n = 0;

	while (s[n] >= 'a' && s[n] <= 'z') {
		v = v * 26 + (uint64_t)(s[n] - 'a' + 1);
		if (v > (uint64_t)VDEV_MAX_INDEX + 1)
			return 0;
		n++;
	}
	if (n == 0)
		return 0;
	*index = (uint32_t)(v - 1);
	return n;
}

static int parse_decimal(const char *s, uint32_t *out)
{
	uint64_t v = 0;

	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > UINT32_MAX)
			return -EINVAL;
	}
	*out = (uint32_t)v;
	return 0;
}

int vdev_parse(const char *name, uint32_t *devid)
{
	uint32_t index;
	size_t n;

	if (!name || !*name)
		return -EINVAL;
	if (name[0] >= '0' && name[0] <= '9') {
		uint32_t v;
		if (parse_decimal(name, &v) < 0 || v == 0)
			return -EINVAL;
		*devid = v;
		return 0;
	}
	if (strncmp(name, "xvd", 3) == 0) {
		n = parse_letters(name + 3, &index);
		if (!n || name[3 + n])
			return -EINVAL;
		*devid = index < 16 ? (XEN_VBD_MAJOR << 8 | index << 4)
				    : (VDEV_EXTENDED | index << 8);
		return 0;
	}
	if (strncmp(name, "sd", 2) == 0) {
		n = parse_letters(name + 2, &index);
		if (!n || name[2 + n] || index >= 16)
			return -EINVAL;
		*devid = XEN_SCSI_MAJOR << 8 | index << 4;
		return 0;
	}
	if (strncmp(name, "hd", 2) == 0) {
		n = parse_letters(name + 2, &index);
		if (!n || name[2 + n] || index >= 4)
			return -EINVAL;
		*devid = (index < 2 ? XEN_IDE0_MAJOR : XEN_IDE1_MAJOR) << 8 | (index & 1) << 6;
		return 0;
	}
	return -EINVAL;
}

/* Letters for index (inverse of parse_letters), NUL-terminated. */
static void index_letters(uint32_t index, char out[8])
{
	char tmp[8];
	size_t n = 0;
	uint64_t v = (uint64_t)index + 1;

	while (v > 0 && n < sizeof(tmp) - 1) {
		v--;
		tmp[n++] = (char)('a' + v % 26);
		v /= 26;
	}
	for (size_t i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	out[n] = '\0';
}

static int put_name(char *buf, size_t len, const char *prefix, uint32_t index, uint32_t part)
{
	char letters[8];
	int r;

	index_letters(index, letters);
	if (part)
		r = snprintf(buf, len, "%s%s%u", prefix, letters, part);
	else
		r = snprintf(buf, len, "%s%s", prefix, letters);
	return r < 0 || (size_t)r >= len ? -ENOSPC : 0;
}

int vdev_name(uint32_t devid, char *buf, size_t len)
{
	uint32_t major = devid >> 8 & 0xfff, minor = devid & 0xff;
	int r;

	if (devid & VDEV_EXTENDED) {
		if (devid >> 29 == 0)
			return put_name(buf, len, "xvd", devid >> 8 & 0xfffff, devid & 0xff);
	} else if (devid >> 20 == 0) {
		switch (major) {
		case XEN_VBD_MAJOR:
			return put_name(buf, len, "xvd", minor >> 4, minor & 15);
		case XEN_SCSI_MAJOR:
			return put_name(buf, len, "sd", minor >> 4, minor & 15);
		case XEN_IDE0_MAJOR:
		case XEN_IDE1_MAJOR:
			return put_name(buf, len, "hd", (major == XEN_IDE1_MAJOR ? 2 : 0) + (minor >> 6),
					minor & 63);
		}
	}
	r = snprintf(buf, len, "%u", devid);
	if (r < 0 || (size_t)r >= len)
		return -ENOSPC;
	return -EINVAL;
}
