#!/bin/sh
# /init of vbdfs's lab domU (t/xen/mkdomu.sh builds it on the lab's domU:
# busybox + xen-blkfront, plus ext4, e2fsprogs, fstrim, blkdiscard).
#
# Kernel command line:
#   xen_blkfront.PARAM=V   passed to insmod (busybox insmod does not read
#                          /proc/cmdline), e.g. feature_persistent=0,
#                          max_ring_page_order=2, max_queues=2
#   xenlab.disks= xenlab.seedmb= xenlab.mb= xenlab.wait=
#                          the lab's disk test, same output (domu_disk_test)
#   vbdfs.fs=xvdX          then: ext4 on xvdX (all but its last 4 MiB),
#                          copy files, sync, remount + verify checksums,
#                          fstrim, e2fsck -fn, blkdiscard of the tail,
#                          big O_DIRECT writes (indirect segments); the
#                          filesystem is left unmounted and clean for dom0
#   vbdfs.reboot=xvdX      first boot: write a marker, reboot; second boot:
#                          check the marker survived ("REBOOT-OK")
#   vbdfs.dio=xvdX         large O_DIRECT writes and reads from every vCPU at
#                          once (each CPU's requests go to its own queue)
#   vbdfs.rebind=xvdX:N:xvdY  N unbind/bind cycles of xvdX's blkfront while
#                          xvdY is loaded; "REBIND ... cycles= good=
#                          result=back|gone other=ok|FAILED" (Linux 6.1
#                          blkfront does not reconnect after a bind: gone)
#   vbdfs.io=xvdX          after the rest: endless write/read loop (for
#                          xl destroy under I/O)
# Output lines start with "XENLAB-DOMU: " on hvc0 (xenconsoled's log in dom0).
# Busybox ash runs its own applets before PATH: the real e2fsprogs and
# util-linux tools are called by absolute path.
export PATH=/usr/sbin:/usr/bin:/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /mnt /tmp

say() { echo "XENLAB-DOMU: $*"; }
arg() { # arg NAME DEFAULT
    local v
    v=$(tr ' ' '\n' < /proc/cmdline | sed -n "s/^$1=//p" | tail -1)
    echo "${v:-$2}"
}
up() { cut -d' ' -f1 /proc/uptime; }
say "booted, uptime $(up)s, kernel $(uname -r), $(nproc) vCPU(s)"

for m in $(cat /etc/vbdfs-lab/modules.list); do insmod "$m" || say "insmod $m failed"; done
BF=$(tr ' ' '\n' < /proc/cmdline | sed -n 's/^xen_blkfront\.//p' | tr '\n' ' ')
for m in $(cat /etc/xenlab/modules.list); do
    case "$m" in
        *xen-blkfront*) insmod "$m" $BF || say "insmod $m $BF failed" ;;
        *) insmod "$m" ;;
    esac
done
say "xen-blkfront params: $BF"

waitdev() {
    local i=0
    while [ ! -b /dev/$1 ] && [ $i -lt $((WAIT * 5)) ]; do usleep 200000; i=$((i + 1)); done
    [ -b /dev/$1 ]
}
WAIT=$(arg xenlab.wait 60)

# ---------------------------------------------------------------- reboot
RB=$(arg vbdfs.reboot "")
if [ -n "$RB" ] && waitdev "$RB"; then
    m=$(dd if=/dev/$RB bs=512 skip=40960 count=1 2>/dev/null | head -c 14)
    if [ "$m" = VBDFS-REBOOT-1 ]; then
        say "$RB REBOOT-OK marker from the first boot is there"
    else
        echo VBDFS-REBOOT-1 | dd of=/dev/$RB bs=512 seek=40960 conv=sync,fsync 2>/dev/null
        say "$RB marker written, rebooting"
        sync
        reboot -f
    fi
fi

# ---------------------------------------------------------------- lab test
DISKS=$(arg xenlab.disks "")
SEEDMB=$(arg xenlab.seedmb 0)
MB=$(arg xenlab.mb 4)
for d in $(echo "$DISKS" | tr ',' ' '); do
    if ! waitdev $d; then say "$d MISSING after ${WAIT}s"; continue; fi
    size=$(blockdev --getsize64 /dev/$d)
    say "$d present size=$size uptime $(up)s"
    if [ "$SEEDMB" -gt 0 ]; then
        s=$(dd if=/dev/$d bs=1M skip=8 count=$SEEDMB 2>/dev/null | sha256sum | cut -d' ' -f1)
        say "$d seed-read sha256=$s"
    fi
    dd if=/dev/urandom of=/tmp/pat bs=1M count=$MB 2>/dev/null
    w=$(sha256sum /tmp/pat | cut -d' ' -f1)
    dd if=/tmp/pat of=/dev/$d bs=1M count=$MB conv=fsync 2>/dev/null || say "$d write FAILED"
    blockdev --flushbufs /dev/$d
    echo 3 > /proc/sys/vm/drop_caches
    r=$(dd if=/dev/$d bs=1M count=$MB 2>/dev/null | sha256sum | cut -d' ' -f1)
    say "$d write sha256=$w readback sha256=$r"
