#!/bin/sh
# Every man page renders without groff warnings; every program answers
# --help with a usage text and exit 0, --version with the one version of
# util/version.h, and an unknown option with exit != 0.
. "$(dirname "$0")/lib.sh"

command -v groff >/dev/null || skip_all "needs groff (Debian package groff-base)"
pages=$(ls "$VBDFS_SRC"/man/*.[1-8])
progs=""
for p in vbdfs vbdctl vbd-front vbd-img; do
    [ -x "$VBDFS_BUILD/$p" ] && progs="$progs $p"
done
n_pages=$(echo "$pages" | wc -w)
n_progs=$(echo "$progs" | wc -w)
version=$(sed -n 's/^#define VBDFS_VERSION "\(.*\)"/\1/p' "$VBDFS_SRC/util/version.h")
plan $((n_pages + 4 * n_progs + 1))

ok "vbdfs(8) exists" test -f "$VBDFS_SRC/man/vbdfs.8"
for m in $pages; do
    out=$(groff -man -ww -z "$m" 2>&1)
    is "$out" "" "$(basename "$m") renders without warnings"
done
for p in $progs; do
    ok "$p --help exits 0" "$VBDFS_BUILD/$p" --help
    like "$(cat "$T/last.out")" "[Uu]sage" "$p --help prints a usage line"
    is "$("$VBDFS_BUILD/$p" --version | sed 's/.* //')" "$version" "$p --version prints $version"
    fails "$p rejects an unknown option" "$VBDFS_BUILD/$p" --no-such-option-xyz
done
done_testing
