# t/xen/hook.sh - vbdfs's checks on real Xen, run inside the xenlab's dom0.
#
# Sourced (busybox ash) by the lab's /init after its own phases, with
# xenlab-lib.sh loaded (say, result, check, make_image, domu_disk_test,
# domu_destroy, check_persisted, wait_xs, ...).  Must not `exit`.
# t/xen/xen-check.sh builds the dom0 additions (XENLAB_EXTRA_DIR): our
# programs in /usr/local/bin, our domU initramfs, and the hotplug script.
#
# Every result line is "XENLAB-RESULT: vbdfs-<name> PASS|FAIL|SKIP ...";
# xen-check.sh counts those.  The last line is vbdfs-hook-done, so a hook
# that dies half way is a failure, not a silent pass.
#
# Sections (run the subset in /etc/vbdfs-lab/sections, default all):
#   baseline the guest's ext4 workout on the kernel's xen-blkback (proves
#           the lab guest and its tools, before blkback is unloaded); not in
#           the default set (time), run it with --sections baseline
#   hv      transport unit test (t/460-hv-xen.c) in dom0
#   probe   hvprobe (t/xen/hvprobe.c) serves a real blkfront through
#           hv_xen.c: grant copy on a 1-page ring, grant map on a 4-page ring
#   raw qcow2 overlay
#           vbdfs --backend-type vbd serves an xl disk (script=vbdfs-hotplug,
#           target=FORMAT:PATH) from a raw image, a qcow2 image, and a qcow2
#           overlay on a zlib-compressed qcow2 base; the guest runs the lab's
#           seed/write/readback test and an ext4 workout (t/xen/domU-init.sh);
#           meanwhile dom0 reads /vbd (stat, stats, info, requests), loop-
#           mounts the disk read-only and checks the files; after xl destroy
#           qemu-img check and the bytes in the image
#   nego    negotiation as Linux does it: persistent grants off with 128
#           indirect segments, 16-page rings with 2 queues on 2 vCPUs (I/O
#           from each vCPU), persistent grants and 32 indirect segments
#           (Linux's defaults) in the format sections
#   life    guest reboot (new domain, same image), xl destroy under I/O,
#           xl block-attach / block-detach of a second disk
#   hotplug util/vbdfs-hotplug run by libxl (the lab's stand-in control
#           plane plays vbdfs): FORMAT:PATH targets pass through xl, a
#           missing image fails xl block-attach with our message
#   rebind  the same domain reconnecting: the guest unbinds and binds
#           xvdb's blkfront while xvda is under I/O (no hung guest, both
#           ends Closed, the other disk unharmed); rebindbase does the same
#           on the kernel's xen-blkback (not in the default set)

VL=/var/log/vbdfs
mkdir -p $VL
VB=/usr/local/bin
SECTIONS=$(cat /etc/vbdfs-lab/sections 2>/dev/null)
SECTIONS=${SECTIONS:-hv probe hotplug raw qcow2 overlay nego life rebind}
section() { case " $SECTIONS " in *" $1 "*) return 0 ;; esac; return 1; }

# The lab's mkdomcfg with our knobs: VBDFS_KARGS (more domU kernel args),
# VBDFS_VCPUS, VBDFS_ON_REBOOT, VBDFS_RAMDISK.  domu_disk_test uses it.
mkdomcfg() {
    cat <<EOF
name = "$1"
type = "pv"
kernel = "/var/lib/xenlab/vmlinux"
ramdisk = "${VBDFS_RAMDISK:-/var/lib/xenlab/domU.cpio.gz}"
extra = "console=hvc0 loglevel=4 $3 ${VBDFS_KARGS:-}"
memory = ${DOMU_MEM:-256}
vcpus = ${VBDFS_VCPUS:-1}
disk = [ $2 ]
on_poweroff = "destroy"
on_reboot = "${VBDFS_ON_REBOOT:-destroy}"
on_crash = "destroy"
EOF
}

vr() { result "vbdfs-$@"; }
vcheck() { local n=$1; shift; check "vbdfs-$n" "$@"; }

# wait_exit PID SECONDS -> 0 when PID is gone
wait_exit() {
    local i=0
    while kill -0 "$1" 2>/dev/null && [ $i -lt $(($2 * 5)) ]; do usleep 200000; i=$((i + 1)); done
    ! kill -0 "$1" 2>/dev/null
}