done

# ---------------------------------------------------------------- ext4
# fs_step NAME command... : prints "FS <disk> NAME ok|FAILED"
fs_step() {
    local n=$1; shift
    if "$@" > /tmp/step.out 2>&1; then say "FS $FS $n ok"
    else say "FS $FS $n FAILED: $(tail -3 /tmp/step.out | tr '\n' ' ')"; fi
}
FS=$(arg vbdfs.fs "")
if [ -n "$FS" ] && waitdev "$FS"; then
    q=$(ls /sys/block/$FS/mq 2>/dev/null | wc -l)
    say "FS $FS queues=$q max_hw_sectors_kb=$(cat /sys/block/$FS/queue/max_hw_sectors_kb) max_segments=$(cat /sys/block/$FS/queue/max_segments) discard_max_bytes=$(cat /sys/block/$FS/queue/discard_max_bytes) write_cache=$(cat /sys/block/$FS/queue/write_cache)"
    bytes=$(blockdev --getsize64 /dev/$FS)
    fsblocks=$(( (bytes - 4 * 1048576) / 4096 ))
    fs_step mkfs /usr/sbin/mke2fs -q -F -t ext4 -b 4096 /dev/$FS $fsblocks
    fs_step mount mount -t ext4 -o discard /dev/$FS /mnt
    mkdir -p /mnt/files
    dd if=/dev/urandom of=/mnt/files/random.bin bs=1M count=3 2>/dev/null
    cp -a /lib/modules /mnt/files/ 2>/dev/null
    cp -a /usr/sbin /mnt/files/ 2>/dev/null
    (cd /mnt && find files -type f | sort | xargs sha256sum > /mnt/MANIFEST)
    say "FS $FS files=$(wc -l < /mnt/MANIFEST) manifest-sha256=$(sha256sum < /mnt/MANIFEST | cut -d' ' -f1)"
    fs_step sync sync -f /mnt/MANIFEST
    fs_step umount umount /mnt
    echo 3 > /proc/sys/vm/drop_caches
    fs_step remount mount -t ext4 /dev/$FS /mnt
    fs_step verify sh -c "cd /mnt && sha256sum -c MANIFEST"
    rm -rf /mnt/files/sbin
    (cd /mnt && find files -type f | sort | xargs sha256sum > /mnt/MANIFEST)
    sync
    fs_step fstrim /usr/sbin/fstrim -v /mnt
    fs_step umount2 umount /mnt
    fs_step fsck /usr/sbin/e2fsck -fn /dev/$FS
    tail=$(( bytes / 1048576 - 4 ))
    dd if=/dev/urandom of=/dev/$FS bs=1M seek=$tail count=4 conv=fsync 2>/dev/null
    fs_step blkdiscard /usr/sbin/blkdiscard -f -o $((tail * 1048576)) -l 4194304 /dev/$FS
    # large O_DIRECT requests: more than 11 segments each, so INDIRECT when
    # the backend offers it
    dd if=/dev/urandom of=/tmp/big bs=1M count=4 2>/dev/null
    dd if=/tmp/big of=/dev/$FS bs=1M seek=$tail count=4 oflag=direct 2>/dev/null
    b1=$(sha256sum < /tmp/big | cut -d' ' -f1)
    b2=$(dd if=/dev/$FS bs=1M skip=$tail count=4 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
    [ "$b1" = "$b2" ] && say "FS $FS direct-io ok" || say "FS $FS direct-io FAILED $b1 $b2"
    say "FS $FS tail-sha256=$b1"
    fs_step flush blockdev --flushbufs /dev/$FS
    say "FS $FS DONE fsblocks=$fsblocks"
fi
DIO=$(arg vbdfs.dio "")
if [ -n "$DIO" ] && waitdev "$DIO"; then
    ncpu=$(nproc)
    c=0
    while [ $c -lt $ncpu ]; do
        dd if=/dev/urandom of=/tmp/dio$c bs=1M count=2 2>/dev/null
        c=$((c + 1))
    done
    c=0
    while [ $c -lt $ncpu ]; do
        taskset $((1 << c)) dd if=/tmp/dio$c of=/dev/$DIO bs=1M seek=$((16 + 2 * c)) count=2 oflag=direct 2>/dev/null &
        c=$((c + 1))
    done
    wait
    bad=0; c=0
    while [ $c -lt $ncpu ]; do
        x=$(sha256sum < /tmp/dio$c | cut -d' ' -f1)
        y=$(taskset $((1 << c)) dd if=/dev/$DIO bs=1M skip=$((16 + 2 * c)) count=2 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
        [ "$x" = "$y" ] || bad=$((bad + 1))
        c=$((c + 1))
    done
    say "DIO $DIO queues=$(ls /sys/block/$DIO/mq | wc -l) max_segments=$(cat /sys/block/$DIO/queue/max_segments) cpus=$ncpu bad=$bad"
    for q in /sys/block/$DIO/mq/*; do say "DIO $DIO $(basename $q) cpu_list=$(cat $q/cpu_list)"; done
fi

# ---------------------------------------------------------------- rebind
# vbdfs.rebind=xvdX:N:xvdY : N times unbind and bind xvdX's blkfront (the
# same domain reconnects to the same backend) while xvdY runs an O_DIRECT
# write/read loop; after each reconnect 1 MiB written to xvdX must read back.
# rw_1m DEV MIB: write 1 MiB of random data at MiB offset MIB (O_DIRECT);
# succeeds if it reads back the same
rw_1m() {
    dd if=/dev/urandom of=/tmp/rb bs=1M count=1 2>/dev/null
    dd if=/tmp/rb of=/dev/$1 bs=1M seek=$2 count=1 oflag=direct 2>/dev/null
    [ "$(sha256sum < /tmp/rb | cut -d' ' -f1)" = \
      "$(dd if=/dev/$1 bs=1M skip=$2 count=1 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)" ]
}
RBD=$(arg vbdfs.rebind "")
if [ -n "$RBD" ]; then
    rd=$(echo "$RBD" | cut -d: -f1); rn=$(echo "$RBD" | cut -d: -f2); ld=$(echo "$RBD" | cut -d: -f3)
    if waitdev "$rd" && waitdev "$ld"; then
        node=$(basename "$(readlink /sys/block/$rd/device)")
        ( i=0; while :; do
            dd if=/dev/urandom of=/dev/$ld bs=64k seek=$((i % 100)) count=16 oflag=direct 2>/dev/null
            dd if=/dev/$ld of=/dev/null bs=64k count=64 iflag=direct 2>/dev/null
            i=$((i + 1)); done ) &
        lp=$!
        c=0; good=0; res=back
        while [ "$c" -lt "$rn" ]; do
            say "REBIND $rd cycle $c: unbind"
            echo "$node" > /sys/bus/xen/drivers/vbd/unbind
            i=0; while [ -b /dev/$rd ] && [ $i -lt 100 ]; do usleep 100000; i=$((i + 1)); done
            [ -b /dev/$rd ] && { say "REBIND $rd still there after unbind $c"; break; }
            # Give the backend time to see the frontend close: blkfront
            # bound again at once may still read the old "Connected" and
            # connect without rings (a Linux race: a userspace backend
            # answers slower than the kernel's blkback).
            sleep 1
            say "REBIND $rd cycle $c: bind"
            echo "$node" > /sys/bus/xen/drivers/vbd/bind
            i=0; while [ ! -b /dev/$rd ] && [ $i -lt 300 ]; do usleep 100000; i=$((i + 1)); done
            [ -b /dev/$rd ] || { say "REBIND $rd did not come back after bind $c"; res=gone; break; }
            say "REBIND $rd cycle $c: back"
            rw_1m "$rd" "$c" && good=$((good + 1))
            c=$((c + 1))
        done
        kill $lp; wait $lp 2>/dev/null
        # the other disk still works
        rw_1m "$ld" 20 && lok=ok || lok=FAILED
        say "REBIND $rd node=$node cycles=$c good=$good result=$res other=$lok"
    fi
fi

# Kernel complaints (I/O errors, blkfront warnings) count as failures in dom0.
dmesg | grep -iE 'I/O error|blk_update_request|Buffer I/O|EXT4-fs error|EXT4-fs warning|discard op failed|bogus|blkfront.*(fail|error|invalid)|xvd[a-z].*(fail|error)' > /tmp/kmsg
say "KMSG-ERRORS $(wc -l < /tmp/kmsg)"
sed 's/^/XENLAB-DOMU: KMSG /' /tmp/kmsg | tail -15
say "DONE uptime $(up)s"

IO=$(arg vbdfs.io "")
if [ -n "$IO" ] && waitdev "$IO"; then
    say "IO RUNNING on $IO"
    i=0
    while :; do
        dd if=/dev/urandom of=/dev/$IO bs=64k seek=$((i % 200)) count=16 oflag=direct 2>/dev/null
        dd if=/dev/$IO of=/dev/null bs=64k count=64 iflag=direct 2>/dev/null
        i=$((i + 1))
    done
fi
if [ "$(arg xenlab.poweroff 0)" = 1 ]; then sync; poweroff -f; fi
while :; do sleep 3600; done
