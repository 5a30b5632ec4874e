#!/bin/sh
# vbd-img convert: raw/qcow sources to raw and qcow2 (plain and -c).
# qemu-img is the judge: outputs check clean, compare identical, and the
# compressed output is about the size of qemu-img's.  Thread count does not
# change a single byte; zeros and holes are not written.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-img.sh"
plan 31

V=$VBD_IMG
mkdata "$T/src.raw" 24

ok "convert -c -t 1" $V convert -c -t 1 -O qcow2 "$T/src.raw" "$T/c1.qcow2"
ok "convert -c -t 2" $V convert -c -t 2 -O qcow2 "$T/src.raw" "$T/c2.qcow2"
ok "convert -c -t 3 (more threads than CPUs)" $V convert -c -t 3 -O qcow2 "$T/src.raw" "$T/c3.qcow2"
ok "-t 1 and -t 2 give identical bytes" cmp "$T/c1.qcow2" "$T/c2.qcow2"
ok "-t 1 and -t 3 give identical bytes" cmp "$T/c1.qcow2" "$T/c3.qcow2"
ok "qemu-img check: compressed output clean" qemu-img check "$T/c1.qcow2"
ok "qemu-img compare: identical to the source" qemu-img compare "$T/src.raw" "$T/c1.qcow2"
qemu-img map --output=json "$T/c1.qcow2" >"$T/map.json"
is "$(jget "$T/map.json" '[.[] | select(.data and (has("offset") | not))] | length > 0')" true \
    "qemu-img sees compressed clusters"
qemu-img convert -c -O qcow2 "$T/src.raw" "$T/q.qcow2"
ours=$(stat -c %s "$T/c1.qcow2"); theirs=$(stat -c %s "$T/q.qcow2")
ok "size within 1.02x of qemu-img -c ($ours vs $theirs)" test $((ours * 100)) -le $((theirs * 102))
is "$(qinfo "$T/c1.qcow2" '."format-specific".data.compat')" 1.1 "output is compat 1.1"

# options: small clusters, v2, 8-bit refcounts
ok "convert -c -o cluster_size=4K,compat=0.10" \
    $V convert -c -o cluster_size=4K,compat=0.10 -O qcow2 "$T/src.raw" "$T/c4k.qcow2"
ok "4K v2 compressed output checks clean" qemu-img check "$T/c4k.qcow2"
ok "and is identical to the source" qemu-img compare "$T/src.raw" "$T/c4k.qcow2"
ok "convert -o cluster_size=512,refcount_bits=8 (plain)" \
    $V convert -o cluster_size=512,refcount_bits=8 -O qcow2 "$T/src.raw" "$T/p512.qcow2"
ok "512-byte clusters, 8-bit refcounts check clean" qemu-img check "$T/p512.qcow2"
ok "plain qcow2 output identical to the source" qemu-img compare "$T/src.raw" "$T/p512.qcow2"

ok "convert -c with 1-bit refcounts (no shared host clusters)" sh -c "
    $V convert -c -o refcount_bits=1,cluster_size=4K -O qcow2 '$T/src.raw' '$T/rc1.qcow2' &&
    qemu-img check -q '$T/rc1.qcow2' && qemu-img compare -q '$T/src.raw' '$T/rc1.qcow2'"

# raw output is sparse: holes and zero blocks are not written
ok "convert -O raw" $V convert -O raw "$T/src.raw" "$T/out.raw"
ok "raw output equals the source" cmp "$T/src.raw" "$T/out.raw"
# ext4 may preallocate a little past what was written (delayed allocation
# settles later): allow 1 MiB of slack, far below the holes' size.
ok "raw output no more allocated than the source" \
    test "$(stat -c %b "$T/out.raw")" -le $(( $(stat -c %b "$T/src.raw") + 2048 ))

# qcow v1 (compressed, with a backing file) -> qcow2 -c and raw
qemu-img convert -c -O qcow "$T/src.raw" "$T/s.qcow"
qemu-img create -q -f qcow -b s.qcow -F qcow "$T/ov.qcow"
qemu-io -f qcow -c 'write -P 0x5a 3M 100k' "$T/ov.qcow" >/dev/null
ok "qcow chain -> raw" $V convert -O raw "$T/ov.qcow" "$T/ov.raw"
ok "qemu-img compare: qcow chain and raw output identical" qemu-img compare "$T/ov.qcow" "$T/ov.raw"
ok "qcow chain -> qcow2 -c, identical" sh -c "$V convert -c -O qcow2 '$T/ov.qcow' '$T/ov.qcow2' &&
    qemu-img compare '$T/ov.qcow' '$T/ov.qcow2' && qemu-img check '$T/ov.qcow2'"

# progress only when asked (never on a non-tty by default)
$V convert -p -O raw "$T/src.raw" "$T/p.raw" 2>"$T/p.err"
is "$(wc -c <"$T/p.err")" 0 "-p prints nothing when stderr is not a terminal"
$V convert --progress=always -O raw "$T/src.raw" "$T/p.raw" 2>"$T/p.err"
like "$(tr '\r' '\n' <"$T/p.err" | tail -n 2 | head -n 1)" '100.00/100%' "--progress=always reaches 100%"

# errors
fails "-c with raw output refused" $V convert -c -O raw "$T/src.raw" "$T/x.raw"
cp "$T/src.raw" "$T/self.raw"
fails "output onto the source refused" $V convert -O raw "$T/self.raw" "$T/self.raw"
ok "and the source is intact" cmp "$T/self.raw" "$T/src.raw"
fails "output onto a backing file refused" $V convert -O qcow2 "$T/ov.qcow" "$T/s.qcow"
fails "output to a device refused" $V convert -O raw "$T/src.raw" /dev/null
ok "/dev/null is still there" test -c /dev/null
done_testing
