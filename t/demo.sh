#!/bin/sh
# t/demo.sh - the README's main job (`make demo`): a simulated Xen guest
# served by vbdfs from a compressed qcow2 image holding an ext4 filesystem,
# and the disk's live /vbd view.
#
#   t/demo.sh [--duration SECONDS] [--mount DIR] [--keep]
#
# Builds nothing itself (make demo builds first).  Makes the demo image with
# Debian tools (mkfs.ext4 -d, qemu-img convert -c), starts `vbdfs --sim`,
# attaches the image to a vbd-front guest running a mixed read/write
# workload, shows the tree, then runs until Ctrl-C (or SECONDS) and cleans
# up everything: guest, daemon, mounts, files (--keep keeps the files).
# Needs root (FUSE and loop mounts).
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
B=${VBDFS_BUILD:-$SRC/build}
DURATION= MOUNT= KEEP=
while [ $# -gt 0 ]; do
    case $1 in
    --duration) DURATION=$2; shift 2 ;;
    --mount) MOUNT=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
done
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root: the demo mounts FUSE and a loop device"
[ -c /dev/fuse ] || die "needs /dev/fuse (modprobe fuse)"
for p in vbdfs vbdctl vbd-front; do
    [ -x "$B/$p" ] || die "$B/$p is missing: run 'make' first"
done
for c in qemu-img mkfs.ext4 fusermount3 iostat xenstore-read; do
    command -v $c >/dev/null || die "needs $c (run 'make deps')"
done

W=$(mktemp -d "${TMPDIR:-/tmp}/vbdfs-demo.XXXXXX")
M=${MOUNT:-$W/vbd}
SIM=$W/sim
VPID= GPID= LOOPED=
cleanup() {
    set +e
    trap '' INT TERM
    say "cleaning up"
    [ -n "$LOOPED" ] && umount "$W/fs" 2>/dev/null
    if [ -n "$GPID" ]; then
        "$B/vbdctl" --sim "$SIM" detach 1 xvda --timeout 5 >/dev/null 2>&1 || true
        kill "$GPID" 2>/dev/null; wait "$GPID" 2>/dev/null || true
    fi
    if [ -n "$VPID" ]; then
        kill -TERM "$VPID" 2>/dev/null
        if wait "$VPID"; then echo "vbdfs stopped cleanly (exit 0)"; else echo "vbdfs exit status $?"; fi
    fi
    grep -q " $M fuse" /proc/mounts && fusermount3 -uz "$M"
    if [ -z "$KEEP" ]; then rm -rf "$W"; else echo "kept $W"; fi
    echo "demo finished"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

say "making the demo disk: ext4 with some files, in a zlib-compressed qcow2"
mkdir -p "$W/files/etc" "$W/files/docs" "$W/files/data"
echo "vbdfs-demo" >"$W/files/etc/hostname"
printf 'Welcome to the vbdfs demo guest.\nThis file lives in a compressed qcow2 image.\n' >"$W/files/etc/motd"
cp /usr/share/common-licenses/GPL-3 /usr/share/common-licenses/Apache-2.0 "$W/files/docs/" 2>/dev/null || true
seq 1 100000 >"$W/files/data/numbers.txt"
qemu-img create -q -f raw "$W/demo.raw" 48M
mkfs.ext4 -q -F -L demo -d "$W/files" "$W/demo.raw" >/dev/null
# The filesystem takes the first 48 MiB; the guest's mixed workload writes
# to a scratch area after it, so the filesystem stays mountable.
qemu-img resize -q -f raw "$W/demo.raw" 80M
qemu-img convert -c -O qcow2 "$W/demo.raw" "$W/demo.qcow2"
rm -f "$W/demo.raw"
qemu-img info "$W/demo.qcow2" | sed -n '1,4p'

say "starting vbdfs --sim $SIM $M"
mkdir -p "$M"
"$B/vbdfs" --sim "$SIM" -f "$M" >"$W/vbdfs.log" 2>&1 &
VPID=$!
i=0
until grep -q ready "$W/vbdfs.log"; do
    sleep 0.1; i=$((i + 1))
    [ $i -lt 100 ] || { cat "$W/vbdfs.log" >&2; die "vbdfs did not start"; }
done
echo "vbdfs is running (pid $VPID), the /vbd tree is at $M"

say "a simulated guest (domain 1, 'demo') gets the disk as xvda"
GDUR=${DURATION:-86400}
XENSTORED_PATH=$SIM/xenstored "$B/vbd-front" --sim "$SIM" --domid 1 --name demo --wait \
    --rw mix --mix 70 --pattern rand --qd 4 --queues 2 --offset 56M --size 24M \
    --duration "$((GDUR + 30))s" xvda >"$W/guest.log" 2>&1 &
GPID=$!
i=0
until XENSTORED_PATH=$SIM/xenstored xenstore-read /local/domain/1/name >/dev/null 2>&1; do
    sleep 0.1; i=$((i + 1)); [ $i -lt 100 ] || die "the guest did not start: $(cat "$W/guest.log")"
done
"$B/vbdctl" --sim "$SIM" attach 1 xvda "$W/demo.qcow2" --format qcow2 --wait 10 ||
    die "attach failed: $(tail -n 5 "$W/vbdfs.log")"
D=$M/1-51712
i=0
until [ -d "$D" ]; do
    sleep 0.1; i=$((i + 1)); [ $i -lt 100 ] || die "the device did not appear in $M"
done
sleep 1

say "ls -l $M $D"
ls -l "$M" "$D"
say "cat $D/stat   (the 17 fields of /sys/block/<dev>/stat)"
cat "$D/stat"
say "cat $D/stats"
cat "$D/stats"
say "tail -n 8 $D/requests   (the latest of the live log, one line per completed request)"
tail -n 8 "$D/requests"
say "iostat -x -f $M 1 2"
iostat -x -f "$M" 1 2 | awk '/^Device/ || /^vbd-/' | tail -n 2
say "mount -o ro,loop $D/disk $W/fs   (the live disk, while the guest uses it)"
mkdir -p "$W/fs"
mount -o ro,loop -t ext4 "$D/disk" "$W/fs" && LOOPED=1
(cd "$W/fs" && find . -path ./lost+found -prune -o -type f -print | sort)
cat "$W/fs/etc/motd"
umount "$W/fs"; LOOPED=

say "try it yourself (in another terminal)"
cat <<EOF
  ls -l $M/ $M/demo-xvda/
  cat $D/stats
  tail -f $D/requests          # follows the guest's I/O; Ctrl-C to stop
  iostat -x -f $M 1
  cat $D/info; cat $D/map
  mount -o ro,loop $D/disk /mnt && ls /mnt && umount /mnt
EOF
if [ -n "$DURATION" ]; then
    echo "running for $DURATION seconds"
    sleep "$DURATION"
else
    echo "running until Ctrl-C"
    while kill -0 "$VPID" 2>/dev/null; do sleep 1; done
fi
set -- $(cat "$D/stat")
echo "demo: served $1 reads and $5 writes for the guest"
