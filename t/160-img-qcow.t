#!/bin/sh
# qcow (version 1) read-only driver: images made by qemu-img (plain,
# compressed, with backing files, both cluster geometries) read exactly as
# qemu-img reads them; a blktap image with a little-endian L1 table reads
# right; hostile headers are refused with a message, never a crash.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-img.sh"
plan 34

V=$VBD_IMG
# same_as_qemu IMG : vbd-img and qemu-img produce the same raw image
same_as_qemu() {
    rm -f "$T/q.raw" "$T/v.raw"
    qemu-img convert -O raw "$1" "$T/q.raw" && $V convert -f qcow -O raw "$1" "$T/v.raw" &&
        cmp "$T/q.raw" "$T/v.raw"
}

# plain image: default geometry (4 KiB clusters, 512-entry L2 tables)
qemu-img create -q -f qcow "$T/p.qcow" 40M
qemu-io -f qcow -c 'write -P 0x11 0 100k' -c 'write -P 0x22 10M 1M' \
    -c 'write -P 0x33 40956k 4k' -c 'write -P 0x44 5000 3000' "$T/p.qcow" >/dev/null
ok "plain image reads as qemu-img reads it" same_as_qemu "$T/p.qcow"
ok "read -P finds qemu-io's pattern" $V read -f qcow -P 0x22 "$T/p.qcow" 10M 1M
ok "unaligned pattern inside a cluster" $V read -f qcow -P 0x44 "$T/p.qcow" 5000 3000
ok "unallocated reads zeros" $V read -f qcow -P 0 "$T/p.qcow" 20M 1M
fails "pattern mismatch detected" $V read -f qcow -P 0x11 "$T/p.qcow" 100k 1
like "$(cat "$T/last.out")" "mismatch at offset 102400" "mismatch names the offset"
$V info --json "$T/p.qcow" >"$T/info.json"
is "$(jget "$T/info.json" '.format + " " + (."virtual-size"|tostring) + " " + (."cluster-size"|tostring)')" \
    "qcow 41943040 4096" "info: format, size, cluster size"
is "$(jget "$T/info.json" '."format-probed"')" true "info says the format was probed"
is "$(qinfo "$T/p.qcow" '."cluster-size"')" 4096 "qemu-img agrees on the cluster size"

# compressed clusters (qemu-img can write compressed qcow v1)
mkdata "$T/data.raw" 8
qemu-img convert -c -O qcow "$T/data.raw" "$T/c.qcow"
ok "compressed image reads as qemu-img reads it" same_as_qemu "$T/c.qcow"
ok "and as the original data" cmp "$T/v.raw" "$T/data.raw"
$V map --json -f qcow "$T/c.qcow" >"$T/map.json"
is "$(jget "$T/map.json" '[.[] | select(.compressed)] | length > 0')" true "map shows compressed extents"
ok "compressed image: vbd-img compare with the source" $V compare -f qcow -F raw "$T/c.qcow" "$T/data.raw"

# backing files: raw and qcow, with 512-byte clusters (qemu-img's default
# for qcow overlays)
qemu-img create -q -f qcow -b data.raw -F raw "$T/ov.qcow"
qemu-io -f qcow -c 'write -P 0x55 1M 3k' -c 'write -P 0x66 7M 1M' "$T/ov.qcow" >/dev/null
is "$(qinfo "$T/ov.qcow" '."cluster-size"')" 512 "overlay has 512-byte clusters"
ok "overlay on raw reads as qemu-img reads it" same_as_qemu "$T/ov.qcow"
qemu-img create -q -f qcow -b ov.qcow -F qcow "$T/ov2.qcow"
qemu-io -f qcow -c 'write -P 0x77 2M 5k' "$T/ov2.qcow" >/dev/null
ok "two-level qcow chain reads as qemu-img reads it" same_as_qemu "$T/ov2.qcow"
$V info --json --backing-chain "$T/ov2.qcow" >"$T/chain.json"
is "$(jget "$T/chain.json" '[.[].format] | join(",")')" "qcow,qcow,raw" "info --backing-chain lists the chain"
$V map --json "$T/ov2.qcow" >"$T/map2.json"
is "$(jget "$T/map2.json" '[.[] | select(.data) | .depth] | unique | join(",")')" "0,1,2" \
    "map shows data at depths 0, 1 and 2"

