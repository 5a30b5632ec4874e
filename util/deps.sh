#!/bin/sh
# Install every build and test dependency of vbdfs that is missing, with apt-get.
# Does nothing (and needs no network) when everything is already present.
# Usage: util/deps.sh [--check] [--fuzz]
#   --check  only list what is missing (exit 1 if anything is)
#   --fuzz   also what `make fuzz` needs (clang with libFuzzer)
set -eu

# Debian package : a file that proves it is installed.
NEEDS="
gcc:/usr/bin/gcc
make:/usr/bin/make
pkg-config:/usr/bin/pkg-config
libfuse3-dev:/usr/include/fuse3/fuse.h
fuse3:/usr/bin/fusermount3
libxen-dev:/usr/include/xenstore.h
xenstore-utils:/usr/bin/xenstore-ls
zlib1g-dev:/usr/include/zlib.h
qemu-utils:/usr/bin/qemu-img
perl:/usr/bin/prove
sysstat:/usr/bin/iostat
jq:/usr/bin/jq
e2fsprogs:/sbin/mkfs.ext4
util-linux:/sbin/losetup
groff-base:/usr/bin/groff
"

FUZZ_NEEDS="
clang:/usr/bin/clang
libclang-rt-14-dev:/usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a
"

check_only=false
for arg in "$@"; do
    case $arg in
    --check) check_only=true ;;
    --fuzz) NEEDS="$NEEDS $FUZZ_NEEDS" ;;
    *) echo "usage: $0 [--check] [--fuzz]" >&2; exit 2 ;;
    esac
done

missing=""
for entry in $NEEDS; do
    pkg=${entry%%:*}
    file=${entry#*:}
    # shellcheck disable=SC2086 # the path may be a glob
    ls $file >/dev/null 2>&1 || missing="$missing $pkg"
done

if [ -z "$missing" ]; then
    exit 0
fi
if $check_only; then
    echo "missing packages:$missing" >&2
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    echo "vbdfs: missing Debian packages:$missing" >&2
    echo "vbdfs: run as root, or: sudo apt-get install$missing" >&2
    exit 1
fi
echo "vbdfs: installing missing packages:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# An old or absent package list makes apt-get install fail; refresh it once.
apt-get update -qq >/dev/null 2>&1 || apt-get update
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
