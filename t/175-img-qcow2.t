#!/bin/sh
# vbd-img on qcow2 images made by qemu-img: convert to raw and qcow2 (-c)
# reads exactly what qemu-img reads (plain, zlib-compressed, zero clusters,
# backing chains); info and map agree with qemu-img's JSON; writes land
# where qemu-io finds them and leave the image clean.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-img.sh"
# (until the qcow2 driver is in the build, there is nothing to test here)
qemu-img create -q -f qcow2 "$T/probe.qcow2" 1M
if $VBD_IMG info -f qcow2 "$T/probe.qcow2" 2>&1 | grep -q "unsupported image format 'qcow2'"; then
    skip_all "the qcow2 driver is not in this build"
fi
plan 24

V=$VBD_IMG
same_as_qemu() {  # IMG : vbd-img and qemu-img convert to identical raw files
    rm -f "$T/q.raw" "$T/v.raw"
    qemu-img convert -O raw "$1" "$T/q.raw" && $V convert -O raw "$1" "$T/v.raw" &&
        cmp "$T/q.raw" "$T/v.raw"
}

mkdata "$T/src.raw" 16
qemu-img convert -O qcow2 "$T/src.raw" "$T/p.qcow2"
qemu-io -f qcow2 -c 'write -z 1M 128k' -c 'write -P 0x42 9M 12k' "$T/p.qcow2" >/dev/null
ok "plain qcow2 -> raw as qemu-img" same_as_qemu "$T/p.qcow2"
qemu-img convert -c -O qcow2 "$T/src.raw" "$T/z.qcow2"
ok "zlib qcow2 -> raw as qemu-img" same_as_qemu "$T/z.qcow2"
ok "and equal to the original" cmp "$T/v.raw" "$T/src.raw"
qemu-img convert -c -O qcow2 -o cluster_size=4k,compat=0.10 "$T/src.raw" "$T/z4.qcow2"
ok "zlib v2 qcow2 with 4K clusters -> raw" same_as_qemu "$T/z4.qcow2"

# chain: qcow2 over zlib qcow2 over raw pieces
qemu-img create -q -f qcow2 -b z.qcow2 -F qcow2 "$T/top.qcow2"
qemu-io -f qcow2 -c 'write -P 0x99 2M 70k' -c 'write -z 3M 64k' "$T/top.qcow2" >/dev/null
ok "overlay chain -> raw as qemu-img" same_as_qemu "$T/top.qcow2"
ok "overlay chain -> qcow2 -c, identical and clean" sh -c "
    $V convert -c -O qcow2 '$T/top.qcow2' '$T/flat.qcow2' &&
    qemu-img compare '$T/top.qcow2' '$T/flat.qcow2' && qemu-img check -q '$T/flat.qcow2'"

# recompress a compressed image, deterministic across thread counts
ok "zlib qcow2 -> qcow2 -c -t 1" $V convert -c -t 1 -O qcow2 "$T/z.qcow2" "$T/r1.qcow2"
ok "zlib qcow2 -> qcow2 -c -t 2" $V convert -c -t 2 -O qcow2 "$T/z.qcow2" "$T/r2.qcow2"
ok "identical bytes" cmp "$T/r1.qcow2" "$T/r2.qcow2"
ok "identical content" qemu-img compare "$T/z.qcow2" "$T/r1.qcow2"
ok "vbd-img compare agrees" $V compare "$T/z.qcow2" "$T/r1.qcow2"

# info: the fields qemu-img shows
fields='[."virtual-size", ."cluster-size", ."backing-filename", ."backing-filename-format",
         ."dirty-flag", ."format-specific".data.compat, ."format-specific".data."refcount-bits",
         ."format-specific".data.corrupt, ."format-specific".data."compression-type"]'
for img in top.qcow2 z4.qcow2; do
    $V info --json "$T/$img" >"$T/i.json"
    qemu-img info --output=json "$T/$img" >"$T/qi.json"
    is "$(jq -c "$fields" "$T/i.json")" "$(jq -c "$fields" "$T/qi.json")" "info $img: as qemu-img"
done
$V info --json -f qcow2 --backing-chain "$T/top.qcow2" >"$T/chain.json"
is "$(jq -c '[.[] | .format]' "$T/chain.json")" '["qcow2","qcow2"]' "backing chain listed"

# map: every extent as qemu-img map sees it
# (offsets only for data: qemu also shows them for allocated zero clusters)
ext='[.[] | [.start, .length, .data, .zero, (if .data then .offset else null end)]]'
for img in p.qcow2 z.qcow2; do
    $V map --json "$T/$img" >"$T/m.json"
    qemu-img map --output=json "$T/$img" >"$T/qm.json"
    is "$(jq -c "$ext" "$T/m.json")" "$(jq -c "$ext" "$T/qm.json")" "map $img: as qemu-img"
done
$V map --json "$T/top.qcow2" >"$T/m.json"
is "$(jq -c '[.[] | select(.data) | .depth] | unique' "$T/m.json")" "[0,1]" "map: data from both layers"

# write into qcow2
qemu-img create -q -f qcow2 "$T/w.qcow2" 32M
ok "write -P into qcow2" $V write -f qcow2 -P 0x6b "$T/w.qcow2" 100k 300k
ok "write -z over part of it" $V write -f qcow2 -z "$T/w.qcow2" 128k 64k
ok "qemu-io reads what we wrote" qemu-io -f qcow2 -c 'read -P 0x6b 100k 28k' \
    -c 'read -P 0 128k 64k' -c 'read -P 0x6b 192k 208k' "$T/w.qcow2"
ok "the image is clean" qemu-img check "$T/w.qcow2"
ok "write --stdin into a compressed cluster" sh -c "
    head -c 5000 /dev/urandom >'$T/r.bin' &&
    $V write -f qcow2 --stdin '$T/z.qcow2' 70000 5000 <'$T/r.bin' &&
    $V read -f qcow2 '$T/z.qcow2' 70000 5000 | cmp - '$T/r.bin'"
ok "still clean" qemu-img check "$T/z.qcow2"
ok "qemu-img reads it too" sh -c "qemu-img convert -O raw '$T/z.qcow2' '$T/all.raw' &&
    dd if='$T/all.raw' bs=5000 skip=14 count=1 2>/dev/null | cmp - '$T/r.bin'"
done_testing
