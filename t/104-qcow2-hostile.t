#!/bin/sh
# Hostile qcow2 images, crafted from valid qemu-img images by patching
# bytes: each is refused at open or fails the one I/O with EIO, with a
# message naming the problem.  Never a crash (also run under make asan).
. "$(dirname "$0")/lib.sh"
need_cmd qemu-img qemu-utils
need_cmd qemu-io qemu-utils
IMGIO=$VBDFS_BUILD/t/helpers/imgio
plan 73

QP=$VBDFS_BUILD/t/helpers/qpatch
W() { case $1 in Q) echo 8;; I) echo 4;; H) echo 2;; B) echo 1;; esac; }
patch() { "$QP" "$1" set "$2" "$(W "$3")" "$4"; }   # FILE OFF Q|I|B VALUE
field() { "$QP" "$1" get "$2" "$(W "$3")" ${4:-}; }  # FILE OFF Q|I|B [MASK]

# open must fail (exit 2) with a message matching REGEX
refused() { # name image regex
    "$IMGIO" -r -f qcow2 "$2" info >"$T/out" 2>"$T/err"; rc=$?
    is "$rc" 2 "$1: refused at open"
    like "$(cat "$T/err")" "$3" "$1: message says so"
}
# open works but the read of OFF LEN fails with EIO and a message
io_fails() { # name image off len regex
    "$IMGIO" -r -f qcow2 "$2" "dump $3 $4" >/dev/null 2>"$T/err"; rc=$?
    is "$rc" 1 "$1: the read fails"
    like "$(cat "$T/err")" "Input/output error" "$1: with EIO"
    like "$(cat "$T/err")" "$5" "$1: message names the problem"
}

base=$T/base.qcow2
qemu-img create -q -f qcow2 "$base" 4M
qemu-io -f qcow2 -c 'write -P 0x61 0 1M' "$base" >/dev/null
mk() { cp "$base" "$T/$1.qcow2"; echo "$T/$1.qcow2"; }
L1=$(field "$base" 40 Q)
RT=$(field "$base" 48 Q)

f=$(mk short); "$QP" "$f" truncate 50
refused "truncated to 50 bytes" "$f" "too short"
f=$(mk trunc_l1); "$QP" "$f" truncate $((L1 + 4))
refused "truncated inside the L1 table" "$f" "L1 table extends past the end"
f=$(mk trunc_data); "$QP" "$f" truncate -600000
io_fails "truncated data clusters" "$f" 524288 65536 "invalid data cluster offset"

f=$(mk l1_eof); patch "$f" 40 Q 0x40000000
refused "L1 offset past EOF" "$f" "L1 table extends past the end"
f=$(mk l1_unal); patch "$f" 40 Q $((L1 + 512))
refused "L1 offset unaligned" "$f" "L1 table offset 0x[0-9a-f]+ is not cluster-aligned"
f=$(mk l1_huge); patch "$f" 36 I 0x10000000
refused "huge l1_size" "$f" "L1 table too large"
f=$(mk l1_small); patch "$f" 36 I 0
refused "l1_size too small for the disk" "$f" "L1 table is too small"
f=$(mk rt_eof); patch "$f" 48 Q 0x7fff0000
refused "refcount table past EOF" "$f" "refcount table extends past the end"
f=$(mk rt_huge); patch "$f" 56 I 0x100000
refused "huge refcount_table_clusters" "$f" "reference count table too large"
f=$(mk rt_zero); patch "$f" 56 I 0
refused "no refcount table" "$f" "does not contain a reference count table"
f=$(mk overlap); patch "$f" 40 Q "$RT"
refused "L1 table on the refcount table" "$f" "L1 table overlaps the refcount table"
f=$(mk rb_bad); patch "$f" "$RT" Q 0x1234567
refused "refcount block offset unaligned" "$f" "refcount block 0 offset 0x1234567 invalid"

f=$(mk hl); patch "$f" 100 I 0x100000
refused "header_length absurd" "$f" "header exceeds cluster size"
f=$(mk hl2); patch "$f" 100 I 100
refused "header_length below 104" "$f" "invalid header length 100"
f=$(mk cb); patch "$f" 20 I 30
refused "cluster_bits 30" "$f" "unsupported cluster size"
f=$(mk ver); patch "$f" 4 I 4
refused "version 4" "$f" "unsupported qcow2 version 4"

f=$(mk incompat); patch "$f" 72 Q 0x20
refused "unknown incompatible bit" "$f" "unsupported incompatible feature bit 5"
f=$(mk crypt); patch "$f" 32 I 1
refused "AES encryption" "$f" "encrypted images \\(AES\\)"
f=$(mk extl2); patch "$f" 72 Q 0x10
refused "extended L2" "$f" "extended L2 entries"
f=$(mk zstd); patch "$f" 72 Q 0x8; patch "$f" 104 B 1
refused "zstd compression" "$f" "compression type zstd"

