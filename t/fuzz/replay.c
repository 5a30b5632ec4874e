/*
 * replay.c - run a fuzz target without libFuzzer: each file named on the
 * command line (directories are walked one level) is fed to the target,
 * then N deterministic mutations of each (bit flips, byte sets, truncations,
 * extensions), N from $FUZZ_MUTATIONS (default 200).  Exit 0 if nothing
 * crashed; ASan/UBSan in `make asan` turn memory errors into failures.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	/* xorshift64*: deterministic, so a failure reproduces */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ull;
}

static void mutate(uint8_t *buf, size_t *len, size_t cap)
{
	unsigned edits = 1 + (unsigned)(rng() % 8);

	for (unsigned i = 0; i < edits && *len; i++) {
		size_t at = rng() % *len;
		switch (rng() % 6) {
		case 0: buf[at] ^= (uint8_t)(1u << (rng() % 8)); break;
		case 1: buf[at] = (uint8_t)rng(); break;
		case 2: buf[at] = (rng() & 1) ? 0xff : 0x00; break;
		case 3: *len = at + 1; break;                            /* truncate */
		case 4:                                                  /* extend */
			while (*len < cap && (rng() % 16))
				buf[(*len)++] = (uint8_t)rng();
			break;
		case 5: {                                                /* big value */
			static const uint8_t big[] = { 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xf0 };
			size_t n = *len - at < sizeof(big) ? *len - at : sizeof(big);
			memcpy(buf + at, big, n);
			break;
		}
		}
	}
}

static int run_file(const char *path, unsigned mutations)
{
	FILE *f = fopen(path, "rb");
	uint8_t *data, *work;
	size_t len, cap;

	if (!f) {
		perror(path);
		return 1;
	}
	fseek(f, 0, SEEK_END);
	len = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	cap = len + 4096;
	data = malloc(cap);
	work = malloc(cap);
	if (!data || !work || fread(data, 1, len, f) != len) {
		fclose(f);
		free(data);
		free(work);
		return 1;
	}
	fclose(f);
	LLVMFuzzerTestOneInput(data, len);
	for (unsigned i = 0; i < mutations; i++) {
		size_t wl = len;
		memcpy(work, data, len);
		mutate(work, &wl, cap);
		LLVMFuzzerTestOneInput(work, wl);
	}
	free(data);
	free(work);
	return 0;
}

int main(int argc, char **argv)
{
	const char *m = getenv("FUZZ_MUTATIONS");
	unsigned mutations = m ? (unsigned)atoi(m) : 200;
	unsigned files = 0;
	int rc = 0;

	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) != 0)
			continue;
		if (!S_ISDIR(st.st_mode)) {
			rc |= run_file(argv[i], mutations);
			files++;
			continue;
		}
		DIR *d = opendir(argv[i]);
		struct dirent *e;
		while (d && (e = readdir(d))) {
			char p[4096];
			if (e->d_name[0] == '.')
				continue;
			snprintf(p, sizeof(p), "%s/%s", argv[i], e->d_name);
			rc |= run_file(p, mutations);
			files++;
		}
		if (d)
			closedir(d);
	}
	printf("replayed %u inputs with %u mutations each\n", files, mutations);
	return rc;
}
