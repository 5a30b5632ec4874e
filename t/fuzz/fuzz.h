/*
 * fuzz.h - the contract of a fuzz target in t/fuzz/fuzz_*.c.
 *
 * Each target defines LLVMFuzzerTestOneInput().  `make fuzz` links it with
 * libFuzzer (clang, ASan, UBSan); `make check` links it with replay.c, which
 * runs it over the committed corpus t/fuzz/corpus/<target>/ and over a
 * fixed number of deterministic mutations of it, so crashes found once stay
 * fixed.  A target must not leak, exit, or keep state between inputs.
 */
#ifndef VBDFS_FUZZ_H
#define VBDFS_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Optional: seeds generated at run time (e.g. images made by qemu-img) are
 * passed to the replayer as extra files. */

#endif
