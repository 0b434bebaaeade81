#!/bin/sh
# Makes a minimal root file system in ROOT for one dynamically linked
# program: the program at its own path, every shared library the dynamic
# loader maps for it (the NEEDED closure, as ldd resolves it) and the
# loader itself, in Debian's merged-/usr layout.  Nothing else: no shell,
# no package manager, no compiler.  Used by the Dockerfile's build stage
# (and by the image test's runtime probe).
#
#   scripts/image-rootfs.sh /ABSOLUTE/PATH/OF/PROGRAM ROOT
set -eu
prog=$1
root=$2
case $prog in /*) ;; *) echo "$0: the program's path must be absolute" >&2; exit 2 ;; esac
mkdir -p "$root/usr/lib"
[ -e "$root/lib" ] || ln -s usr/lib "$root/lib"
if [ -d /lib64 ]; then
    mkdir -p "$root/usr/lib64"
    [ -e "$root/lib64" ] || ln -s usr/lib64 "$root/lib64"
fi
copy() {  # copy FILE to the same path under ROOT, dereferenced
    mkdir -p "$root$(dirname "$1")"
    cp -L "$1" "$root$1"
}
copy "$prog"
if ldd "$prog" | grep "not found" >&2; then
    exit 1
fi
ldd "$prog" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u | while read -r lib; do
    copy "$lib"
done