# ------------------------------------------------------------------ helpers
VBDFS=/usr/local/sbin/vbdfs
VBDFS_PID=
MODS=/usr/local/lib/vbdfs-lab/modules
# vbdfs_start: the daemon on backend/vbd with /vbd mounted (once).  Until
# the vbdfs daemon exists, t/xen/xbserve (the same xenbus + engine, no
# FUSE) serves the disks and the /vbd checks are skipped.
HAVE_VBD=0
# dom0 has 1 vCPU: offer more queues than that for the 2-vCPU guest
BACKEND_ARGS="--max-queues 4"
vbdfs_start() {
    [ -n "$VBDFS_PID" ] && kill -0 $VBDFS_PID 2>/dev/null && return 0
    if [ ! -x $VBDFS ]; then
        $VB/xbserve --backend-type vbd $BACKEND_ARGS > $VL/vbdfs.log 2>&1 &
        VBDFS_PID=$!
        sleep 1
        if kill -0 $VBDFS_PID 2>/dev/null; then vr xbserve-started PASS "pid $VBDFS_PID (no vbdfs daemon yet: /vbd checks skipped)"
        else vr xbserve-started FAIL "$(tail -3 $VL/vbdfs.log | tr '\n' ' ')"; return 1; fi
        return 0
    fi
    for m in $(cat $MODS/list 2>/dev/null); do insmod $MODS/$m 2>/dev/null; done
    mkdir -p /vbd
    $VBDFS -f --backend-type vbd $BACKEND_ARGS /vbd > $VL/vbdfs.log 2>&1 &
    VBDFS_PID=$!
    HAVE_VBD=1
    local i=0
    while ! grep -q ' /vbd fuse' /proc/mounts && [ $i -lt 50 ]; do usleep 200000; i=$((i + 1)); done
    if grep -q ' /vbd fuse' /proc/mounts; then vr vbdfs-started PASS "pid $VBDFS_PID"
    else vr vbdfs-started FAIL "$(tail -3 $VL/vbdfs.log | tr '\n' ' ')"; return 1; fi
    # A second vbdfs for the same backend type is refused at once.
    $VBDFS -f --backend-type vbd --no-mount > $VL/vbdfs2.log 2>&1 &
    local p2=$! rc
    if wait_exit $p2 10; then wait $p2; rc=$?; else rc=timeout; kill $p2 2>/dev/null; fi
    vcheck second-instance-refused sh -c "[ $rc = 1 ] && grep -q 'another vbdfs already serves' $VL/vbdfs2.log"
}
# vbdfs_stop: TERM, wait, show its log
vbdfs_stop() {
    [ -n "$VBDFS_PID" ] || return 0
    kill $VBDFS_PID 2>/dev/null
    if wait_exit $VBDFS_PID 30; then vr backend-clean-stop PASS; else vr backend-clean-stop FAIL; kill -9 $VBDFS_PID; fi
    say "---- backend log ----"
    tail -40 $VL/vbdfs.log | sed 's/^/backend| /'
    grep -q ' /vbd fuse' /proc/mounts && umount /vbd
    VBDFS_PID=
}
vbdfs_alive() { kill -0 "$VBDFS_PID" 2>/dev/null; }
# img_free IMG: wait (up to 10 s) until nobody holds IMG open: vbdfs takes
# QEMU's image locks, so qemu-img without -U opens it only once vbdfs let
# go of it after the guest went away.  Non-zero if it stays locked.
img_free() {
    local i=0
    while ! qemu-img info "$1" >/dev/null 2>&1; do
        [ $i -ge 50 ] && { qemu-img info "$1" 2>&1 | head -2 | sed 's/^/img-free| /'; return 1; }
        usleep 200000; i=$((i + 1))
    done
}

# xl disk spec for vbdfs: xl_disk TARGET [VDEV]
xl_disk() { echo "'format=raw,vdev=${2:-xvda},access=rw,backendtype=phy,script=vbdfs-hotplug,target=$1'"; }

# vdomu_create NAME DISKSPECS KARGS [VAR=VALUE...] -> DOMU_ID, DOMU_CON
#   (VAR=VALUE: mkdomcfg knobs for this guest only, e.g. VBDFS_VCPUS=2)
vdomu_create() {
    DOMU_CON=/var/log/xen/console/guest-$1.log
    DOMU_ID=
    rm -f $DOMU_CON
    (
        for kv in "$@"; do case "$kv" in [A-Z]*=*) export "$kv" ;; esac; done
        VBDFS_RAMDISK=/var/lib/xenlab/vbdfs-domU.cpio mkdomcfg "$1" "$2" "$3"
    ) > /etc/xenlab/$1.cfg
    if xl create /etc/xenlab/$1.cfg > $VL/$1.create 2>&1; then
        DOMU_ID=$(xl domid $1 2>/dev/null)
        vr $1-xl-create PASS "domid $DOMU_ID"
    else
        vr $1-xl-create FAIL "$(tail -3 $VL/$1.create | tr '\n' ' ')"
        xl destroy $1 2>/dev/null
        return 1
    fi
}
# con_get NAME REGEX -> first match of a sed group in the console log
con_val() { sed -n "s/.*$1.*/\1/p" $DOMU_CON | tr -d '\r' | head -1; }
show_console() {
    say "---- $1 console ----"
    sed "s/^/$1| /" $DOMU_CON 2>/dev/null | tr -d '\r' | grep -v '^.*| *$' | tail -${2:-60}
}

