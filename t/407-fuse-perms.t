#!/bin/sh
# Permissions: without allow_other only root sees the tree; with
# --allow-other and a group, members of that group may read (files 0440,
# directories 0550, group-owned) and other users may not.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-fuse.sh"
need_cmd setpriv util-linux
plan 8

qemu-img create -q -f raw "$T/a.raw" 4M
chmod 755 "$T"
as_user() { # GID CMD... : run as uid 65534 with only that group
    _g=$1; shift
    setpriv --reuid=65534 --regid="$_g" --clear-groups "$@"
}
start_tree
tcmd add 5 51712 raw "$T/a.raw"
fails "without allow_other another user cannot even look" as_user 65534 ls "$M/5-51712"
stop_tree

G=4242
start_tree -a -g $G
tcmd add 5 51712 raw "$T/a.raw"
is "$(stat -c '%a %g' "$M/5-51712/stat") $(stat -c '%a %g' "$M/5-51712")" "440 $G 550 $G" \
    "with a group: files 0440, directories 0550, owned by the group"
ok "a member of the group reads stat" as_user $G cat "$M/5-51712/stat"
ok "and the disk" as_user $G dd if="$M/5-51712/disk" of=/dev/null bs=1M count=1 status=none
fails "but cannot write it" as_user $G sh -c "printf x | dd of='$M/5-51712/disk' conv=notrunc status=none"
fails "a user outside the group cannot read" as_user 65534 cat "$M/5-51712/stat"
grep -q "Permission denied" "$T/last.out"; is $? 0 "EACCES"
ok "the tree stops cleanly (exit 0)" stop_tree
done_testing
