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
