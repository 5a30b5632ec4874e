#!/bin/sh
# disk: the raw view equals `qemu-img convert -O raw` for raw, qcow2,
# compressed qcow2 and a backing chain; SEEK_DATA/SEEK_HOLE agree with
# `qemu-img map`; map lists the same extents; guest writes show up live,
# even through a file that stays open; --writable writes, punches holes and
# flushes through the image; a read-only device stays read-only.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-fuse.sh"
need_cmd qemu-io qemu-utils
need_cmd jq jq
PROBE=$VBDFS_BUILD/t/helpers/fuseprobe
plan 29

# raw, qcow2 and compressed qcow2 images with one pattern (lib-fuse.sh)
pattern_images
qemu-img create -q -f qcow2 -b b.qcow2 -F qcow2 "$T/d.qcow2" && \
    qemu-io -f qcow2 -c 'write -P 0x55 1088k 64k' -c 'write -P 0x66 8M 128k' "$T/d.qcow2" >/dev/null
diag "compressed clusters: $(qemu-img map --output=json "$T/c.qcow2" | jq '[.[] | select(.data and (.offset == null))] | length') extents without offset"

start_tree
# The images are open (locked) in the tree while qemu-img reads them, so it
# forces sharing (-U), as it must for any image in use; nothing writes them
# meanwhile.  b.qcow2 is d.qcow2's backing file: it is added read-only,
# since a writable image and a backing file of the same file cannot be
# open at once (QEMU's locks refuse it, and so do ours).
# data extents of an image per qemu-img map, adjacent ones merged
qmap() {
    qemu-img map -U --output=json "$1" |
        jq -r '.[] | select(.data) | "\(.start) \(.length)"' |
        awk 'NR > 1 && $1 == s + l { l += $2; next } NR > 1 { print s, l } { s = $1; l = $2 } END { if (NR) print s, l }'
}
n=0
for img in a.raw:raw b.qcow2:qcow2 c.qcow2:qcow2 d.qcow2:qcow2; do
    f=${img%%:*}; fmt=${img#*:}; n=$((n + 1))
    ro=; [ "$f" = b.qcow2 ] && ro="- - ro"
    tcmd add $n 51712 "$fmt" "$T/$f" $ro
    qemu-img convert -U -O raw "$T/$f" "$T/$f.expect"
    ok "$f: disk equals qemu-img convert -O raw" cmp "$M/$n-51712/disk" "$T/$f.expect"
    is "$("$PROBE" seekmap "$M/$n-51712/disk" | tr '\n' ' ')" "$(qmap "$T/$f" | tr '\n' ' ')" \
        "$f: SEEK_DATA/SEEK_HOLE agree with qemu-img map"
done
# map: same data extents, top layer vs backing file named per line
mapf=$(cat "$M/4-51712/map")
is "$(printf '%s\n' "$mapf" | sed -n 1p)" "Offset          Length          Mapped to       File" "map header as qemu-img map"
like "$(printf '%s\n' "$mapf" | grep "$T/d.qcow2")" "^0x110000 +0x10000 +0x[0-9a-f]+ +$T/d.qcow2" \
    "map: overlay extent from the overlay file"
like "$(printf '%s\n' "$mapf" | grep "^0 ")" "^0 +0x10000 +0x[0-9a-f]+ +$T/b.qcow2$" "map: backing extent from the backing file"
like "$(cat "$M/3-51712/map")" "compressed" "map marks compressed data"
is "$(jq -r '.images | map(.format + ":" + (.path | split("/") | last)) | join(" ")' "$M/4-51712/info.json")" \
    "qcow2:d.qcow2 qcow2:b.qcow2" "info.json lists the backing chain"
like "$(grep '^image0.compression' "$M/3-51712/info")" "zlib|none" "info: compression line"

# cp --sparse=always of the view stays sparse
cp --sparse=always "$M/2-51712/disk" "$T/copy.raw"
ok "sparse copy has the same bytes" cmp "$T/copy.raw" "$T/b.qcow2.expect"
is "$(( $(stat -c %b "$T/copy.raw") * 512 < 4 * 1048576 ))" 1 "and stays sparse"

# Live: a guest write shows, also through a file opened before it.
exec 3<"$M/1-51712/disk"
dd if="$M/1-51712/disk" bs=4k skip=1000 count=1 status=none >/dev/null  # cache it
tcmd pwrite 1-51712 4096000 4096 0x77
printf '\167%.0s' $(seq 4096) >"$T/sevens"
ok "a new open sees the guest's write" wait_for 5 sh -c "dd if='$M/1-51712/disk' bs=4k skip=1000 count=1 status=none | cmp -s - '$T/sevens'"
ok "a file open since before sees it too" wait_for 5 sh -c "dd bs=4k skip=1000 count=1 status=none <&3 | cmp -s - '$T/sevens'"
exec 3<&-
ok "clean stop" stop_tree

# --writable: writes go through the image; punch hole; fsync; ro devices.
start_tree -w
tcmd add 1 51712 raw "$T/a.raw"
tcmd add 2 51712 qcow2 "$T/b.qcow2"
tcmd add 3 51712 qcow2 "$T/c.qcow2" - - ro
is "$(stat -c %a "$M/2-51712/disk") $(stat -c %a "$M/3-51712/disk")" "600 400" "writable disk 0600, read-only device 0400"
ok "write into a qcow2 through the view (fsync)" sh -c "printf 'hello vbdfs' | dd of='$M/2-51712/disk' bs=1 seek=3145728 conv=notrunc,fsync status=none"
fails "write past the end" sh -c "printf x | dd of='$M/2-51712/disk' bs=1 seek=16777216 conv=notrunc status=none"
fails "writing a read-only device" sh -c "printf x | dd of='$M/3-51712/disk' conv=notrunc status=none"
ok "punch a hole in the raw image" fallocate --punch-hole --keep-size -o 1048576 -l 65536 "$M/1-51712/disk"
ok "clean stop (writable)" stop_tree
ok "qemu-io reads the write from the qcow2" qemu-io -f qcow2 -c 'read -v 3145728 11' "$T/b.qcow2"
like "$(cat "$T/last.out")" "hello.vbdfs" "the bytes written"
ok "qemu-img check is clean" qemu-img check -q "$T/b.qcow2"
ok "punched range reads as zeros" qemu-io -f raw -c 'read -P 0 1M 64k' -c 'read -P 0x22 1088k 128k' "$T/a.raw"
done_testing