# vdomu_end NAME: xl destroy, device gone from /vbd, daemon alive
vdomu_end() {
    local n=$1 dir=/vbd/$DOMU_ID-${2:-51712}
    xl destroy $n 2>/dev/null
    if xl domid $n >/dev/null 2>&1; then vr $n-destroy FAIL; else vr $n-destroy PASS; fi
    local i=0
    while [ -e $dir ] && [ $i -lt 50 ]; do usleep 200000; i=$((i + 1)); done
    [ $HAVE_VBD = 1 ] && vcheck $n-vbd-removed test ! -e $dir
    vcheck $n-daemon-alive vbdfs_alive
}

# guest_steps NAME: one result per step of the guest's ext4 workout
guest_steps() {
    local st
    for st in mkfs mount sync umount remount verify fstrim umount2 fsck blkdiscard direct-io flush; do
        if grep -q "FS xvda $st ok" $DOMU_CON; then vr $1-guest-$st PASS
        else vr $1-guest-$st FAIL "$(grep -m1 "FS xvda $st" $DOMU_CON | tr -d '\r')"; fi
    done
}

# state_trace NAME DOMID [DEVID]: log backend/frontend state changes with
# dom0 uptime into $VL/NAME.states until the backend dir goes away
state_trace() {
    local be=/local/domain/0/backend/vbd/$2/${3:-51712} fe=/local/domain/$2/device/vbd/${3:-51712}
    local last= cur i=0
    while [ $i -lt 1500 ]; do
        cur="be=$(xenstore-read $be/state 2>/dev/null) fe=$(xenstore-read $fe/state 2>/dev/null)"
        [ "$cur" != "$last" ] && echo "$(up) $cur" >> $VL/$1.states
        [ "$cur" = "be= fe=" ] && [ -n "$last" ] && break
        last=$cur
        usleep 100000; i=$((i + 1))
    done
}

# rebind_domu NAME DISK1 DISK2: the guest unbinds and binds xvdb's blkfront
# up to 5 times (the same domain reconnecting) while xvda is under I/O.
# Linux 6.1 blkfront does not reconnect after a bind (on the kernel's
# blkback too: it stays Closed), so the device may stay gone after the
# first cycle; what must never happen is a hung guest (a frontend that
# "connects" without rings), a backend and frontend that disagree, or a
# disk that stops working.
rebind_domu() {
    local n=$1 c g r o
    vdomu_create $n "$2,$3" "vbdfs.rebind=xvdb:5:xvda"
    for p in /local/domain/0/backend/vbd/$DOMU_ID/51728/state /local/domain/$DOMU_ID/device/vbd/51728/state; do
        xenstore-watch $p 2>/dev/null | while read w; do echo "$(up) ${w%/state} $(xenstore-read $w 2>/dev/null)"; done >> $VL/$n.states &
    done
    if wait_grep $DOMU_CON 'REBIND xvdb node=' 150; then vr $n-guest-no-hang PASS
    else vr $n-guest-no-hang FAIL "no REBIND result within 150s"; fi
    show_console $n 40
    sed "s/^/$n-states| /" $VL/$n.states
    c=$(con_val 'REBIND xvdb node=[^ ]* cycles=\([0-9]*\)')
    g=$(con_val 'REBIND xvdb node=[^ ]* cycles=[0-9]* good=\([0-9]*\)')
    r=$(con_val 'REBIND xvdb node=.* result=\([a-z]*\)')
    o=$(con_val 'REBIND xvdb node=.* other=\([A-Za-z]*\)')
    say "$n: cycles=$c good=$g result=$r other=$o"
    vcheck $n-each-reconnect-serves sh -c "[ -n '$c' ] && [ '$g' = '$c' ] && { [ '$r' = back -a '$c' = 5 ] || [ '$r' = gone ]; }"
    vcheck $n-other-disk-works [ "$o" = ok ]
    if [ "$r" = gone ]; then
        vcheck $n-both-closed sh -c "[ \"\$(xenstore-read /local/domain/0/backend/vbd/$DOMU_ID/51728/state)\" = 6 ] && [ \"\$(xenstore-read /local/domain/$DOMU_ID/device/vbd/51728/state)\" = 6 ]"
    fi
}

# kmsg_check NAME: the guest kernel logged no I/O errors
kmsg_check() {
    local k=$(con_val 'KMSG-ERRORS \([0-9]*\)')
    if [ "$k" = 0 ]; then vr $1-guest-kernel-no-errors PASS
    else vr $1-guest-kernel-no-errors FAIL "$k: $(grep -m3 'KMSG' $DOMU_CON | tr -d '\r' | tr '\n' ' ')"; fi
}

