#!/bin/sh
# Rebuilds the agent's eBPF objects (bannin.bpf.o: execs, forks and exits;
# flow.bpf.o: TCP connections) from their C sources. Needs clang, llvm-strip
# and libbpf's headers (Debian: apt-get install clang llvm libbpf-dev). The
# objects are checked in, so building Bannin needs none of it; .ci/run
# rebuilds them and fails if a checked-in object differs from its source.
#
#   agent/bpf/build.sh            rebuild in place
#   agent/bpf/build.sh DIR        build into DIR (the check)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here}
mkdir -p "$out"
cd "$here"
for name in bannin flow; do
    # -g for BTF (CO-RE needs it); the DWARF is stripped after, and paths are
    # mapped so that the object does not depend on where the checkout lives.
    clang -O2 -g -target bpf -D__TARGET_ARCH_x86 \
        -fdebug-prefix-map="$here"=. -fmacro-prefix-map="$here"=. \
        -Wall -Werror \
        -c "$name.bpf.c" -o "$out/$name.bpf.o.tmp"
    llvm-strip -g "$out/$name.bpf.o.tmp"
    mv "$out/$name.bpf.o.tmp" "$out/$name.bpf.o"
done
