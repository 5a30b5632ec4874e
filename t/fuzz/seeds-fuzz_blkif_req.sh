#!/bin/sh
# Seeds for fuzz_blkif_req: small guests in the target's input layout (see
# the comment at the top of t/fuzz/fuzz_blkif_req.c), covering each
# operation, both ABIs, indirect requests, persistent grants, a qcow2
# image, and requests the engine must refuse.  Usage: seeds-... DIR
set -eu
D=$1
mkdir -p "$D"

# Bytes, without a fork per byte (an octal escape for printf).
b() { for v; do v=$((v & 255)); printf "\\$(( (v >> 6) * 100 + ((v >> 3) & 7) * 10 + (v & 7) ))"; done; }
le16() { b $(($1)) $(($1 >> 8)); }
le32() { le16 $(($1 & 65535)); le16 $((($1 >> 16) & 65535)); }
le64() { le32 $(($1 & 0xffffffff)); le32 $((($1 >> 32) & 0xffffffff)); }
zeros() { i=0; while [ $i -lt "$1" ]; do b 0; i=$((i + 1)); done; }

# hdr B0 B1 B2 [STEP1 STEP2 STEP3 [RINGREF0..3 [EDIT1 EDIT2 EDIT3]]]
hdr() {
    b "$1" "$2" "$3" "${4:-0}" "${5:-0}" "${6:-0}" "${7:-0}" "${8:-0}" "${9:-0}" "${10:-0}"
    b "${11:-0}" "${12:-0}" "${13:-0}"
    zeros 3
}
B0_X86_32=1; B0_ORDER1=2; B0_BADORDER=6; B0_PERSIST=8; B0_RO=16; B0_QCOW2=32; B0_4K=64
B1_FLUSH=1; B1_BARRIER=2; B1_DISCARD=4; B1_SECURE=8; B1_GRAN4K=32; B1_IND16=64; B1_IND256=128
B1_INDMAX=192

# grants [SPECIAL...]: ref g < 16 is frame g, writable; refs 16.. invalid.
# Then ref 12 read-only (frame 12), ref 13 granted to another domain,
# ref 14 names a frame outside guest memory.
grants() {
    g=0
    while [ $g -lt 32 ]; do
        case $g in
        12) b 3 12 ;;
        13) b 5 13 ;;
        14) b 1 20 ;;
        *) if [ $g -lt 16 ]; then b 1 $g; else b 0 0; fi ;;
        esac
        g=$((g + 1))
    done
}

# chunk FRAME OFFSET LEN: a guest memory write header; the bytes follow.
chunk() { b "$1"; le16 "$2"; le16 "$3"; }
# ring_hdr REQ_PROD [FRAME]: the shared ring's indexes (rsp_event 1).
ring_hdr() { chunk "${2:-0}" 0 16; le32 "$1"; le32 1; le32 0; le32 1; }
# fill FRAME LEN BYTE: LEN bytes of BYTE at the start of FRAME.
fill() {
    chunk "$1" 0 "$2"
    i=0; while [ $i -lt "$2" ]; do b "$3"; i=$((i + 1)); done
}

