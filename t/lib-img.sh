# t/lib-img.sh - helpers for the vbd-img tests (t/150-t/199), sourced after lib.sh.
need_cmd qemu-img qemu-utils
need_cmd qemu-io qemu-utils
need_cmd jq jq

# jget FILE FILTER : one value from a JSON file (jq -r)
jget() { jq -r "$2" "$1"; }

# qinfo IMG FILTER : a field of `qemu-img info --output=json`
qinfo() { qemu-img info --output=json "$1" | jq -r "$2"; }

# qcheck IMG : qemu-img check exit status, output in $T/qcheck.out
qcheck() { qemu-img check "$@" >"$T/qcheck.out" 2>&1; }

# patch FILE OFFSET PACK VALUE... : overwrite bytes in place (perl pack
# formats: N = be32, Q> = be64, C = byte, Q< = le64; values may be 0x...)
patch() {
    perl -e 'no warnings; open(my $f, "+<", $ARGV[0]) or die "$ARGV[0]: $!"; binmode $f;
             my @v = map { /^0x/ ? hex($_) : $_ } @ARGV[3..$#ARGV];
             seek($f, $ARGV[1], 0); print $f pack($ARGV[2], @v);' "$@"
}

# mkdata FILE MIB : a raw disk of MIB MiB with mixed data: program text,
# random bytes, zeros (holes) and a repeated pattern, at fixed places.
mkdata() {
    _f=$1; _mib=$2
    rm -f "$_f"
    truncate -s "${_mib}M" "$_f"
    # compressible program text at 0, random data at 1/4, a pattern at 1/2,
    # a few odd bytes in the last cluster; everything else stays a hole
    cat /usr/bin/qemu-img /usr/bin/perl 2>/dev/null | head -c $((_mib * 1048576 / 5)) |
        dd of="$_f" conv=notrunc bs=64k 2>/dev/null
    head -c $((_mib * 1048576 / 8)) /dev/urandom |
        dd of="$_f" conv=notrunc bs=64k seek=$((_mib * 4)) 2>/dev/null
    yes 'vbdfs pattern line' | head -c 300000 |
        dd of="$_f" conv=notrunc bs=1k seek=$((_mib * 512)) 2>/dev/null
    printf 'the end' | dd of="$_f" conv=notrunc bs=1 seek=$((_mib * 1048576 - 9)) 2>/dev/null
}
