#!/bin/sh
# make install honours DESTDIR and PREFIX: programs and man pages land there.
. "$(dirname "$0")/lib.sh"

need_cmd make
plan 3
ok "make install into a DESTDIR" \
    make -s -C "$VBDFS_SRC" BUILD="$VBDFS_BUILD" DESTDIR="$T/root" PREFIX=/opt/vbd install
ok "vbdfs(8) installed under PREFIX/share/man" test -f "$T/root/opt/vbd/share/man/man8/vbdfs.8"
n=0
for p in vbdfs vbdctl vbd-front vbd-img; do
    [ -x "$VBDFS_BUILD/$p" ] || continue
    [ -x "$T/root/opt/vbd/sbin/$p" ] || [ -x "$T/root/opt/vbd/bin/$p" ] || n=$((n + 1))
done
is "$n" 0 "every built program installed"
done_testing