# Request slots.  ABI is 64 or 32; slot K of the ring in frame 0 (order 0).
slot() { if [ "$1" = 64 ]; then echo $((64 + $2 * 112)); else echo $((64 + $2 * 108)); fi; }
# rw ABI K OP ID SECTOR then "GREF FIRST LAST" per segment
rw() {
    abi=$1 k=$2 op=$3 id=$4 sec=$5; shift 5
    n=$(($# / 3))
    if [ "$abi" = 64 ]; then len=$((24 + 8 * n)); else len=$((20 + 8 * n)); fi
    chunk 0 "$(slot "$abi" "$k")" $len
    b "$op" $n; le16 0
    [ "$abi" = 64 ] && le32 0
    le64 "$id"; le64 "$sec"
    while [ $# -ge 3 ]; do le32 "$1"; b "$2" "$3" 0 0; shift 3; done
}
# ind ABI K OP ID SECTOR NSEG INDIRECT_GREF...
ind() {
    abi=$1 k=$2 op=$3 id=$4 sec=$5 nseg=$6; shift 6
    if [ "$abi" = 64 ]; then len=$((28 + 4 * $#)); else len=$((24 + 4 * $#)); fi
    chunk 0 "$(slot "$abi" "$k")" $len
    b 6 "$op"; le16 "$nseg"
    [ "$abi" = 64 ] && le32 0
    le64 "$id"; le64 "$sec"; le16 0; le16 0
    for g; do le32 "$g"; done
}
# discard ABI K ID SECTOR NR_SECTORS FLAG
discard() {
    abi=$1 k=$2
    if [ "$abi" = 64 ]; then len=32; else len=28; fi
    chunk 0 "$(slot "$abi" "$k")" $len
    b 5 "$6"; le16 0
    [ "$abi" = 64 ] && le32 0
    le64 "$3"; le64 "$4"; le64 "$5"
}
# isegs FRAME "GREF FIRST LAST"...: entries of an indirect page
isegs() {
    fr=$1; shift
    chunk "$fr" 0 $(($# / 3 * 8))
    while [ $# -ge 3 ]; do le32 "$1"; b "$2" "$3" 0 0; shift 3; done
}

RD=0; WR=1; BARRIER=2; FLUSH=3; UNKNOWN=4

# Reads and writes, direct, both ABIs, with a flush.
for abi in 64 32; do
    x=0; [ $abi = 32 ] && x=$B0_X86_32
    {
        hdr $x $B1_FLUSH 0
        grants
        ring_hdr 4
        fill 1 64 0x5a
        rw $abi 0 $WR 11 8 1 0 7
        rw $abi 1 $RD 12 8 2 0 7 3 2 5
        rw $abi 2 $FLUSH 13 0
        rw $abi 3 $WR 14 120 4 0 7 5 0 7
    } > "$D/rw-$abi"
done

# Indirect writes and reads, both ABIs; the entries sit in frame 6.
for abi in 64 32; do
    x=0; [ $abi = 32 ] && x=$B0_X86_32
    {
        hdr $x $((B1_FLUSH | B1_IND16)) 0
        grants
        ring_hdr 3
        isegs 6  1 0 7  2 0 7  3 0 3  4 4 7
        ind $abi 0 $WR 21 16 4 6
        ind $abi 1 $RD 22 16 4 6
        ind $abi 2 $FLUSH 23 0 1 6   # only READ and WRITE may be indirect
    } > "$D/indirect-$abi"
done

# Persistent grants: the same pages written, read, and read again.
{
    hdr $B0_PERSIST $B1_IND16 0
    grants
    ring_hdr 5
    fill 1 512 0x33
    isegs 7  1 0 7  2 0 7
    rw 64 0 $WR 31 0 1 0 7 2 0 7
    rw 64 1 $RD 32 0 3 0 7 4 0 7
    rw 64 2 $RD 33 0 1 0 7
    ind 64 3 $RD 34 16 2 7
    rw 64 4 $WR 35 8 12 0 7
} > "$D/persistent"

# A qcow2 image (4 KiB clusters): writes, discard, barrier, reads.
{
    hdr $B0_QCOW2 $((B1_FLUSH | B1_BARRIER | B1_DISCARD)) 4
    grants
    ring_hdr 6
    fill 1 512 0x77
    rw 64 0 $WR 41 0 1 0 7
    rw 64 1 $WR 42 64 1 0 7 2 0 7
    discard 64 2 43 0 8 0
    rw 64 3 $BARRIER 44 0
    rw 64 4 $RD 45 0 3 0 7 4 0 7
    rw 64 5 $RD 46 64 5 0 7
} > "$D/qcow2"

# Discards: plain, secure (advertised), unaligned, beyond the end; 4 KiB sectors.
{
    hdr $B0_4K $((B1_DISCARD | B1_SECURE | B1_GRAN4K)) 0
    grants
    ring_hdr 5
    discard 64 0 51 0 16 0
    discard 64 1 52 16 8 1
    discard 64 2 53 3 8 0
    discard 64 3 54 120 16 0
    rw 64 4 $WR 55 8 1 0 7
} > "$D/discard"

# A read-only device: writes and discards refused, reads served.
{
    hdr $B0_RO $((B1_DISCARD | B1_IND16)) 0
    grants
    ring_hdr 4
    isegs 6  1 0 7
    rw 64 0 $WR 61 0 1 0 7
    discard 64 1 62 0 8 0
    ind 64 2 $WR 63 0 1 6
    rw 64 3 $RD 64 0 1 0 7
} > "$D/readonly"

# Requests to refuse: unknown op, 0 and 12 segments, bad sectors, a
# read into a read-only grant, another domain's grant, a frame outside
# memory, an invalid ref, beyond the end, a misaligned 4 KiB-sector I/O,
# indirect not advertised, an unadvertised barrier.
{
    hdr $B0_4K 0 0
    grants
    ring_hdr 12
    rw 64 0 $UNKNOWN 71 0 1 0 7
    rw 64 1 $RD 72 0
    rw 64 2 $RD 73 0 1 3 2
    rw 64 3 $RD 74 0 12 0 7
    rw 64 4 $RD 75 0 13 0 7
    rw 64 5 $RD 76 0 14 0 7
    rw 64 6 $WR 77 0 99 0 7
    rw 64 7 $RD 78 127 1 0 7
    rw 64 8 $RD 79 1 1 0 7
    ind 64 9 $RD 80 0 1 6
    rw 64 10 $BARRIER 81 0
    rw 64 11 $RD 82 0 1 0 0
} > "$D/invalid"

# req_prod far beyond the ring: broken, nothing served.
{ hdr 0 0 0; grants; ring_hdr 1000; rw 64 0 $RD 91 0 1 0 7; } > "$D/broken"

# A two-page ring (refs 8 and 9) with a request in each page; then the
# guest publishes more in two more rounds (32 slots per page).
{
    hdr $B0_ORDER1 0 $((2 << 4)) 1 40 0 8 9
    grants
    ring_hdr 1 8
    chunk 8 64 32; b $RD 1; le16 0; le32 0; le64 101; le64 0; le32 1; b 0 7 0 0
    chunk 9 $((64 + 36 * 112 - 4096)) 32; b $WR 1; le16 0; le32 0; le64 102; le64 8; le32 2; b 0 7 0 0
} > "$D/order1-rounds"

# The guest reads data into its own ring page (ref 0 is the ring).
{ hdr 0 0 0; grants; ring_hdr 2; rw 64 0 $RD 111 0 0 0 7; rw 64 1 $RD 112 8 0 0 0; } > "$D/ring-alias"

# An invalid ring order, and the largest indirect limit.
{ hdr $B0_BADORDER 0 0; grants; ring_hdr 1; } > "$D/bad-order"
{
    hdr $B0_X86_32 $B1_INDMAX 0
    grants
    ring_hdr 1
    isegs 6  1 0 7  2 0 7  3 0 7
    ind 32 0 $RD 121 0 3 6
} > "$D/indirect-max"

# A read-only raw image in a disk file: reads from the page cache are
# served on the intake thread and published in batches (40 reads on a
# two-page ring: more than one batch of 32), grant copy and persistent.
for mode in copy persistent; do
    x=$((B0_ORDER1 | 128)); [ $mode = persistent ] && x=$((x | B0_PERSIST))
    {
        hdr $x 0 64 0 0 0 8 9
        grants
        ring_hdr 40 8
        k=0
        while [ $k -lt 40 ]; do
            # slots 0..35 in frame 8, 36.. in frame 9 (112-byte slots)
            o=$((64 + k * 112)); fr=8
            [ $o -ge 4096 ] && { o=$((o - 4096)); fr=9; }
            chunk $fr $o 32; b $RD 1; le16 0; le32 0; le64 $((200 + k)); le64 $((k * 8)); le32 $((1 + k % 7)); b 0 7 0 0
            k=$((k + 1))
        done
    } > "$D/cached-$mode"
done

# An indirect write and read of 48 pages (192 KiB: more than one 128 KiB
# grant-copy piece) on a 256 KiB image.
{
    hdr 0 $B1_IND256 2
    grants
    ring_hdr 2
    chunk 6 0 $((48 * 8))
    k=0; while [ $k -lt 48 ]; do le32 $((1 + k % 5)); b 0 7 0 0; k=$((k + 1)); done
    ind 64 0 $WR 301 0 48 6
    ind 64 1 $RD 302 0 48 6
} > "$D/indirect-big"

# Persistent grants with more segments than IOV_MAX (1100 one-sector
# segments of the same two grants) on a 1 MiB image: the data then goes
# through the bounce buffer.
{
    hdr $B0_PERSIST $B1_INDMAX 64
    grants
    ring_hdr 2
    chunk 6 0 $((1100 * 8))
    k=0; while [ $k -lt 1100 ]; do le32 $((1 + k % 2)); b $((k % 8)) $((k % 8)) 0 0; k=$((k + 1)); done
    ind 64 0 $RD 311 0 1100 6 7 8
    ind 64 1 $WR 312 8 1100 6 7 8
} > "$D/persistent-iovmax"

# Grants that change between rounds: ref 12 (read-only) is mapped
# persistently for a WRITE, then made writable and read into; ref 1 is
# revoked while mapped (the mapping stays usable, as on Xen).  The qcow2
# image grows before the last round, and a write lands beyond its old end.
{
    hdr $((B0_PERSIST | B0_QCOW2)) 0 $(((2 << 4) | 128)) 1 2 0 0 0 0 0 $((12 | 32)) $((1 | 64))
    grants
    ring_hdr 1
    rw 64 0 $WR 321 0 12 0 7 1 0 7
    rw 64 1 $RD 322 0 12 0 7
    rw 64 2 $WR 323 128 2 0 7
    rw 64 3 $RD 324 0 1 0 7
} > "$D/grant-edit-grow"
