#!/bin/sh
# Seeds for fuzz_image_open: small real images made by qemu-img.
set -eu
D=$1
cd "$D"
qemu-img create -q -f raw src.raw 1M
qemu-io -f raw -c 'write -P 0x61 0 64k' -c 'write -P 0x62 512k 4k' src.raw >/dev/null
qemu-img convert -O qcow2 -o cluster_size=4096 src.raw v3-4k.qcow2
qemu-img convert -O qcow2 -o compat=0.10,cluster_size=512 src.raw v2-512.qcow2
qemu-img convert -c -O qcow2 -o cluster_size=4096 src.raw zlib.qcow2
qemu-img convert -O qcow2 -o refcount_bits=1,cluster_size=4096 src.raw rc1.qcow2
qemu-img create -q -f qcow2 -b src.raw -F raw overlay.qcow2
# qemu-img 7.2 sometimes exits 1 on qcow -c output: a missing seed is fine
qemu-img convert -c -O qcow src.raw comp.qcow || qemu-img convert -O qcow src.raw plain.qcow || true
rm -f src.raw