# blktap image: Xen extension, L1 table in little endian (old tapdisk)
xen_image() {  # FILE FLAGS L1PACK
    rm -f "$1"; truncate -s 16384 "$1"
    patch "$1" 0 N 0x514649fb; patch "$1" 4 N 1
    patch "$1" 24 'Q>' 4194304; patch "$1" 32 C 12; patch "$1" 33 C 9
    patch "$1" 40 'Q>' 4096
    patch "$1" 48 N 0x58454efb; patch "$1" 56 N 512; patch "$1" 60 N "$2"
    patch "$1" 4096 "$3" 8192          # L1[0] -> L2 table at 8192
    patch "$1" 8192 'Q>' 12288         # L2[0] -> data cluster at 12288
    perl -e 'print "\x5a" x 4096' | dd of="$1" bs=4096 seek=3 conv=notrunc 2>/dev/null
}
xen_image "$T/xle.qcow" 0 'Q<'
ok "blktap little-endian L1: data found" $V read -f qcow -P 0x5a "$T/xle.qcow" 0 4096
ok "blktap little-endian L1: rest is zeros" $V read -f qcow -P 0 "$T/xle.qcow" 4096 4190208
xen_image "$T/xbe.qcow" 2 'Q>'
ok "blktap big-endian L1 (flag 0x02) reads as qemu-img reads it" same_as_qemu "$T/xbe.qcow"

# a 1 PiB sparse image (64 KiB clusters, 8192-entry L2 tables): map is quick
rm -f "$T/big.qcow"; truncate -s $((48 + 16 * 1048576)) "$T/big.qcow"
patch "$T/big.qcow" 0 NNQ\>NNQ\>CCnNQ\> 0x514649fb 1 0 0 0 1125899906842624 16 13 0 0 48
ok "map of a 1 PiB sparse image finishes" timeout 20 $V map --json -f qcow "$T/big.qcow"
is "$(jq -c '[.[0].length, .[0].data]' "$T/last.out")" "[1125899906842624,false]" "one unallocated extent"

# hostile headers
refused() {  # NAME PATTERN : the open fails with a message matching PATTERN
    if $V info -f qcow "$T/h.qcow" >"$T/h.out" 2>&1; then _result 1 "$1"; diag "opened"
    else like "$(cat "$T/h.out")" "$2" "$1"; fi
}
fresh() { cp "$T/p.qcow" "$T/h.qcow"; }
fresh; patch "$T/h.qcow" 32 C 8;  refused "cluster_bits 8 refused" "cluster_bits 8"
fresh; patch "$T/h.qcow" 32 C 17; refused "cluster_bits 17 refused" "cluster_bits 17"
fresh; patch "$T/h.qcow" 33 C 5;  refused "l2_bits 5 refused" "l2_bits 5"
fresh; patch "$T/h.qcow" 33 C 14; refused "l2_bits 14 refused" "l2_bits 14"
fresh; patch "$T/h.qcow" 24 'Q>' 18446744073709551615; refused "size overflow refused" "too large"
fresh; patch "$T/h.qcow" 40 'Q>' 1099511627776; refused "L1 beyond the file refused" "L1 table.*outside"
fresh; patch "$T/h.qcow" 36 N 1;  refused "encryption refused" "encrypted"
fresh; patch "$T/h.qcow" 48 'Q>' 0x7fffffffff00; refused "L2 table beyond the file refused" "L2 table.*outside"
fresh; patch "$T/h.qcow" 8 'Q>' 48; patch "$T/h.qcow" 16 N 5000
refused "overlong backing name refused" "backing file name length"
# a compressed cluster whose length runs past the end: open works, the read fails
cp "$T/c.qcow" "$T/h.qcow"
l2=$(perl -e 'open F,"<",$ARGV[0]; seek F,40,0; read F,$b,8; $l1=unpack("Q>",$b);
              seek F,$l1,0; read F,$b,8; print unpack("Q>",$b)' "$T/h.qcow")
# bit 63: compressed; length 4000 in bits 51-62; offset 0x7fffffff
patch "$T/h.qcow" "$l2" 'Q>' 0xfd0000007fffffff
fails "bad compressed cluster: read fails" $V read -f qcow -P 0 "$T/h.qcow" 0 4096
like "$(cat "$T/last.out")" "outside the file|Input/output" "with a message"
done_testing