# fs_dom0_view NAME FORMAT DIR REQUESTS_READER_PID: /vbd while the guest runs
fs_dom0_view() {
    local n=$1 fmt=$2 dir=$3 rq_pid=$4 f
    vcheck $n-vbd-dir test -d $dir
    ls -l /vbd/ > $VL/$n.ls 2>&1
    sed "s/^/ls-vbd| /" $VL/$n.ls
    vcheck $n-vbd-name-link test -e /vbd/$n-xvda
    f=$(awk '{print NF}' $dir/stat 2>/dev/null)
    vcheck $n-stat-17-fields [ "$f" = 17 ]
    cat $dir/stats > $VL/$n.stats 2>&1
    sed "s/^/stats| /" $VL/$n.stats
    vcheck $n-stats-flushes sh -c "grep -i 'flush' $VL/$n.stats | grep -q '[1-9]'"
    vcheck $n-stats-discards sh -c "grep -i 'discard' $VL/$n.stats | grep -q '[1-9]'"
    vcheck $n-stats-no-errors sh -c "! grep -q '_errors: *[1-9]' $VL/$n.stats"
    cat $dir/info > $VL/$n.info 2>&1
    sed "s/^/info| /" $VL/$n.info
    vcheck $n-info-format grep -qi "$fmt" $VL/$n.info
    kill $rq_pid 2>/dev/null; wait $rq_pid 2>/dev/null
    say "requests seen live: $(wc -l < $VL/$n.requests)"; head -3 $VL/$n.requests
    vcheck $n-requests-stream sh -c "[ \$(wc -l < $VL/$n.requests) -gt 10 ]"
    mkdir -p /mnt/$n
    if mount -t ext4 -o ro,noload,loop $dir/disk /mnt/$n 2> $VL/$n.mount; then
        vr $n-dom0-loop-mount PASS
        ls /mnt/$n/files | head -5
        vcheck $n-dom0-files-verify sh -c "cd /mnt/$n && sha256sum -c MANIFEST > $VL/$n.verify 2>&1"
        umount /mnt/$n
    else
        vr $n-dom0-loop-mount FAIL "$(cat $VL/$n.mount)"
    fi
    vcheck $n-dom0-fsck /usr/local/bin/e2fsck -fn $dir/disk
}

# fs_domu NAME FORMAT IMAGE [extra kargs]: the full guest workout on one disk
fs_domu() {
    local n=$1 fmt=$2 img=$3 kargs=${4:-} dir rq_pid st
    vdomu_create $n "$(xl_disk $fmt:$img)" "xenlab.disks=xvda xenlab.seedmb=4 xenlab.mb=4 vbdfs.fs=xvda $kargs" || return 1
    dir=/vbd/$DOMU_ID-51712
    if [ $HAVE_VBD = 1 ]; then
        i=0; while [ ! -e $dir/requests ] && [ $i -lt 50 ]; do usleep 100000; i=$((i + 1)); done
        cat $dir/requests > $VL/$n.requests 2>&1 &
        rq_pid=$!
    fi
    if wait_grep $DOMU_CON 'XENLAB-DOMU: DONE' 150; then vr $n-guest-done PASS
    else vr $n-guest-done FAIL "no DONE within 150s"; fi
    show_console $n
    rs=$(con_val 'xvda seed-read sha256=\([0-9a-f]*\)')
    vcheck $n-reads-dom0-data [ -n "$rs" -a "$rs" = "${SEED:-none}" ]
    ws=$(con_val 'xvda write sha256=\([0-9a-f]*\) ')
    rb=$(con_val 'xvda write sha256=.* readback sha256=\([0-9a-f]*\)')
    vcheck $n-write-readback [ -n "$ws" -a "$ws" = "$rb" ]
    guest_steps $n
    kmsg_check $n
    # ---- dom0's view while the guest runs
    [ $HAVE_VBD = 1 ] && fs_dom0_view $n $fmt $dir $rq_pid
    # ---- teardown and the image itself
    vdomu_end $n
    case $fmt in
        qcow2) vcheck $n-image-released img_free $img
               qemu-img check $img > $VL/$n.check 2>&1; st=$?
               sed "s/^/qemu-img-check| /" $VL/$n.check
               vcheck $n-qemu-img-check [ $st = 0 ]
               qemu-img convert -O raw $img /tmp/$n.raw; raw=/tmp/$n.raw ;;
        *) raw=$img ;;
    esac
    tsha=$(con_val 'FS xvda tail-sha256=\([0-9a-f]*\)')
    bytes=$(stat -c %s $raw)
    isha=$(dd if=$raw bs=1M skip=$((bytes / 1048576 - 4)) count=4 2>/dev/null | sha256sum | cut -d' ' -f1)
    vcheck $n-image-holds-guest-data [ -n "$tsha" -a "$tsha" = "$isha" ]
    vcheck $n-image-fsck /usr/local/bin/e2fsck -fn $raw
    [ "$raw" != "$img" ] && rm -f $raw
}

