#!/usr/bin/env bash
# Builds the Debian packages bannin-agent and bannin-collector from the workspace's
# binaries, with dpkg-deb (Debian's own tool, nothing else to install).
#
#   deploy/debian/build.sh [--profile release|dist|debug] [--out DIR] [--no-build] [--fast]
#
# --fast compresses with gzip -1 instead of xz (tests: debug binaries are large).
#
# Default: `cargo build --profile release` of the three binaries, packages in
# target/debian/. The version is the workspace's. Configs under /etc/bannin are
# conffiles: dpkg never overwrites one an administrator changed.
set -euo pipefail
cd "$(dirname "$0")/../.."

profile=release
out=target/debian
build=yes
compress=(-Zxz)
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --no-build) build=no; shift ;;
    --fast) compress=(-Zgzip -z1); shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 64 ;;
  esac
done

case "$profile" in
  debug|dev) cargo_profile=dev; bins=target/debug ;;
  *) cargo_profile="$profile"; bins="target/$profile" ;;
esac
if [ "$build" = yes ]; then
  cargo build --locked --profile "$cargo_profile" -p bannin-agent -p bannin-collector -p bannin
fi
for b in bannin-agent bannin-collector bannin; do
  [ -x "$bins/$b" ] || { echo "build.sh: $bins/$b missing" >&2; exit 1; }
done

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# install SRC DEST MODE under the package root $1
put() { install -D -m "$4" "$2" "$1/$3"; }

common_control() { # name description depends [recommends]
  cat <<EOF
Package: $1
Version: $version
Architecture: $arch
Maintainer: Bannin maintainers <maintainers@bannin.invalid>
Section: admin
Priority: optional
Depends: $3
EOF
  # The agent's capture filters are compiled by libpcap, loaded when a filter is given.
  if [ -n "${4:-}" ]; then echo "Recommends: $4"; fi
  cat <<EOF
Homepage: https://example.invalid/bannin
Description: $2
EOF
}

### bannin-agent
root="$work/bannin-agent"
put "$root" "$bins/bannin-agent" usr/bin/bannin-agent 0755
put "$root" deploy/systemd/bannin-agent.service lib/systemd/system/bannin-agent.service 0644
put "$root" deploy/agent.example.toml etc/bannin/agent.toml 0600
put "$root" README.md usr/share/doc/bannin-agent/README.md 0644
put "$root" deploy/README.md usr/share/doc/bannin-agent/DEPLOY.md 0644
mkdir -p "$root/DEBIAN"
{
  common_control bannin-agent "Bannin endpoint agent: indicators of compromise to the collector over mutual TLS" "libc6, nftables" "libpcap0.8"
  echo " Watches processes, files, accounts, logs, network and hardware for the"
  echo " indicators of NIST SP 800-61, spools them durably and streams them to a"
  echo " Bannin collector. Enroll with: bannin-agent enroll --collector HOST:PORT"
  echo " --ca ca.pem --token-file FILE"
} >"$root/DEBIAN/control"
echo /etc/bannin/agent.toml >"$root/DEBIAN/conffiles"
cat >"$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  install -d -m 0700 -o root -g root /var/lib/bannin-agent /etc/bannin/agent
  chmod 0600 /etc/bannin/agent.toml
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
    systemctl enable bannin-agent.service >/dev/null 2>&1 || true
    # Runs once the host is enrolled (the unit waits for its certificate).
    if [ -f /etc/bannin/agent/agent.pem ]; then
      systemctl restart bannin-agent.service >/dev/null 2>&1 || true
    fi
  fi
fi
exit 0
EOF
cat >"$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
  systemctl stop bannin-agent.service >/dev/null 2>&1 || true
fi
exit 0
EOF
cat >"$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = purge ]; then
  # The spool and the host's identity go with a purge, never with a remove.
  rm -rf /var/lib/bannin-agent /etc/bannin/agent
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
EOF
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
dpkg-deb --root-owner-group "${compress[@]}" --build "$root" "$out/bannin-agent_${version}_${arch}.deb" >/dev/null

### bannin-collector (and the operator CLI)
root="$work/bannin-collector"
put "$root" "$bins/bannin-collector" usr/bin/bannin-collector 0755
put "$root" "$bins/bannin" usr/bin/bannin 0755
put "$root" deploy/systemd/bannin-collector.service lib/systemd/system/bannin-collector.service 0644
put "$root" deploy/collector.example.toml etc/bannin/collector.toml 0640
put "$root" README.md usr/share/doc/bannin-collector/README.md 0644
put "$root" deploy/README.md usr/share/doc/bannin-collector/DEPLOY.md 0644
mkdir -p "$root/DEBIAN"
{
  common_control bannin-collector "Bannin collector: fleet correlation, findings queue, response and evidence custody" "libc6, adduser"
  echo " Receives the agents' telemetry over mutual TLS into a durable store,"
  echo " correlates indicators across hosts, and serves responders (the bannin"
  echo " command): triage, isolation, snapshots with a chain of custody, incidents."
} >"$root/DEBIAN/control"
echo /etc/bannin/collector.toml >"$root/DEBIAN/conffiles"
cat >"$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  if ! getent passwd bannin >/dev/null; then
    adduser --system --group --home /var/lib/bannin --no-create-home bannin >/dev/null
  fi
  install -d -m 0700 -o bannin -g bannin /var/lib/bannin
  install -d -m 0750 -o root -g bannin /etc/bannin/pki
  chown root:bannin /etc/bannin/collector.toml
  chmod 0640 /etc/bannin/collector.toml
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
    systemctl enable bannin-collector.service >/dev/null 2>&1 || true
  fi
fi
exit 0
EOF
cat >"$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
  systemctl stop bannin-collector.service >/dev/null 2>&1 || true
fi
exit 0
EOF
cat >"$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
# The store holds evidence under custody: a purge keeps /var/lib/bannin; remove it by hand.
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
EOF
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
dpkg-deb --root-owner-group "${compress[@]}" --build "$root" "$out/bannin-collector_${version}_${arch}.deb" >/dev/null

echo "$out/bannin-agent_${version}_${arch}.deb"
echo "$out/bannin-collector_${version}_${arch}.deb"
