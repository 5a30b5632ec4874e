#!/bin/sh
# Debian's xenstore-* tools (the real libxenstore) against the simulator's
# xenstored: reads, writes, listing, removal, permissions, watches.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/sim-lib.sh"
need_cmd xenstore-ls xenstore-utils
plan 24
sim_start

is "$(xenstore-read /local/domain/0/name)" "Domain-0" "dom0 name preset"
ok "write two keys" xenstore-write /vbdfs/a/b hello /vbdfs/a/c "with space"
is "$(xenstore-read /vbdfs/a/b)" "hello" "read back"
is "$(xenstore-read /vbdfs/a/c)" "with space" "value with a space"
is "$(xenstore-list /vbdfs/a | tr '\n' ' ')" "b c " "list in creation order"
ok "exists" xenstore-exists /vbdfs/a/b
fails "missing node does not exist" xenstore-exists /vbdfs/nope
fails "reading a missing node fails" xenstore-read /vbdfs/nope
like "$(cat "$T/last.out")" "couldn't read path" "error message from the tool"
ok "mkdir-like empty write" xenstore-write /vbdfs/empty ""
is "$(xenstore-read /vbdfs/empty)" "" "empty value"
ok "rm a subtree" xenstore-rm /vbdfs/a
fails "gone after rm" xenstore-exists /vbdfs/a/b
ok "rm of a missing child with an existing parent is fine" xenstore-rm /vbdfs/empty/none
fails "invalid path rejected" xenstore-write "/vbdfs/bad//path" x
fails "invalid characters rejected" xenstore-write "/vbdfs/bad path" x

# Permissions as xenstore-ls -p shows them.
xenstore-write /vbdfs/p/node v
ok "chmod" xenstore-chmod /vbdfs/p/node n0 r5 b7
like "$(xenstore-ls -p /vbdfs/p)" 'node = "v".*\(n0,r5,b7\)' "perms listed"
ok "chmod -r recursive" xenstore-chmod -r /vbdfs/p n3
like "$(xenstore-ls -p /vbdfs/p)" 'node = "v".*\(n3\)' "recursive perms listed"

# Watches: the initial event at once, then one per change.
timeout 60 xenstore-watch -n 3 /vbdfs/w >"$T/watch.out" 2>&1 &
WPID=$!
at_exit "kill $WPID 2>/dev/null"
wait_for 20 grep -q /vbdfs/w "$T/watch.out"
xenstore-write /vbdfs/w/x 1
xenstore-write /vbdfs/other 1
xenstore-rm /vbdfs/w
wait $WPID
is "$(cat "$T/watch.out" | tr '\n' ' ')" "/vbdfs/w /vbdfs/w/x /vbdfs/w " "watch: initial, write below, removal"

# A directory too big for one XS_DIRECTORY reply goes through DIRECTORY_PART.
long=$(printf 'k%0100d' 0)
i=0; args=""
while [ $i -lt 60 ]; do args="$args /vbdfs/big/$long$i $i"; i=$((i + 1)); done
# shellcheck disable=SC2086
xenstore-write $args
is "$(xenstore-list /vbdfs/big | wc -l)" 60 "list of a 6 KiB directory (DIRECTORY_PART)"
is "$(xenstore-list /vbdfs/big | tail -n 1)" "${long}59" "last entry intact"
ok "simulator still running" sim_alive
done_testing