say "vbdfs hook: sections: $SECTIONS"

# ------------------------------------------------------------------ baseline
# The same guest workout on the kernel's xen-blkback: proves the lab guest
# and its tools, so a failure further down is vbdfs's.
if section baseline; then
    say "vbdfs: baseline: guest workout on kernel xen-blkback"
    make_image /var/lib/xenlab/v-base.img 64
    DOMU_CON=/var/log/xen/console/guest-vbase.log
    VBDFS_RAMDISK=/var/lib/xenlab/vbdfs-domU.cpio mkdomcfg vbase "'format=raw,vdev=xvda,access=rw,target=/var/lib/xenlab/v-base.img'" "vbdfs.fs=xvda" > /etc/xenlab/vbase.cfg
    xl create /etc/xenlab/vbase.cfg > $VL/vbase.create 2>&1
    DOMU_ID=$(xl domid vbase 2>/dev/null)
    state_trace vbase $DOMU_ID &
    if wait_grep $DOMU_CON 'XENLAB-DOMU: DONE' 240; then
        vr baseline-guest-done PASS
    else
        vr baseline-guest-done FAIL "$(tail -2 $VL/vbase.create)"
    fi
    show_console vbase 40
    sed "s/^/vbase-states| /" $VL/vbase.states
    guest_steps baseline
    kmsg_check baseline
    xl destroy vbase
    rm -f /var/lib/xenlab/v-base.img
fi
# The same domain reconnecting, on the kernel's xen-blkback.
if section rebindbase; then
    say "vbdfs: baseline: blkfront unbind/bind on kernel xen-blkback"
    make_image /var/lib/xenlab/v-rb1.img 32
    make_image /var/lib/xenlab/v-rb2.img 32
    rebind_domu vrbbase "'format=raw,vdev=xvda,access=rw,target=/var/lib/xenlab/v-rb1.img'" \
        "'format=raw,vdev=xvdb,access=rw,target=/var/lib/xenlab/v-rb2.img'"
    xl destroy vrbbase
    rm -f /var/lib/xenlab/v-rb1.img /var/lib/xenlab/v-rb2.img
fi
rmmod xen-blkback 2>/dev/null
vcheck blkback-unloaded sh -c "! grep -q '^xen_blkback ' /proc/modules"

# ------------------------------------------------------------------ hv
if section hv; then
    say "vbdfs: transport unit test (t/460-hv-xen) in dom0"
    $VB/460-hv-xen.t > $VL/460.out 2>&1
    rc=$?
    sed 's/^/460| /' $VL/460.out
    vcheck hv-unit sh -c "[ $rc = 0 ] && grep -q '^1\.\.[1-9]' $VL/460.out && ! grep -q '^not ok' $VL/460.out"
fi

# ------------------------------------------------------------------ probe
# probe_domu NAME "HVPROBE ARGS" : hvprobe serves xvda of a lab domU (the
# lab's seed / write / readback test), then the image is compared.
probe_domu() {
    local n=$1 args=$2 img=/var/lib/xenlab/$1.img pid
    make_image $img 32
    $VB/hvprobe $args /local/domain/0/backend/vbd $img > $VL/$n.log 2>&1 &
    pid=$!
    domu_disk_test $n "'format=raw,vdev=xvda,access=rw,backendtype=phy,script=/etc/xenlab/hotplug-noop.sh,target=$img'" xvda 120
    domu_destroy $n
    check_persisted $n $img
    if wait_exit $pid 20; then wait $pid; rc=$?; else kill $pid; rc=timeout; fi
    sed "s/^/$n| /" $VL/$n.log
    check $n-probe-clean-exit [ "$rc" = 0 ]
    check $n-probe-served grep -q 'served reads=[1-9].* writes=[1-9].* errors=0' $VL/$n.log
    # hv_xen reads its own domid from xenstore ("domid" in its home).
    check $n-probe-self-domid grep -q ', backend dom0,' $VL/$n.log
}

if section probe; then
    say "vbdfs: hvprobe serves a real blkfront through hv_xen.c"
    vcheck dom0-domid-key [ "$(xenstore-read /local/domain/0/domid)" = 0 ]
    VBDFS_RAMDISK=/var/lib/xenlab/vbdfs-domU.cpio
    VBDFS_KARGS=
    probe_domu vbdfs-probe-copy ""
    grep -q 'ring 1 page' $VL/vbdfs-probe-copy.log && vr probe-copy-1page PASS || vr probe-copy-1page FAIL
    VBDFS_KARGS="xen_blkfront.max_ring_page_order=2"
    probe_domu vbdfs-probe-map "--map --ring-order 2"
    grep -q 'ring 4 page' $VL/vbdfs-probe-map.log && vr probe-map-4pages PASS || vr probe-map-4pages FAIL
    VBDFS_KARGS=
