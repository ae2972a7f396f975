#!/usr/bin/env bash
# Builds the Debian packages bannin-agent and bannin-collector, and their
# bannin-agent-dbgsym and bannin-collector-dbgsym, from the workspace's binaries
# with dpkg-deb (Debian's own tool, nothing else to install).
#
#   deploy/debian/build.sh [--profile dist|release|debug] [--out DIR] [--no-build] [--fast]
#
# Default: `cargo build --profile dist` (fat LTO, one codegen unit) of the three
# binaries, packages in target/debian/. The binaries are shipped stripped; their
# debug information goes to the -dbgsym packages (/usr/lib/debug/.build-id/),
# as Debian's own tooling does. --fast compresses with gzip -1 instead of xz
# (tests: debug binaries are large). The version is the workspace's. Configs
# under /etc/bannin are conffiles: dpkg never overwrites one an administrator changed.
set -euo pipefail
cd "$(dirname "$0")/../.."
usage() { sed -n '2,13p' "$0"; }
. deploy/package-lib.sh

parse_args "$@"
out=${out:-target/debian}
compress=(-Zxz)
[ "$fast" = yes ] && compress=(-Zgzip -z1)
build_bins

arch=$(dpkg --print-architecture)
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# installed_size ROOT: what dpkg shows as Installed-Size (KiB), without DEBIAN/.
installed_size() { du -sk --exclude=DEBIAN "$1" | cut -f1; }

# dbgsym NAME: builds NAME-dbgsym from $work/NAME-dbgsym (what stage_bin moved there).
dbgsym() {
  local name=$1 root="$work/$1-dbgsym"
  local ids
  ids=$(find "$root/usr/lib/debug/.build-id" -name '*.debug' | sed 's|.*/\(..\)/\(.*\)\.debug|\1\2|' | sort | tr '\n' ' ')
  mkdir -p "$root/DEBIAN"
  cat >"$root/DEBIAN/control" <<EOF
Package: $name-dbgsym
Version: $version
Architecture: $arch
Maintainer: Bannin maintainers <maintainers@bannin.invalid>
Section: debug
Priority: optional
Depends: $name (= $version)
Installed-Size: $(installed_size "$root")
Auto-Built-Package: debug-symbols
Build-Ids: ${ids% }
Description: debug symbols for $name
EOF
  dpkg-deb --root-owner-group "${compress[@]}" --build "$root" "$out/$name-dbgsym_${version}_${arch}.deb" >/dev/null
}

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
Installed-Size: $(installed_size "$root")
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
stage_bin "$bins/bannin-agent" "$root" usr/bin/bannin-agent "$work/bannin-agent-dbgsym"
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
dbgsym bannin-agent

### bannin-collector (and the operator CLI)
root="$work/bannin-collector"
stage_bin "$bins/bannin-collector" "$root" usr/bin/bannin-collector "$work/bannin-collector-dbgsym"
stage_bin "$bins/bannin" "$root" usr/bin/bannin "$work/bannin-collector-dbgsym"
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
dbgsym bannin-collector

for name in bannin-agent bannin-collector bannin-agent-dbgsym bannin-collector-dbgsym; do
  echo "$out/${name}_${version}_${arch}.deb"
done
