#!/bin/sh
# The /vbd tree follows the device registry: directories, symlinks and
# block/ entries appear and disappear without remounting; names, modes and
# errors (ENOENT, EACCES) are as documented; info and info.json describe
# the device and its image; unmount and SIGTERM stop cleanly.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-fuse.sh"
need_cmd jq jq
plan 30

qemu-img create -q -f raw "$T/a.raw" 16M
qemu-img create -q -f raw "$T/b.raw" 8M
start_tree
ok "add a device" tcmd add 5 51712 raw "$T/a.raw" xvda web1
ok "its directory appears" test -d "$M/5-51712"
is "$(readlink "$M/web1-xvda")" "5-51712" "symlink <domain>-<vdev> names it"
is "$(ls "$M/5-51712" | tr '\n' ' ')" "disk info info.json map requests stat stats " "device files"
is "$(ls "$M/block")" "vbd-5-51712" "block/ lists it for iostat"
is "$(stat -c %a "$M/5-51712/stat") $(stat -c %a "$M/5-51712") $(stat -c %a "$M/5-51712/disk")" "400 500 400" \
    "root-only modes; disk read-only without --writable"
is "$(stat -c %s "$M/5-51712/disk")" 16777216 "disk has the virtual size"
ok "add a second one without a domain name" tcmd add 7 51728 raw "$T/b.raw"
is "$(ls "$M" | tr '\n' ' ')" "5-51712 7-51728 block diskstats web1-xvda " "root listing"
fails "unknown name is ENOENT" stat "$M/nosuch"
grep -q "No such file" "$T/last.out"; is $? 0 "ENOENT message"
fails "writing stat is refused" sh -c "echo 1 > '$M/5-51712/stat'"
grep -q "Permission denied" "$T/last.out"; is $? 0 "EACCES"
fails "disk not writable without --writable" sh -c "echo x | dd of='$M/5-51712/disk' conv=notrunc status=none"
fails "no new files" touch "$M/5-51712/new"
# info / info.json
info=$(cat "$M/5-51712/info")
like "$info" "^device: 5-51712" "info names the device"
like "$(printf '%s\n' "$info" | grep '^image0.format')" "^image0.format: raw$" "info: image format"
like "$(printf '%s\n' "$info" | grep '^image0.virtual_size')" ": 16777216$" "info: virtual size"
is "$(jq -r '.images[0].path' "$M/5-51712/info.json")" "$T/a.raw" "info.json parses; image path"
is "$(jq -r '.vdev + " " + .domain + " " + (.devid|tostring)' "$M/5-51712/info.json")" "xvda web1 51712" \
    "info.json identity"
is "$(jq -r '.vdev' "$M/7-51728/info.json")" "null" "unknown vdev is null"
# removal
ok "remove a device" tcmd del 5-51712
ok "its directory is gone at once" sh -c "! test -e '$M/5-51712' && ! test -e '$M/web1-xvda' && ! test -e '$M/block/vbd-5-51712'"
is "$(ls "$M" | tr '\n' ' ')" "7-51728 block diskstats " "root listing after removal"
fails "a removed directory is empty even for its cwd" sh -c "cd '$M/7-51728' && echo '99 del 7-51728' > '$CTL' && sleep 0.5 && ls ."
tcmd add 5 51712 raw "$T/a.raw" xvda web1 && test -d "$M/5-51712"; is $? 0 "directory back"
tcmd add 8 51712 raw "$T/b.raw" xvda web1
is "$(ls "$M" | grep -c '^web1-xvda$')" 1 "two devices claiming one link name: listed once"
is "$(readlink "$M/web1-xvda")" "8-51712" "the newest wins"
# A clean stop on SIGTERM: the mount goes away and the helper exits 0.
kill -TERM "$TREE_PID"; wait_exit "$TREE_PID" 10; rc=$?
is "$rc $(mountpoint -q "$M" && echo mounted || echo unmounted)" "0 unmounted" "SIGTERM: exit 0, unmounted"
# fusermount3 -u from outside: the helper is told and exits by itself.
start_tree
tcmd add 5 51712 raw "$T/a.raw"
fusermount3 -u "$M"
wait_exit "$TREE_PID" 10; rc=$?
is "$rc $(mountpoint -q "$M" && echo mounted || echo unmounted)" "0 unmounted" "fusermount3 -u: helper exits 0"
done_testing