fi

# ------------------------------------------------------------------ hotplug
if section hotplug; then
    say "vbdfs: vbdfs-hotplug under xl (control plane: the lab's fake backend loop)"
    HP=/etc/xen/scripts/vbdfs-hotplug
    rm -f /tmp/hpfake.stop
    fake_backend_loop vbd /tmp/hpfake.stop &
    fbpid=$!
    dd if=/dev/zero of=/var/lib/xenlab/hp.qcow2 bs=1M count=1 2>/dev/null
    VBDFS_RAMDISK=/var/lib/xenlab/vbdfs-domU.cpio
    mkdomcfg vbdfs-hp "'format=raw,vdev=xvda,access=rw,backendtype=phy,script=vbdfs-hotplug,target=qcow2:/var/lib/xenlab/hp.qcow2'" "" > /etc/xenlab/vbdfs-hp.cfg
    if xl create /etc/xenlab/vbdfs-hp.cfg > $VL/hp-create.out 2>&1; then vr hotplug-xl-create PASS
    else vr hotplug-xl-create FAIL "$(tail -3 $VL/hp-create.out | tr '\n' ' ')"; fi
    d=$(xl domid vbdfs-hp 2>/dev/null)
    be=/local/domain/0/backend/vbd/$d/51712
    vcheck hotplug-params-format-prefix test "$(xenstore-read $be/params 2>/dev/null)" = qcow2:/var/lib/xenlab/hp.qcow2
    vcheck hotplug-status-connected test "$(xenstore-read $be/hotplug-status 2>/dev/null)" = connected
    if xl block-attach vbdfs-hp 'format=raw,vdev=xvdb,access=rw,backendtype=phy,script=vbdfs-hotplug,target=raw:/var/lib/xenlab/missing.img' > $VL/hp-attach.out 2>&1; then
        vr hotplug-missing-image-refused FAIL "xl block-attach succeeded"
    else
        vr hotplug-missing-image-refused PASS "$(grep -m1 -o 'vbdfs-hotplug: .*' $VL/hp-attach.out)"
    fi
    sed 's/^/hp-attach| /' $VL/hp-attach.out | tail -5
    xl destroy vbdfs-hp
    vcheck hotplug-destroy sh -c "! xl domid vbdfs-hp"
    touch /tmp/hpfake.stop; wait $fbpid 2>/dev/null
    VBDFS_RAMDISK=
fi

if section raw || section qcow2 || section overlay || section nego || section life || section rebind; then
    vbdfs_start || SECTIONS=
fi
if section raw; then
    say "vbdfs: raw image"
    make_image /var/lib/xenlab/v-raw.img 64
    fs_domu vraw raw /var/lib/xenlab/v-raw.img
fi
if section qcow2; then
    say "vbdfs: qcow2 image"
    make_image /tmp/q.raw 64
    qemu-img convert -f raw -O qcow2 /tmp/q.raw /var/lib/xenlab/v-q.qcow2 && rm -f /tmp/q.raw
    fs_domu vqcow2 qcow2 /var/lib/xenlab/v-q.qcow2
fi
if section overlay; then
    say "vbdfs: qcow2 overlay on a zlib-compressed qcow2 base"
    make_image /tmp/b.raw 64
    qemu-img convert -c -f raw -O qcow2 /tmp/b.raw /var/lib/xenlab/v-base.qcow2 && rm -f /tmp/b.raw
    qemu-img create -q -f qcow2 -b /var/lib/xenlab/v-base.qcow2 -F qcow2 /var/lib/xenlab/v-ovl.qcow2
    bsha=$(sha256sum < /var/lib/xenlab/v-base.qcow2)
    fs_domu voverlay qcow2 /var/lib/xenlab/v-ovl.qcow2
    vcheck voverlay-base-untouched [ "$(sha256sum < /var/lib/xenlab/v-base.qcow2)" = "$bsha" ]
fi

# be_connected DOMID [DEVID] -> the backend's last "connected:" line for it
be_connected() { grep "/$1/${2:-51712}: connected:" $VL/vbdfs.log | tail -1; }

