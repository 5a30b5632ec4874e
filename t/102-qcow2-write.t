#!/bin/sh
# Writes through our qcow2 driver: the same pseudo-random ops (full and
# partial-cluster writes, discards, write_zeroes, flushes) applied to a qcow2
# image and to a raw image through our raw driver give images that
# `qemu-img compare` finds equal, and `qemu-img check` finds clean.
# Covers v2/v3, small and huge clusters, compressed clusters and backing
# chains being overwritten, refcount widths 1/64, and refcount table growth.
. "$(dirname "$0")/lib.sh"
need_cmd qemu-img qemu-utils
need_cmd qemu-io qemu-utils
IMGIO=$VBDFS_BUILD/t/helpers/imgio
plan 20

same_ops() { # image size seed count
    "$IMGIO" -f qcow2 "$1" "random $3 $4 $2" && "$IMGIO" -f raw "$T/m.raw" "random $3 $4 $2" &&
        qemu-img check -q "$1" && qemu-img compare -q "$1" "$T/m.raw"
}

for cs in 512 65536 2M; do
    for compat in 0.10 1.1; do
        f=$T/a-$cs-$compat.qcow2
        qemu-img create -q -f qcow2 -o cluster_size=$cs,compat=$compat "$f" 16M
        qemu-io -f qcow2 -c 'write -P 0x11 0 100k' -c 'write -P 0x22 1M 3M' "$f" >/dev/null
        qemu-img convert -O raw "$f" "$T/m.raw"
        ok "cluster $cs compat $compat: random ops match raw, check clean" same_ops "$f" 16777216 $cs 250
    done
done

# IMG_DIRECT: aligned guest data through O_DIRECT, the rest buffered
f=$T/direct.qcow2
qemu-img create -q -f qcow2 -o cluster_size=4096 "$f" 16M
qemu-img create -q -f raw "$T/m.raw" 16M
ok "O_DIRECT data path (IMG_DIRECT)" sh -c "'$IMGIO' -d -f qcow2 '$f' 'random 51 250 16777216' &&
    '$IMGIO' -f raw '$T/m.raw' 'random 51 250 16777216' && qemu-img check -q '$f' &&
    qemu-img compare -q '$f' '$T/m.raw'"

qemu-img create -q -f qcow2 "$T/src.qcow2" 16M
qemu-io -f qcow2 -c 'write -P 0x61 0 16M' "$T/src.qcow2" >/dev/null
qemu-img convert -c -O qcow2 "$T/src.qcow2" "$T/c.qcow2"
qemu-img convert -O raw "$T/c.qcow2" "$T/m.raw"
ok "writes over compressed clusters" same_ops "$T/c.qcow2" 16777216 21 250

qemu-img create -q -f raw "$T/base.raw" 16M
qemu-io -f raw -c 'write -P 0x41 0 16M' "$T/base.raw" >/dev/null
(cd "$T" && qemu-img create -q -f qcow2 -b base.raw -F raw mid.qcow2 &&
    qemu-img create -q -f qcow2 -o compat=0.10 -b mid.qcow2 -F qcow2 top2.qcow2 &&
    qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top3.qcow2)
qemu-io -f qcow2 -c 'write -P 0x42 2M 2M' "$T/mid.qcow2" >/dev/null
qemu-img convert -O raw "$T/mid.qcow2" "$T/mid.raw"
cp "$T/mid.raw" "$T/m.raw"
ok "copy-on-write over a chain (v2 overlay)" same_ops "$T/top2.qcow2" 16777216 22 250
cp "$T/mid.raw" "$T/m.raw"
ok "copy-on-write over a chain (v3 overlay, zero clusters hide backing)" same_ops "$T/top3.qcow2" 16777216 23 250

for rb in 1 64; do
    qemu-img create -q -f qcow2 -o refcount_bits=$rb,cluster_size=4096 "$T/r$rb.qcow2" 16M
    qemu-img create -q -f raw "$T/m.raw" 16M
    ok "refcount_bits=$rb writes" same_ops "$T/r$rb.qcow2" 16777216 $((30 + rb)) 200
done

# 512-byte clusters and 64-bit refcounts: the refcount table must grow
qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=64 "$T/g.qcow2" 64M
qemu-img create -q -f raw "$T/m.raw" 64M
ok "refcount table growth" same_ops "$T/g.qcow2" 67108864 41 600
# online resize (img_resize): the L1 table grows past its cluster
f=$T/grow.qcow2
qemu-img create -q -f qcow2 "$f" 16M
qemu-io -f qcow2 -c 'write -P 0x44 0 16M' "$f" >/dev/null
qemu-img convert -O raw "$f" "$T/m.raw"
ok "resize to 1.2 GB" sh -c "'$IMGIO' -f qcow2 '$f' 'resize 1200000000' && '$IMGIO' -f raw '$T/m.raw' 'resize 1200000000'"
is "$(qemu-img info --output=json "$f" | grep -o '"virtual-size": [0-9]*')" '"virtual-size": 1200000000' "qemu-img sees the new size"
ok "writes after resize match raw, check clean" same_ops "$f" 1200000000 71 150

# internal snapshots: the active layer is written with copy-on-write of the
# shared L2 tables and data clusters; the snapshot's data stays intact
for cs in 4096 65536; do
    f=$T/snap$cs.qcow2
    qemu-img create -q -f qcow2 -o cluster_size=$cs "$f" 16M
    qemu-io -f qcow2 -c 'write -P 0x31 0 6M' -c 'write -P 0x32 9M 1M' "$f" >/dev/null
    qemu-img snapshot -c s1 "$f"
    qemu-io -f qcow2 -c 'write -P 0x33 2M 1M' "$f" >/dev/null
    qemu-img convert -l snapshot.name=s1 -O raw "$f" "$T/s1-before.raw"
    qemu-img convert -O raw "$f" "$T/m.raw"
    ok "cluster $cs with a snapshot: writes match raw, check clean" same_ops "$f" 16777216 $((60 + cs % 7)) 250
    qemu-img convert -l snapshot.name=s1 -O raw "$f" "$T/s1-after.raw"
    ok "cluster $cs: the snapshot's data is unchanged" cmp "$T/s1-before.raw" "$T/s1-after.raw"
done
done_testing
