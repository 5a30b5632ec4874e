#!/bin/sh
# vbd-img info / map / compare / read / write / check on raw and qcow
# images: JSON that parses and agrees with qemu-img, qemu-img's exit codes,
# and byte ranges that qemu-io reads back.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-img.sh"
plan 44

V=$VBD_IMG
for c in create info convert check map compare read write; do
    $V $c --help >"$T/help.out" 2>&1
    is "$?:$(head -c 6 "$T/help.out")" "0:Usage:" "$c --help"
done
fails "unknown command" $V frobnicate
fails "unknown option" $V info --no-such-option "$T/x"

mkdata "$T/a.raw" 8

# info
ok "info --json raw" sh -c "$V info --json '$T/a.raw' >'$T/i.json'"
is "$(jget "$T/i.json" '.format + " " + (."virtual-size"|tostring) + " " + (."format-probed"|tostring)')" \
    "raw 8388608 true" "info: raw, size, probed"
is "$(jget "$T/i.json" '."actual-size"')" "$(qinfo "$T/a.raw" '."actual-size"')" \
    "info: disk usage agrees with qemu-img"
$V info -f raw --json "$T/a.raw" >"$T/i2.json"
is "$(jget "$T/i2.json" '."format-probed"')" false "info -f: not probed"
like "$($V info "$T/a.raw")" "file format: raw \(probed" "human info says probed"
fails "info of a missing file" $V info "$T/nope"
like "$(cat "$T/last.out")" "nope" "the message names the file"

# map: the data extents agree with qemu-img map
data_extents() { jq -c '[.[] | select(.data) | [.start, .length]]' "$1"; }
$V map --json "$T/a.raw" >"$T/m.json"
qemu-img map --output=json "$T/a.raw" >"$T/qm.json"
is "$(data_extents "$T/m.json")" "$(data_extents "$T/qm.json")" "raw: data extents as qemu-img map"
is "$(jq '[.[].length] | add' "$T/m.json")" 8388608 "raw: extents cover the disk"
qemu-img create -q -f qcow "$T/p.qcow" 16M
qemu-io -f qcow -c 'write -P 1 0 64k' -c 'write -P 2 1M 8k' -c 'write -P 3 12M 1M' "$T/p.qcow" >/dev/null
$V map --json "$T/p.qcow" >"$T/m2.json"
qemu-img map --output=json "$T/p.qcow" >"$T/qm2.json"
with_offset() { jq -c '[.[] | select(.data) | [.start, .length, .offset]]' "$1"; }
is "$(with_offset "$T/m2.json")" "$(with_offset "$T/qm2.json")" "qcow: data extents and host offsets as qemu-img map"
like "$($V map "$T/p.qcow" | sed -n 2p)" "^0 +0x10000 +0x[0-9a-f]+ +.*p.qcow$" "human map: first data row"

# compare
cp "$T/a.raw" "$T/b.raw"
ok "compare identical" $V compare "$T/a.raw" "$T/b.raw"
printf 'X' | dd of="$T/b.raw" bs=1 seek=5000000 conv=notrunc 2>/dev/null
$V compare "$T/a.raw" "$T/b.raw" >"$T/c.out"
is "$?" 1 "compare different: exit 1"
like "$(cat "$T/c.out")" "mismatch at offset 5000000" "first differing offset printed"
$V compare "$T/a.raw" "$T/nope" >/dev/null 2>&1
is "$?" 2 "compare error: exit 2"
cp "$T/a.raw" "$T/long.raw"; truncate -s 9M "$T/long.raw"
ok "different size, zero tail: identical" $V compare "$T/a.raw" "$T/long.raw"
$V compare -s "$T/a.raw" "$T/long.raw" >/dev/null
is "$?" 1 "strict: sizes differ"
printf 'Y' | dd of="$T/long.raw" bs=1 seek=9000000 conv=notrunc 2>/dev/null
$V compare "$T/a.raw" "$T/long.raw" >"$T/c.out"
is "$?:$(cat "$T/c.out" | tail -n1)" "1:Content mismatch at offset 9000000!" "non-zero tail differs"
qemu-img convert -O qcow "$T/a.raw" "$T/a.qcow"
ok "compare raw with qcow" $V compare -f raw -F qcow "$T/a.raw" "$T/a.qcow"

# read
$V read "$T/a.raw" 1000 5000 >"$T/r.out"
dd if="$T/a.raw" bs=1 skip=1000 count=5000 2>/dev/null >"$T/r.want"
ok "read to stdout: the right bytes" cmp "$T/r.out" "$T/r.want"
like "$($V read --dump -f raw "$T/a.raw" 0 16)" "^00000000: ( [0-9a-f]{2}){16}  .{16}$" "read --dump: a hex line"
fails "read past the end" $V read "$T/a.raw" 8M 1

# write
qemu-img create -q -f qcow2 "$T/w.qcow2" 4M
fails "write without -f refused" $V write -P 7 "$T/w.raw" 0 1
like "$(cat "$T/last.out")" "never guessed" "and says why"
qemu-img create -q -f raw "$T/w.raw" 4M
ok "write -P to raw" $V write -f raw -P 0xa5 "$T/w.raw" 4095 10000
ok "qemu-io reads the pattern" qemu-io -f raw -c 'read -P 0xa5 4095 10000' -c 'read -P 0 0 4095' "$T/w.raw"
head -c 3000 /dev/urandom >"$T/in.bin"
ok "write --stdin" sh -c "$V write -f raw --stdin '$T/w.raw' 1M 3000 <'$T/in.bin'"
$V read -f raw "$T/w.raw" 1M 3000 >"$T/in.back"
ok "stdin bytes read back" cmp "$T/in.bin" "$T/in.back"
fails "write --stdin with short input" sh -c "head -c 10 /dev/zero | $V write -f raw --stdin '$T/w.raw' 0 100"
ok "write -z" $V write -f raw -z "$T/w.raw" 4096 4096
ok "zeroed range reads zeros" $V read -f raw -P 0 "$T/w.raw" 4096 4096
fails "write to qcow (read-only format) refused" $V write -f qcow -P 1 "$T/a.qcow" 0 1

# check on formats without refcounts
ok "check raw: clean" $V check "$T/a.raw"
$V check --json "$T/a.qcow" >"$T/ck.json"
is "$?:$(jget "$T/ck.json" '.corruptions + .leaks')" "0:0" "check --json qcow: exit 0, no problems"
done_testing
