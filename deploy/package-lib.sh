# Shared by deploy/debian/build.sh and deploy/rpm/build.sh (sourced, not run).
#
# What both package formats ship is staged the same way: each binary stripped
# (no symbol table, no debug sections), its debug information moved into a
# separate tree under /usr/lib/debug/.build-id/ — the layout Debian's -dbgsym
# and Fedora's -debuginfo packages use, which gdb, debuginfod and
# systemd-coredump look up by the binary's build id.

# parse_args "$@": sets profile, out, build, fast from the common options.
parse_args() {
  profile=dist
  out=
  build=yes
  fast=no
  while [ $# -gt 0 ]; do
    case "$1" in
      --profile) profile="$2"; shift 2 ;;
      --out) out="$2"; shift 2 ;;
      --no-build) build=no; shift ;;
      --fast) fast=yes; shift ;;
      -h|--help) usage; exit 0 ;;
      *) echo "$(basename "$0"): unknown argument $1" >&2; exit 64 ;;
    esac
  done
  case "$profile" in
    debug|dev) cargo_profile=dev; bins=target/debug ;;
    *) cargo_profile="$profile"; bins="target/$profile" ;;
  esac
  version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
}

# build_bins: the three binaries of the profile, built unless --no-build.
build_bins() {
  if [ "$build" = yes ]; then
    cargo build --locked --profile "$cargo_profile" -p bannin-agent -p bannin-collector -p bannin
  fi
  local b
  for b in bannin-agent bannin-collector bannin; do
    [ -x "$bins/$b" ] || { echo "$(basename "$0"): $bins/$b missing" >&2; exit 1; }
  done
}

# stage_bin SRC ROOT DEST DEBUGROOT: SRC stripped at ROOT/DEST (0755), its debug
# information at DEBUGROOT/usr/lib/debug/.build-id/NN/REST.debug (0644).
stage_bin() {
  local src=$1 root=$2 dest=$3 debugroot=$4
  local id
  id=$(readelf -n "$src" | sed -n 's/.*Build ID: \([0-9a-f]*\).*/\1/p' | head -1)
  if [ -z "$id" ]; then
    echo "$(basename "$0"): $src has no build id" >&2
    exit 1
  fi
  local dir="$debugroot/usr/lib/debug/.build-id/${id:0:2}"
  mkdir -p "$dir" "$(dirname "$root/$dest")"
  objcopy --only-keep-debug --compress-debug-sections=zlib "$src" "$dir/${id:2}.debug"
  chmod 0644 "$dir/${id:2}.debug"
  objcopy --strip-all --remove-section=.comment --add-gnu-debuglink="$dir/${id:2}.debug" \
    "$src" "$root/$dest"
  chmod 0755 "$root/$dest"
}
