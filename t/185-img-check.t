#!/bin/sh
# vbd-img check: qemu-img check's exit codes on real damage.  A clean image
# is 0; a leaked cluster (refcount 1, no reference) 3, and -r leaks repairs
# it to 0; a refcount too low for its references (corruption) 2; an image
# that cannot be opened 1.  qemu-img check confirms each diagnosis.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-img.sh"
plan 17

V=$VBD_IMG
qemu-img create -q -f qcow2 "$T/a.qcow2" 16M
qemu-io -f qcow2 -c 'write -P 1 0 1M' -c 'write -P 2 8M 64k' "$T/a.qcow2" >/dev/null

ok "clean image: exit 0" $V check "$T/a.qcow2"
$V check --json "$T/a.qcow2" >"$T/c.json"
is "$(jq -c '[.corruptions, .leaks, ."check-errors"]' "$T/c.json")" "[0,0,0]" "--json: no problems"
is "$(jq -r .format "$T/c.json")" qcow2 "--json names the format"

# refcount block entry of host cluster N (16-bit refcounts, one block)
rb_of() { perl -e 'open F,"<",$ARGV[0]; seek F,48,0; read F,$b,8; $rt=unpack("Q>",$b);
                   seek F,$rt,0; read F,$b,8; print unpack("Q>",$b)' "$1"; }
setref() { patch "$1" $(( $(rb_of "$1") + 2 * $2 )) n "$3"; }

# a leak: one more cluster at the end of the file with refcount 1
cp "$T/a.qcow2" "$T/leak.qcow2"
n=$(( $(stat -c %s "$T/leak.qcow2") / 65536 ))
truncate -s $(( (n + 1) * 65536 )) "$T/leak.qcow2"
setref "$T/leak.qcow2" "$n" 1
qcheck "$T/leak.qcow2"; is "$?" 3 "qemu-img check sees the leak (exit 3)"
$V check "$T/leak.qcow2" >"$T/out" 2>&1
is "$?" 3 "vbd-img check: leaks only, exit 3"
like "$(cat "$T/out")" "1 leaked clusters" "says how many"
$V check --json "$T/leak.qcow2" >"$T/c.json" 2>/dev/null
is "$(jq -c '[.corruptions, .leaks]' "$T/c.json")" "[0,1]" "--json: one leak"
fails "-r leaks without -f refused" $V check -r leaks "$T/leak.qcow2"
$V check -r leaks -f qcow2 "$T/leak.qcow2" >"$T/out" 2>&1
is "$?" 0 "-r leaks repairs it: exit 0"
like "$(cat "$T/out")" "repaired" "says it repaired"
ok "qemu-img check: clean after the repair" qemu-img check "$T/leak.qcow2"
ok "data intact after the repair" qemu-io -f qcow2 -c 'read -P 1 0 1M' -c 'read -P 2 8M 64k' "$T/leak.qcow2"

# a corruption: the refcount of a data cluster dropped to 0
cp "$T/a.qcow2" "$T/bad.qcow2"
host=$(qemu-img map --output=json "$T/bad.qcow2" | jq '[.[] | select(.data)][0].offset')
setref "$T/bad.qcow2" $((host / 65536)) 0
qcheck "$T/bad.qcow2"; is "$?" 2 "qemu-img check sees the corruption (exit 2)"
$V check "$T/bad.qcow2" >"$T/out" 2>&1
is "$?" 2 "vbd-img check: corruption, exit 2"
like "$(cat "$T/out")" "errors were found" "says so"

# cannot open: exit 1
printf 'QFI\373\0\0\0\3garbage' >"$T/junk.qcow2"
$V check -f qcow2 "$T/junk.qcow2" >/dev/null 2>&1
is "$?" 1 "unopenable image: exit 1"
$V check "$T/nope.qcow2" >/dev/null 2>&1
is "$?" 1 "missing file: exit 1"
done_testing
