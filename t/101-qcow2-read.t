#!/bin/sh
# qcow2 images made by qemu-img (v2/v3, cluster sizes 512 B..2 MiB,
# compressed, zero clusters, refcount widths 1 and 64, 2- and 3-level
# chains mixing raw and qcow2) read back byte-identical to
# `qemu-img convert -O raw`; block status matches what qemu-io wrote.
. "$(dirname "$0")/lib.sh"
need_cmd qemu-img qemu-utils
need_cmd qemu-io qemu-utils
IMGIO=$VBDFS_BUILD/t/helpers/imgio
plan 22

same_as_qemu() { # image: our export == qemu-img's raw conversion
    qemu-img convert -O raw "$1" "$T/ref.raw" && "$IMGIO" -r -f qcow2 "$1" "export $T/out.raw" &&
        cmp "$T/ref.raw" "$T/out.raw"
}

fill() {
    qemu-io -f qcow2 -c 'write -P 0x11 0 100k' -c 'write -P 0x22 1M 3M' \
        -c 'write -P 0x33 15M 1000k' -c 'write -P 0x44 7777k 3k' "$1" >/dev/null
}

for cs in 512 4096 65536 2M; do
    for compat in 0.10 1.1; do
        f=$T/a-$cs-$compat.qcow2
        qemu-img create -q -f qcow2 -o cluster_size=$cs,compat=$compat "$f" 16M
        fill "$f"
        [ $compat = 1.1 ] && qemu-io -f qcow2 -c 'write -z 1200k 512k' "$f" >/dev/null
        ok "cluster $cs compat $compat reads like qemu" same_as_qemu "$f"
    done
done

qemu-img convert -c -O qcow2 "$T/a-65536-1.1.qcow2" "$T/c.qcow2"
ok "compressed image reads like qemu" same_as_qemu "$T/c.qcow2"
qemu-img convert -c -O qcow2 -o cluster_size=4096 "$T/a-65536-1.1.qcow2" "$T/c4k.qcow2"
ok "compressed 4k-cluster image reads like qemu" same_as_qemu "$T/c4k.qcow2"
# small sequential reads inside compressed clusters (the inflate cache)
cmds=""; k=0
while [ $k -lt 40 ]; do cmds="$cmds
read $((1048576 + k * 4096 + 100)) 3996 0x22"; k=$((k + 1)); done
ok "4 KiB reads over compressed clusters" sh -c "printf '%s\n' \"\$1\" | '$IMGIO' -r -f qcow2 '$T/c.qcow2'" sh "$cmds"
map=$("$IMGIO" -r -f qcow2 "$T/c.qcow2" map)
like "$map" "^0 [0-9]+ data compressed depth=0" "block status says compressed"

f=$T/z.qcow2
qemu-img create -q -f qcow2 "$f" 4M
qemu-io -f qcow2 -c 'write -P 0x55 0 4M' -c 'write -z 1M 1M' "$f" >/dev/null
map=$("$IMGIO" -r -f qcow2 "$f" map)
like "$map" "^1048576 1048576 zero depth=0" "zero clusters reported as zero"
ok "zero clusters read as zeros" "$IMGIO" -r -f qcow2 "$f" "read 1048576 1048576 0" "read 0 1048576 0x55"

for rb in 1 64; do
    f=$T/r$rb.qcow2
    qemu-img create -q -f qcow2 -o refcount_bits=$rb,cluster_size=4096 "$f" 16M
    fill "$f"
    ok "refcount_bits=$rb reads like qemu" same_as_qemu "$f"
done

# raw <- qcow2 (v3) <- qcow2 (v2): a 3-level chain with relative names
qemu-img create -q -f raw "$T/base.raw" 16M
qemu-io -f raw -c 'write -P 0x41 0 16M' "$T/base.raw" >/dev/null
(cd "$T" && qemu-img create -q -f qcow2 -b base.raw -F raw mid.qcow2 &&
    qemu-img create -q -f qcow2 -o compat=0.10 -b mid.qcow2 -F qcow2 top.qcow2)
qemu-io -f qcow2 -c 'write -P 0x42 2M 2M' "$T/mid.qcow2" >/dev/null
qemu-io -f qcow2 -c 'write -P 0x43 3M 2M' -c 'write -P 0x44 3000 1000' "$T/top.qcow2" >/dev/null
ok "2-level chain reads like qemu" same_as_qemu "$T/mid.qcow2"
ok "3-level chain reads like qemu" same_as_qemu "$T/top.qcow2"
map=$("$IMGIO" -r -f qcow2 "$T/top.qcow2" map)
like "$map" "depth=2" "block status reaches the raw base (depth 2)"
info=$("$IMGIO" -r -f qcow2 "$T/top.qcow2" info)
like "$info" "backing2=raw:.*base.raw" "chain is qcow2 -> qcow2 -> raw"
# a qcow (v1) base under a qcow2 overlay (the qcow driver is registered in
# image.c's table like any other)
qemu-img create -q -f qcow "$T/old.qcow" 16M
qemu-io -f qcow -c 'write -P 0x71 0 3M' "$T/old.qcow" >/dev/null
(cd "$T" && qemu-img create -q -f qcow2 -b old.qcow -F qcow new.qcow2)
qemu-io -f qcow2 -c 'write -P 0x72 1M 64k' "$T/new.qcow2" >/dev/null
ok "qcow2 over qcow v1 reads like qemu" same_as_qemu "$T/new.qcow2"
cp "$T/new.qcow2" "$T/new2.qcow2"; qemu-img convert -O raw "$T/new.qcow2" "$T/m.raw"
"$IMGIO" -f qcow2 "$T/new2.qcow2" "random 5 100 16777216" && "$IMGIO" -f raw "$T/m.raw" "random 5 100 16777216"
ok "copy-on-write over qcow v1 matches raw" qemu-img compare -q "$T/new2.qcow2" "$T/m.raw"
done_testing