if section nego; then
    say "vbdfs: negotiation: persistent grants off (blkfront feature_persistent=0)"
    make_image /var/lib/xenlab/v-np.img 64
    fs_domu vnopersist raw /var/lib/xenlab/v-np.img "xen_blkfront.feature_persistent=0 xen_blkfront.max_indirect_segments=128"
    l=$(be_connected $DOMU_ID)
    say "backend: $l"
    vcheck vnopersist-negotiated-no-persistent sh -c "echo '$l' | grep -q 'connected' && ! echo '$l' | grep -q 'persistent grants'"
    vcheck vnopersist-guest-indirect-128 grep -q 'FS xvda .* max_segments=128 ' $DOMU_CON
    rm -f /var/lib/xenlab/v-np.img

    say "vbdfs: negotiation: 2 vCPUs, 2 queues, 16-page rings, indirect segments"
    make_image /tmp/mq.raw 64
    qemu-img convert -f raw -O qcow2 /tmp/mq.raw /var/lib/xenlab/v-mq.qcow2 && rm -f /tmp/mq.raw
    # blkfront preallocates (ring slots x segments) pages per queue for
    # persistent grants: 2 x 512 x 33 pages here, hence 512 MiB.  The
    # lighter guest test (no ext4): a 2-vCPU guest under TCG is slow.
    vdomu_create vmq "$(xl_disk qcow2:/var/lib/xenlab/v-mq.qcow2)" \
        "xenlab.disks=xvda xenlab.seedmb=4 xenlab.mb=4 vbdfs.dio=xvda xen_blkfront.max_queues=2 xen_blkfront.max_ring_page_order=4" \
        DOMU_MEM=512 VBDFS_VCPUS=2
    state_trace vmq $DOMU_ID &
    if wait_grep $DOMU_CON 'XENLAB-DOMU: DONE' 150; then vr vmq-guest-done PASS; else vr vmq-guest-done FAIL; fi
    show_console vmq 30
    sed 's/^/vmq-states| /' $VL/vmq.states
    rs=$(con_val 'xvda seed-read sha256=\([0-9a-f]*\)')
    vcheck vmq-reads-dom0-data [ -n "$rs" -a "$rs" = "${SEED:-none}" ]
    ws=$(con_val 'xvda write sha256=\([0-9a-f]*\) ')
    rb=$(con_val 'xvda write sha256=.* readback sha256=\([0-9a-f]*\)')
    vcheck vmq-write-readback [ -n "$ws" -a "$ws" = "$rb" ]
    l=$(grep "/$DOMU_ID/51712: connected:" $VL/vbdfs.log | head -1)
    say "backend: $l"
    vcheck vmq-negotiated-2-queues-order-4 sh -c "echo '$l' | grep -q '2 queues, ring order 4, persistent grants'"
    vcheck vmq-guest-sees-2-queues grep -q 'DIO xvda queues=2 max_segments=32 cpus=2 bad=0' $DOMU_CON
    kmsg_check vmq
    vdomu_end vmq
    vcheck vmq-image-released img_free /var/lib/xenlab/v-mq.qcow2
    vcheck vmq-qemu-img-check qemu-img check -q /var/lib/xenlab/v-mq.qcow2
    rm -f /var/lib/xenlab/v-mq.qcow2
fi

