#!/bin/sh
# img_check on qcow2: clean on images from qemu-img and from our writer,
# leaks and corruptions found like `qemu-img check` (same exit codes),
# leaks repaired with fix so that qemu-img check agrees afterwards.
. "$(dirname "$0")/lib.sh"
need_cmd qemu-img qemu-utils
need_cmd qemu-io qemu-utils
need_cmd python3 python3
IMGIO=$VBDFS_BUILD/t/helpers/imgio
plan 16

f=$T/a.qcow2
qemu-img create -q -f qcow2 "$f" 16M
qemu-io -f qcow2 -c 'write -P 1 0 2M' -c 'write -P 2 5M 1M' "$f" >/dev/null
ok "qemu-made image is clean" "$IMGIO" -r -f qcow2 "$f" check
qemu-img convert -c -O qcow2 "$f" "$T/c.qcow2"
ok "compressed image is clean" "$IMGIO" -r -f qcow2 "$T/c.qcow2" check
"$IMGIO" -f qcow2 "$T/c.qcow2" "random 3 200 16777216" >/dev/null 2>&1
ok "after our writes: clean for us" "$IMGIO" -r -f qcow2 "$T/c.qcow2" check
ok "after our writes: clean for qemu-img" qemu-img check -q "$T/c.qcow2"

# set the refcount of cluster N (16-bit refcounts, first refcount block)
setref() {
    python3 - "$1" "$2" "$3" <<'PY'
import struct, sys
path, n, v = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
f = open(path, 'r+b'); h = f.read(112)
rt = struct.unpack('>Q', h[48:56])[0]
f.seek(rt); rb = struct.unpack('>Q', f.read(8))[0]
f.seek(rb + 2 * n); f.write(struct.pack('>H', v))
PY
}
# a cluster inside the file that nothing uses: discard part of the data
qemu-io -f qcow2 -c 'discard 1M 1M' "$f" >/dev/null
free=$(python3 - "$f" <<'PY'
import struct, sys, os
f = open(sys.argv[1], 'rb'); h = f.read(112)
cs = 1 << struct.unpack('>I', h[20:24])[0]
rt = struct.unpack('>Q', h[48:56])[0]
f.seek(rt); rb = struct.unpack('>Q', f.read(8))[0]
n = os.path.getsize(sys.argv[1]) // cs
f.seek(rb); d = f.read(2 * n)
print([i for i in range(n) if d[2*i:2*i+2] == b'\0\0'][0])
PY
)
cp "$f" "$T/leak.qcow2"
setref "$T/leak.qcow2" "$free" 1
"$IMGIO" -r -f qcow2 "$T/leak.qcow2" check >"$T/out" 2>"$T/err"; rc=$?
is "$rc" 3 "leak: exit 3 like qemu-img"
qemu-img check -q "$T/leak.qcow2" >/dev/null 2>&1; is "$?" 3 "qemu-img agrees it leaks"
like "$(cat "$T/err")" "Leaked cluster $free refcount=1 reference=0" "leak message names the cluster"
ok "fix repairs the leak" "$IMGIO" -f qcow2 "$T/leak.qcow2" "check fix"
grep -q "leaks_fixed=1" "$T/last.out"; is $? 0 "one leak fixed"
ok "qemu-img check clean after the fix" qemu-img check -q "$T/leak.qcow2"

cp "$f" "$T/bad.qcow2"
setref "$T/bad.qcow2" 0 0
"$IMGIO" -r -f qcow2 "$T/bad.qcow2" check >"$T/out" 2>"$T/err"; rc=$?
is "$rc" 2 "refcount 0 on the header: corruption, exit 2"
qemu-img check -q "$T/bad.qcow2" >/dev/null 2>&1; is "$?" 2 "qemu-img agrees it is corrupt"
like "$(cat "$T/err")" "ERROR cluster 0 refcount=0 reference=1" "corruption message names the cluster"

# a snapshot: its L1 and shared clusters are counted (refcount 2)
qemu-img snapshot -c snap1 "$f"
qemu-io -f qcow2 -c 'write -P 3 0 64k' "$f" >/dev/null
ok "image with an internal snapshot is clean" "$IMGIO" -r -f qcow2 "$f" check
# persistent bitmaps: their clusters are references while the autoclear
# bit vouches for them; a writer (us) clears the bit, after which QEMU too
# counts them as leaked
qemu-img create -q -f qcow2 "$T/bm.qcow2" 16M
qemu-img bitmap --add "$T/bm.qcow2" b0
qemu-io -f qcow2 -c 'write -P 1 0 4M' "$T/bm.qcow2" >/dev/null
ok "image with a persistent bitmap is clean" "$IMGIO" -r -f qcow2 "$T/bm.qcow2" check
"$IMGIO" -f qcow2 "$T/bm.qcow2" "write 0 4096 1" check >/dev/null 2>&1; rc=$?
qemu-img check -q "$T/bm.qcow2" >/dev/null 2>&1
is "$rc:$?" "3:3" "after a write the bitmap clusters are leaks, for us and for qemu-img"
done_testing
