#!/bin/sh
# disk opened O_DIRECT (dd iflag=direct, fio, qemu cache=none, the bench's
# random reader): whole-disk and scattered 4 KiB reads equal `qemu-img
# convert -O raw` for raw, qcow2 and compressed qcow2; 4 threads of random
# reads succeed; a guest write shows at once through O_DIRECT and to a
# buffered reader that had the block cached; on a --writable tree a write
# through the view is read back with O_DIRECT.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-fuse.sh"
need_cmd qemu-io qemu-utils
PROBE=$VBDFS_BUILD/t/helpers/fuseprobe
plan 13

# raw, qcow2 and compressed qcow2 images with one pattern (lib-fuse.sh)
pattern_images

# blocks FILE FLAG : 4 KiB blocks 0, 256, 257, 1280, 3840..3843 of FILE
# read with dd FLAG (iflag=direct or none), one file
blocks() {
    for b in 0 256 257 1280 3840 3841 3842 3843; do
        dd if="$1" bs=4k skip=$b count=1 $2 status=none
    done
}

start_tree
n=0
for img in a.raw:raw b.qcow2:qcow2 c.qcow2:qcow2; do
    f=${img%%:*}; fmt=${img#*:}; n=$((n + 1))
    tcmd add $n 51712 "$fmt" "$T/$f"
    # the tree holds the image open (locked): qemu-img must force sharing
    qemu-img convert -U -O raw "$T/$f" "$T/$f.expect"
    D=$M/$n-51712/disk
    ok "$f: dd iflag=direct of the whole disk equals the image" \
        sh -c "dd if='$D' bs=1M iflag=direct status=none | cmp - '$T/$f.expect'"
    blocks "$T/$f.expect" "" >"$T/$f.blocks"
    blocks "$D" iflag=direct >"$T/$f.got"
    ok "$f: 4 KiB O_DIRECT reads at scattered offsets equal the image's" \
        cmp "$T/$f.got" "$T/$f.blocks"
done
ok "4-thread random O_DIRECT reads succeed" "$PROBE" randread "$M/2-51712/disk" 2000 4

# A guest write shows at once through O_DIRECT, and to a buffered reader.
exec 3<"$M/1-51712/disk"
dd if="$M/1-51712/disk" bs=4k skip=1000 count=1 status=none >/dev/null  # cache it
tcmd pwrite 1-51712 4096000 4096 0x77
printf '\167%.0s' $(seq 4096) >"$T/sevens"
ok "an O_DIRECT read sees the guest's write at once" \
    sh -c "dd if='$M/1-51712/disk' bs=4k skip=1000 count=1 iflag=direct status=none | cmp -s - '$T/sevens'"
ok "a buffered reader open since before sees it too" \
    wait_for 5 sh -c "dd bs=4k skip=1000 count=1 status=none <&3 | cmp -s - '$T/sevens'"
exec 3<&-
ok "clean stop" stop_tree

# --writable: O_DIRECT keeps the page-cache path; a write through the view
# is read back by an O_DIRECT reader.
start_tree -w
tcmd add 1 51712 raw "$T/a.raw"
ok "write through the view (fsync)" \
    sh -c "printf 'direct' | dd of='$M/1-51712/disk' bs=1 seek=8388608 conv=notrunc,fsync status=none"
is "$(dd if="$M/1-51712/disk" bs=4k skip=2048 count=1 iflag=direct status=none | head -c 6)" "direct" \
    "an O_DIRECT reader reads it back"
ok "clean stop (writable)" stop_tree
done_testing