if section life; then
    say "vbdfs: guest reboot (on_reboot=restart: a new domain reconnects to the same image)"
    make_image /tmp/rb.raw 64
    qemu-img convert -f raw -O qcow2 /tmp/rb.raw /var/lib/xenlab/v-rb.qcow2 && rm -f /tmp/rb.raw
    VBDFS_ON_REBOOT=restart vdomu_create vreboot "$(xl_disk qcow2:/var/lib/xenlab/v-rb.qcow2)" "vbdfs.reboot=xvda"
    d1=$DOMU_ID
    # A reader holds the disk file open across the reboot, as a loop mount
    # would: the new domain's disk shares the image vbdfs still has open.
    held=0
    if [ $HAVE_VBD = 1 ]; then
        i=0; while [ ! -e /vbd/$d1-51712/disk ] && [ $i -lt 50 ]; do usleep 200000; i=$((i + 1)); done
        exec 7</vbd/$d1-51712/disk && held=1
        vcheck vreboot-disk-held-open [ $held = 1 ]
    fi
    if wait_grep $DOMU_CON 'REBOOT-OK' 120; then vr vreboot-marker-survives PASS
    else vr vreboot-marker-survives FAIL; fi
    wait_grep $DOMU_CON 'XENLAB-DOMU: DONE' 60
    show_console vreboot 20
    DOMU_ID=$(xl domid vreboot 2>/dev/null)
    vcheck vreboot-new-domain [ -n "$DOMU_ID" -a "$DOMU_ID" != "$d1" ]
    vcheck vreboot-backend-reconnected sh -c "[ -n \"\$(grep '/$DOMU_ID/51712: connected:' $VL/vbdfs.log)\" ]"
    if [ $held = 1 ]; then
        vcheck vreboot-held-image-shared grep -q "/$DOMU_ID/51712: .* is still open for a reader of a detached disk" $VL/vbdfs.log
        vcheck vreboot-held-view-is-live sh -c "cmp -n 4194304 - /vbd/$DOMU_ID-51712/disk <&7"
        exec 7<&-
    fi
    vdomu_end vreboot
    vcheck vreboot-image-released img_free /var/lib/xenlab/v-rb.qcow2
    vcheck vreboot-qemu-img-check qemu-img check -q /var/lib/xenlab/v-rb.qcow2
    rm -f /var/lib/xenlab/v-rb.qcow2

    say "vbdfs: xl destroy under I/O"
    make_image /tmp/io.raw 64
    qemu-img convert -f raw -O qcow2 /tmp/io.raw /var/lib/xenlab/v-io.qcow2 && rm -f /tmp/io.raw
    vdomu_create vio "$(xl_disk qcow2:/var/lib/xenlab/v-io.qcow2)" "vbdfs.io=xvda"
    if wait_grep $DOMU_CON 'IO RUNNING' 120; then vr vio-guest-io-running PASS; else vr vio-guest-io-running FAIL; fi
    sleep 3
    vdomu_end vio
    vcheck vio-image-released img_free /var/lib/xenlab/v-io.qcow2
    vcheck vio-qemu-img-check qemu-img check -q /var/lib/xenlab/v-io.qcow2
    vcheck vio-released grep -q "/$DOMU_ID/51712: released" $VL/vbdfs.log
    rm -f /var/lib/xenlab/v-io.qcow2

    say "vbdfs: xl block-attach / block-detach on a running guest"
    make_image /var/lib/xenlab/v-h1.img 32
    make_image /tmp/h2.raw 32
    qemu-img convert -f raw -O qcow2 /tmp/h2.raw /var/lib/xenlab/v-h2.qcow2 && rm -f /tmp/h2.raw
    vdomu_create vhot "$(xl_disk raw:/var/lib/xenlab/v-h1.img)" "xenlab.disks=xvda"
    wait_grep $DOMU_CON 'XENLAB-DOMU: DONE' 120
    if xl block-attach vhot "$(xl_disk qcow2:/var/lib/xenlab/v-h2.qcow2 xvdb | tr -d "'")" > $VL/vhot.attach 2>&1; then
        vr vhot-block-attach PASS
    else
        vr vhot-block-attach FAIL "$(tail -2 $VL/vhot.attach | tr '\n' ' ')"
    fi
    if wait_xs /local/domain/$DOMU_ID/device/vbd/51728/state 4 60; then vr vhot-attached-connected PASS
    else vr vhot-attached-connected FAIL "frontend state $(xenstore-read /local/domain/$DOMU_ID/device/vbd/51728/state 2>/dev/null)"; fi
    [ $HAVE_VBD = 1 ] && vcheck vhot-attached-in-vbd test -d /vbd/$DOMU_ID-51728
    if xl block-detach vhot xvdb > $VL/vhot.detach 2>&1; then vr vhot-block-detach PASS
    else vr vhot-block-detach FAIL "$(tail -2 $VL/vhot.detach | tr '\n' ' ')"; fi
    vcheck vhot-detach-removed-backend sh -c "! xenstore-exists /local/domain/0/backend/vbd/$DOMU_ID/51728"
    if [ $HAVE_VBD = 1 ]; then
        i=0; while [ -e /vbd/$DOMU_ID-51728 ] && [ $i -lt 50 ]; do usleep 200000; i=$((i + 1)); done
        vcheck vhot-detached-gone-from-vbd test ! -e /vbd/$DOMU_ID-51728
    fi
    vdomu_end vhot
    vcheck vhot-image-released img_free /var/lib/xenlab/v-h2.qcow2
    vcheck vhot-qemu-img-check qemu-img check -q /var/lib/xenlab/v-h2.qcow2
    rm -f /var/lib/xenlab/v-h1.img /var/lib/xenlab/v-h2.qcow2
fi

# The same domain reconnecting, on vbdfs.
if section rebind; then
    say "vbdfs: blkfront unbind/bind in one guest under I/O"
    make_image /var/lib/xenlab/v-r1.img 32
    make_image /tmp/r2.raw 32
    qemu-img convert -f raw -O qcow2 /tmp/r2.raw /var/lib/xenlab/v-r2.qcow2 && rm -f /tmp/r2.raw
    rebind_domu vrebind "$(xl_disk raw:/var/lib/xenlab/v-r1.img)" "$(xl_disk qcow2:/var/lib/xenlab/v-r2.qcow2 xvdb)"
    vdomu_end vrebind
    vcheck vrebind-qemu-img-check qemu-img check -q /var/lib/xenlab/v-r2.qcow2
    rm -f /var/lib/xenlab/v-r1.img /var/lib/xenlab/v-r2.qcow2
fi

vbdfs_stop
vr hook-done PASS
