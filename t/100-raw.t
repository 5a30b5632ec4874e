#!/bin/sh
# raw driver through the formats layer: data written by qemu-io reads back,
# writes/discards/zeroes land as on a plain file, holes show in block status,
# read-only and range checks hold.
. "$(dirname "$0")/lib.sh"
need_cmd qemu-img qemu-utils
need_cmd qemu-io qemu-utils
IMGIO=$VBDFS_BUILD/t/helpers/imgio
plan 16

qemu-img create -q -f raw "$T/a.raw" 8M
qemu-io -f raw -c 'write -P 0x5a 1M 64k' "$T/a.raw" >/dev/null
ok "qemu-io data reads back" "$IMGIO" -f raw "$T/a.raw" "read 1048576 65536 0x5a" "read 0 4096 0"
ok "write + flush" "$IMGIO" -f raw "$T/a.raw" "write 4096 8192 0x11" "write 4097 10 0x22" flush
ok "qemu-io sees our writes" qemu-io -f raw -c 'read -P 0x11 4096 1' -c 'read -P 0x22 4097 10' -c 'read -P 0x11 4107 8181' "$T/a.raw"
ok "O_DIRECT aligned and unaligned" "$IMGIO" -d -f raw "$T/a.raw" "write 65536 65536 0x33" "write 131073 100 0x44" "read 65536 65536 0x33" "read 131073 100 0x44"
ok "discard reads zeros" "$IMGIO" -f raw "$T/a.raw" "discard 1048576 65536" "read 1048576 65536 0"
ok "write_zeroes reads zeros" "$IMGIO" -f raw "$T/a.raw" "zero 4096 8192" "read 4096 8192 0"
map=$("$IMGIO" -f raw "$T/a.raw" map)
like "$map" "^0 [0-9]+ (data|zero)" "map starts at 0"
like "$map" "zero" "map reports holes"
last=$(printf '%s\n' "$map" | tail -n1 | awk '{print $1+$2}')
is "$last" 8388608 "map covers the disk"
fails "read past the end" "$IMGIO" -f raw "$T/a.raw" "read 8388600 16 0"
fails "write on read-only" "$IMGIO" -r -f raw "$T/a.raw" "write 0 1 1"
grep -q "Read-only" "$T/last.out"; is $? 0 "EROFS named"
fails "writable probe refused" "$IMGIO" "$T/a.raw" info
grep -q "must be given" "$T/last.out"; is $? 0 "message says the format must be given"
info=$("$IMGIO" -r "$T/a.raw" info)
like "$info" "format=raw" "probe says raw"
"$IMGIO" -f raw "$T/a.raw" "random 7 300 8388608" flush && cp "$T/a.raw" "$T/b.raw" && \
    "$IMGIO" -f raw "$T/b.raw" "export $T/c.raw"
ok "export equals the file" cmp "$T/b.raw" "$T/c.raw"
done_testing
