#!/bin/bash
# t/xen/xen-check.sh - vbdfs on real Xen: boot the xenlab (Xen 4.17, Linux
# 6.1 PV dom0 and PV domUs under QEMU TCG) with our programs in dom0 and
# t/xen/hook.sh as its hook, and report every vbdfs check.  `make xen-check`
# runs it after building.
#
# usage: t/xen/xen-check.sh [--sections "hv probe ..."] [--timeout S] [--verbose]
# env:   VBDFS_BUILD   built programs (default build/)
#        XENLAB_SRC    the lab's scripts (default /work/shared/xenlab)
#        XENLAB_DIR    the lab's work dir (default /var/tmp/xenlab-vbdfs)
# exit:  0  every vbdfs check passed, or SKIP: the lab itself could not boot
#           Xen or dom0 (no root, no lab, no qemu, build failure) - the
#           reason is printed; 1  a check failed
set -uo pipefail

SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${VBDFS_BUILD:-$SRC/build}
LAB=${XENLAB_SRC:-/work/shared/xenlab}
export XENLAB_DIR=${XENLAB_DIR:-/var/tmp/xenlab-vbdfs}
W=$XENLAB_DIR
SECTIONS=
TMO=600
VERBOSE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --sections) SECTIONS=$2; shift ;;
        --timeout) TMO=$2; shift ;;
        --verbose) VERBOSE=1 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "xen-check: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

say() { echo "xen-check: $*"; }
skip() { say "SKIP: $*"; exit 0; }
fail() { say "FAIL: $*"; exit 1; }

[ "$(id -u)" = 0 ] || skip "needs root (the lab builds a dom0 root filesystem and runs qemu)"
[ -x "$LAB/run.sh" ] && [ -x "$LAB/build.sh" ] || skip "no xenlab at $LAB (set XENLAB_SRC)"
for p in hvprobe xbserve 460-hv-xen.t; do
    [ -x "$BUILD/t/xen/$p" ] || [ -x "$BUILD/t/$p" ] || fail "$p not built (run make xen-check)"
done
mkdir -p "$W"
exec 9>"$W/.xen-check.lock"
flock -n 9 || { say "another xen-check uses $W; waiting"; flock 9; }

# ---- 1. the lab's own build, once (downloads Debian packages the first time)
if ls "$W"/debs/xen-hypervisor-*.deb >/dev/null 2>&1; then
    export XENLAB_NO_APT=1
