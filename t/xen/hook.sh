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
#   hv      transport unit test (t/460-hv-xen.c) in dom0
#   probe   hvprobe (t/xen/hvprobe.c) serves a real blkfront through
#           hv_xen.c: grant copy on a 1-page ring, grant map on a 4-page ring
#   hotplug util/vbdfs-hotplug run by libxl (the lab's stand-in control
#           plane plays vbdfs): FORMAT:PATH targets pass through xl, a
#           missing image fails xl block-attach with our message

VL=/var/log/vbdfs
mkdir -p $VL
VB=/usr/local/bin
SECTIONS=$(cat /etc/vbdfs-lab/sections 2>/dev/null)
SECTIONS=${SECTIONS:-hv probe hotplug}
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

say "vbdfs hook: sections: $SECTIONS"
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
}

if section probe; then
    say "vbdfs: hvprobe serves a real blkfront through hv_xen.c"
    VBDFS_RAMDISK=/var/lib/xenlab/vbdfs-domU.cpio.gz
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
    VBDFS_RAMDISK=/var/lib/xenlab/vbdfs-domU.cpio.gz
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

vr hook-done PASS
