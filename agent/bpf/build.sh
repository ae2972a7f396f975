#!/bin/sh
# Rebuilds agent/bpf/bannin.bpf.o from bannin.bpf.c. Needs clang and libbpf's
# headers (Debian: apt-get install clang libbpf-dev). The object is checked in,
# so building Bannin needs neither; .ci/run rebuilds it and fails if the
# checked-in object differs from what this source builds.
#
#   agent/bpf/build.sh            rebuild in place
#   agent/bpf/build.sh OUT.o      build into OUT.o (the check)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/bannin.bpf.o}
cd "$here"
# -g for BTF (CO-RE needs it); the DWARF is stripped after, and paths are
# mapped so that the object does not depend on where the checkout lives.
clang -O2 -g -target bpf -D__TARGET_ARCH_x86 \
    -fdebug-prefix-map="$here"=. -fmacro-prefix-map="$here"=. \
    -Wall -Werror \
    -c bannin.bpf.c -o "$out.tmp"
llvm-strip -g "$out.tmp"
mv "$out.tmp" "$out"