elif ls /var/tmp/xenlab/debs/xen-hypervisor-*.deb >/dev/null 2>&1; then
    # another lab dir on this machine already downloaded them
    mkdir -p "$W/debs" && cp /var/tmp/xenlab/debs/*.deb "$W/debs/" && export XENLAB_NO_APT=1
fi
if [ ! -d "$W/root-domU" ] || [ ! -s "$W/out/vmlinux" ]; then
    say "building the lab (first run)"
    XENLAB_EXTRA_DIR= XENLAB_DOM0_HOOK= "$LAB/build.sh" > "$W/build-base.log" 2>&1 ||
        skip "the lab's own build failed (network? see $W/build-base.log): $(tail -1 "$W/build-base.log")"
fi

# ---- 2. our additions to dom0
X=$W/vbdfs-extra
rm -rf "$X"
mkdir -p "$X/usr/local/bin" "$X/usr/local/sbin" "$X/etc/vbdfs-lab" "$X/var/lib/xenlab" \
    "$X/etc/xen/scripts"
install -m 755 "$BUILD/t/xen/hvprobe" "$BUILD/t/xen/xbserve" "$BUILD/t/460-hv-xen.t" "$X/usr/local/bin/"
for p in vbdfs vbdctl; do
    [ -x "$BUILD/$p" ] && install -m 755 "$BUILD/$p" "$X/usr/local/sbin/"
done
for p in vbd-img vbd-front; do
    [ -x "$BUILD/$p" ] && install -m 755 "$BUILD/$p" "$X/usr/local/bin/"
done
# dom0 tooling for the checks: qemu-img, e2fsck (the lab adds their
# libraries), and the modules for FUSE and ext4 (same kernel as the lab's)
for b in /usr/bin/qemu-img /sbin/e2fsck; do
    [ -x "$b" ] && install -m 755 "$(readlink -f "$b")" "$X/usr/local/bin/"
done
M=$X/usr/local/lib/vbdfs-lab/modules
mkdir -p "$M"
KVER=$(ls "$W/stage/lib/modules" | sort -V | tail -1)
for m in fuse crc32c_generic crc16 mbcache jbd2 ext4; do
    f=$(find "$W/stage/lib/modules/$KVER/kernel" -name "$m.ko*" | head -1)
    [ -n "$f" ] || fail "module $m not in the lab's kernel packages"
    cp "$f" "$M/" && basename "$f" >> "$M/list"
done
[ -f "$SRC/util/vbdfs-hotplug" ] && install -m 755 "$SRC/util/vbdfs-hotplug" "$X/etc/xen/scripts/"
[ -n "$SECTIONS" ] && echo "$SECTIONS" > "$X/etc/vbdfs-lab/sections"
if [ -x "$SRC/t/xen/mkdomu.sh" ]; then
    "$SRC/t/xen/mkdomu.sh" "$W/stage" "$W/root-domU" "$X/var/lib/xenlab/vbdfs-domU.cpio" ||
        fail "could not build the vbdfs domU initramfs"
fi

# ---- 3. rebuild dom0 with them, and boot
say "building dom0 with vbdfs additions"
XENLAB_EXTRA_DIR=$X XENLAB_DOM0_HOOK=$SRC/t/xen/hook.sh "$LAB/build.sh" > "$W/build.log" 2>&1 ||
    fail "the lab build with our additions failed: $(grep -m1 ERROR "$W/build.log")"
say "booting Xen (timeout ${TMO}s)"
if [ "$VERBOSE" = 1 ]; then
    "$LAB/run.sh" --phases 1 --timeout "$TMO" --quiet | tee "$W/run.out"
else
    "$LAB/run.sh" --phases 1 --timeout "$TMO" --quiet > "$W/run.out" 2>&1
fi
LOG=$(sed -n 's/^full log: *//p' "$W/run.out" | tail -1)
[ -n "$LOG" ] && [ -f "$LOG" ] || skip "the lab produced no log (see $W/run.out)"

# ---- 4. verdict: the lab's own dom0 checks decide skip, ours decide pass
grep -q 'dom0 init started' "$LOG" || skip "Xen/dom0 did not boot (log: $LOG)"
lab_fail=$(grep 'XENLAB-RESULT: ' "$LOG" | grep -v 'XENLAB-RESULT: vbdfs-' | grep -c ' FAIL')
[ "$lab_fail" = 0 ] || skip "the lab's dom0 userland failed $lab_fail of its checks before vbdfs ran (log: $LOG)"
grep 'XENLAB-RESULT: vbdfs-' "$LOG" | sed 's/^\[ *[0-9.]*\] XENLAB-RESULT: /  /'
npass=$(grep -c 'XENLAB-RESULT: vbdfs-[^ ]* PASS' "$LOG")
nfail=$(grep -c 'XENLAB-RESULT: vbdfs-[^ ]* FAIL' "$LOG")
nskip=$(grep -c 'XENLAB-RESULT: vbdfs-[^ ]* SKIP' "$LOG")
say "$npass passed, $nfail failed, $nskip skipped; wall time $(sed -n 's/^total wall time: *//p' "$W/run.out"); log: $LOG"
grep -q 'XENLAB-RESULT: vbdfs-hook-done PASS' "$LOG" || fail "the hook did not finish (timeout or crash; log: $LOG)"
[ "$nfail" = 0 ] || fail "$nfail vbdfs check(s) failed"
say "PASS"
