#!/bin/sh
# vbd-img create: images that qemu-img checks clean and describes with the
# same size, cluster size, compat, refcount width and backing file; bad
# options refused with a message.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-img.sh"
plan 33

V=$VBD_IMG
ok "create qcow2 default" $V create -f qcow2 "$T/a.qcow2" 1G
like "$(cat "$T/last.out")" "Formatting '.*a.qcow2', fmt=qcow2" "says what it made"
ok "qemu-img check: clean" qemu-img check "$T/a.qcow2"
is "$(qinfo "$T/a.qcow2" '."virtual-size"')" 1073741824 "qemu-img: virtual size"
is "$(qinfo "$T/a.qcow2" '."cluster-size"')" 65536 "qemu-img: cluster size"
is "$(qinfo "$T/a.qcow2" '."format-specific".data.compat')" 1.1 "qemu-img: compat 1.1"
is "$(qinfo "$T/a.qcow2" '."format-specific".data."refcount-bits"')" 16 "qemu-img: refcount bits"

ok "create compat=0.10, 4K clusters" $V create -q -f qcow2 -o compat=0.10,cluster_size=4K "$T/b.qcow2" 20M
ok "v2 image checks clean" qemu-img check "$T/b.qcow2"
is "$(qinfo "$T/b.qcow2" '."format-specific".data.compat + " " + (."cluster-size"|tostring)')" "0.10 4096" \
    "qemu-img: compat 0.10, 4096-byte clusters"

ok "create refcount_bits=1, 512-byte clusters, 3G" \
    $V create -q -f qcow2 -o refcount_bits=1,cluster_size=512 "$T/c.qcow2" 3G
ok "1-bit refcounts check clean" qemu-img check "$T/c.qcow2"
is "$(qinfo "$T/c.qcow2" '."format-specific".data."refcount-bits"')" 1 "qemu-img: 1-bit refcounts"
ok "2M clusters, 64-bit refcounts, 100T" $V create -q -f qcow2 -o cluster_size=2M,refcount_bits=64 "$T/d.qcow2" 100T
ok "huge image checks clean" qemu-img check "$T/d.qcow2"

# qemu can write into what we made, and it stays clean
ok "qemu-io writes into our image" qemu-io -f qcow2 -c 'write -P 0x3c 100k 300k' "$T/a.qcow2"
ok "still clean after qemu's writes" qemu-img check "$T/a.qcow2"

# backing file with a backing format extension, relative name
qemu-img create -q -f raw "$T/base.raw" 8M
qemu-io -f raw -c 'write -P 0x77 64k 64k' "$T/base.raw" >/dev/null
ok "create with backing file, size from the backing file" \
    $V create -q -f qcow2 -b base.raw -F raw "$T/ov.qcow2"
is "$(qinfo "$T/ov.qcow2" '."backing-filename" + " " + ."backing-filename-format"')" "base.raw raw" \
    "qemu-img: backing file and format"
is "$(qinfo "$T/ov.qcow2" '."virtual-size"')" 8388608 "size taken from the backing file"
ok "overlay checks clean" qemu-img check "$T/ov.qcow2"
ok "overlay reads as its backing file" qemu-img compare "$T/ov.qcow2" "$T/base.raw"

ok "vbd-img write into our overlay" $V write -f qcow2 -P 0x21 "$T/ov.qcow2" 60k 10k
ok "qemu-io reads our write over the backing data" \
    qemu-io -f qcow2 -c 'read -P 0 0 60k' -c 'read -P 0x21 60k 10k' -c 'read -P 0x77 70k 58k' "$T/ov.qcow2"
ok "overlay still checks clean" qemu-img check "$T/ov.qcow2"

fails "-b without -F refused" $V create -f qcow2 -b base.raw "$T/x.qcow2"
like "$(cat "$T/last.out")" "never guessed" "message says why"
fails "missing backing file refused" $V create -f qcow2 -b nope.raw -F raw "$T/x.qcow2"
like "$(cat "$T/last.out")" "nope.raw" "message names the file"
fails "bad cluster size refused" $V create -f qcow2 -o cluster_size=1000 "$T/x.qcow2" 1M
fails "compat=0.10 with 8-bit refcounts refused" $V create -f qcow2 -o compat=0.10,refcount_bits=8 "$T/x.qcow2" 1M

ok "create raw 3M" $V create -q -f raw "$T/r.raw" 3M
is "$(stat -c %s "$T/r.raw")" 3145728 "raw file has the size"
done_testing
