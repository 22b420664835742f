#!/usr/bin/env bash
# `make install` and `make uninstall`:  scripts/install.sh install|uninstall
# Directories come from the environment as the Makefile passes them: PREFIX, LIBDIR, INCLUDEDIR,
# BINDIR, PKGCONFIGDIR, and DESTDIR (a staging root for packagers, prepended to each of them).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

: "${PREFIX:=/usr/local}"
: "${LIBDIR:=$PREFIX/lib}"
: "${INCLUDEDIR:=$PREFIX/include}"
: "${BINDIR:=$PREFIX/bin}"
: "${PKGCONFIGDIR:=$LIBDIR/pkgconfig}"
: "${DESTDIR:=}"

version=$(scripts/version.sh)
major=${version%%.*}
lib=$DESTDIR$LIBDIR

# install_file MODE SOURCE DEST: copy beside DEST and rename over it, so a program running with
# the old library keeps its mapping instead of seeing the file rewritten under it.
install_file() {
    install -m "$1" "$2" "$3.tmp.$$"
    mv -f "$3.tmp.$$" "$3"
}

# install_stripped MODE SOURCE DEST: install_file, the copy stripped of its debug info first
# (strip -S; STRIP names another strip). cargo's release profile keeps line tables, which make the
# files several times their size; their symbols stay, so profilers and backtraces still name
# functions. The unstripped build stays in target/release/.
install_stripped() {
    install -m "$1" "$2" "$3.tmp.$$"
    "${STRIP:-strip}" -S "$3.tmp.$$" || { rm -f "$3.tmp.$$"; return 1; }
    mv -f "$3.tmp.$$" "$3"
}

case ${1:-} in
install)
    # tms.pc first: its probe rebuilds the static library as a unit of its own, and the build
    # below then puts the ordinary build's libtms.a back in target/release.
    pc=$(scripts/tms-pc.sh "$PREFIX" "$LIBDIR" "$INCLUDEDIR")
    scripts/build.sh
    install -d "$lib" "$DESTDIR$INCLUDEDIR" "$DESTDIR$PKGCONFIGDIR"
    # The real file carries the full version; libtms.so.<major> (the SONAME) is what programs
    # load at run time, libtms.so what `-ltms` finds when linking.
    install_stripped 0755 target/release/libtms.so "$lib/libtms.so.$version"
    ln -sfn "libtms.so.$version" "$lib/libtms.so.$major"
    ln -sfn "libtms.so.$major" "$lib/libtms.so"
    install_stripped 0644 target/release/libtms.a "$lib/libtms.a"
    install_file 0644 include/tms.h "$DESTDIR$INCLUDEDIR/tms.h"
    printf '%s\n' "$pc" >"target/tms.pc"
    install_file 0644 target/tms.pc "$DESTDIR$PKGCONFIGDIR/tms.pc"
    # The operators' command-line tool is built by its own crate; install it once it exists.
    if [[ -x target/release/tms ]]; then
        install -d "$DESTDIR$BINDIR"
        install_stripped 0755 target/release/tms "$DESTDIR$BINDIR/tms"
    fi
    echo "installed libtms $version into ${DESTDIR}${PREFIX}"
    echo "programs find libtms.so.$major at run time through an rpath (-Wl,-rpath,$LIBDIR) or, when"
    echo "$LIBDIR is in the loader's path (/etc/ld.so.conf), after running ldconfig as root"
    ;;
uninstall)
    rm -f "$lib/libtms.so.$version" "$lib/libtms.so.$major" "$lib/libtms.so" "$lib/libtms.a" \
        "$DESTDIR$INCLUDEDIR/tms.h" "$DESTDIR$PKGCONFIGDIR/tms.pc" "$DESTDIR$BINDIR/tms"
    echo "removed libtms $version from ${DESTDIR}${PREFIX}"
    ;;
*)
    echo "usage: $0 install|uninstall" >&2
    exit 2
    ;;
esac