# L1 entry 0 pointing past EOF / unaligned; L2 entry with reserved bits
f=$(mk l2_eof); patch "$f" "$L1" Q 0x8000000040000000
io_fails "L2 table past EOF" "$f" 0 4096 "L1 entry 0 .* is invalid"
f=$(mk l2_unal); "$QP" "$f" add "$L1" 8 4096
io_fails "L2 table unaligned" "$f" 0 4096 "L1 entry 0 .* is invalid"
L2=$(field "$base" "$L1" Q 0xffffffffffffff)
f=$(mk l2_res); "$QP" "$f" or "$L2" 8 0x100
io_fails "L2 entry reserved bits" "$f" 0 4096 "reserved bits set"

# compressed descriptors: outside the file, and garbage data
qemu-img convert -c -O qcow2 "$base" "$T/c.qcow2"
cL1=$(field "$T/c.qcow2" 40 Q); cL2=$(field "$T/c.qcow2" "$cL1" Q 0xffffffffffffff)
cp "$T/c.qcow2" "$T/c_out.qcow2"
"$QP" "$T/c_out.qcow2" andnot "$cL2" 8 0x3fffffffffffff   # offset bits 0..53
"$QP" "$T/c_out.qcow2" or "$cL2" 8 0x3fffffff00
io_fails "compressed cluster outside the file" "$T/c_out.qcow2" 0 4096 "points outside the file"
coff=$(field "$T/c.qcow2" "$cL2" Q 0x3fffffffffffff)
cp "$T/c.qcow2" "$T/c_junk.qcow2"; patch "$T/c_junk.qcow2" "$coff" Q 0xffffffffffffffff
io_fails "compressed garbage" "$T/c_junk.qcow2" 0 4096 "does not inflate to one cluster"

# backing names: loops, json:, protocols
(cd "$T" && qemu-img create -q -f qcow2 -b b.qcow2 -F qcow2 -u a.qcow2 4M &&
    qemu-img create -q -f qcow2 -b a.qcow2 -F qcow2 -u b.qcow2 4M &&
    qemu-img create -q -f qcow2 -b selg.qcow2 -F qcow2 -u self.qcow2 4M &&
    qemu-img create -q -f qcow2 -b 'json:{"file.filename":"/etc/passwd"}' -F raw -u j.qcow2 4M &&
    qemu-img create -q -f qcow2 -b 'nbd:localhost:10809' -F raw -u n.qcow2 4M)
# qemu-img will not name an image its own backing file: rename it after
patch "$T/self.qcow2" $(( $(field "$T/self.qcow2" 8 Q) + 3 )) B 0x66   # 'g' -> 'f'
refused "backing loop a -> b -> a" "$T/a.qcow2" "backing chain loop"
refused "backing file is itself" "$T/self.qcow2" "backing chain loop"
refused "json: backing name" "$T/j.qcow2" "json: description \\(refused\\)"
refused "protocol backing name" "$T/n.qcow2" "protocol prefix \\(refused\\)"

# corrupt and dirty bits: readable, never written
for bit in corrupt:0x2 dirty:0x1; do
    name=${bit%%:*}; f=$(mk "$name"); patch "$f" 72 Q "${bit#*:}"
    ok "$name image reads" "$IMGIO" -f qcow2 "$f" "read 0 65536 0x61"
    "$IMGIO" -f qcow2 "$f" "write 0 512 1" >/dev/null 2>"$T/err"
    like "$(cat "$T/err")" "opening read-only" "$name image: opened read-only, says why"
    like "$(cat "$T/err")" "Read-only file system" "$name image: the write fails with EROFS"
done

# a chain deeper than the cap (64) is refused; a deep legal one works
# (qemu-img is slow to start: make one overlay and copy it, renaming the
# two-digit backing name in place)
qemu-img create -q -f raw "$T/d00" 1M
qemu-img create -q -f qcow2 -b d00 -F raw -u "$T/d01" 1M
qemu-img create -q -f qcow2 -b d01 -F qcow2 -u "$T/tmpl" 1M
i=2; while [ $i -le 65 ]; do
    n=$(printf %02d $i); cp "$T/tmpl" "$T/d$n"
    off=$(field "$T/tmpl" 8 Q)
    patch "$T/d$n" $((off + 1)) B $((0x30 + (i - 1) / 10))
    patch "$T/d$n" $((off + 2)) B $((0x30 + (i - 1) % 10))
    i=$((i + 1))
done
ok "a 64-deep chain opens" "$IMGIO" -r -f qcow2 "$T/d64" "read 0 512 0"
refused "a 65-deep chain" "$T/d65" "deeper than 64"
done_testing
