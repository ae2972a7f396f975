#!/usr/bin/env bash
# Builds the rpm packages bannin-agent and bannin-collector, and their
# -debuginfo packages, from the workspace's binaries with rpmbuild (Debian's
# `rpm` package has it; on a RHEL-family host, `rpm-build`).
#
#   deploy/rpm/build.sh [--profile dist|release|debug] [--out DIR] [--no-build] [--fast]
#
# The same as deploy/debian/build.sh, for RHEL, Rocky, Alma, Fedora and SUSE:
# the same stripped binaries (debug information in -debuginfo, under
# /usr/lib/debug/.build-id/), the same hardened systemd units, configs that are
# %config(noreplace) (rpm keeps an administrator's changes and writes the new
# default beside it as .rpmnew), the same state-directory modes. Packages in
# target/rpm/. --fast compresses with gzip instead of xz (tests).
set -euo pipefail
cd "$(dirname "$0")/../.."
usage() { sed -n '2,13p' "$0"; }
. deploy/package-lib.sh

parse_args "$@"
out=${out:-target/rpm}
payload=w9.xzdio
[ "$fast" = yes ] && payload=w1.gzdio
build_bins
command -v rpmbuild >/dev/null || {
  echo "build.sh: rpmbuild missing (Debian: apt-get install rpm; RHEL: dnf install rpm-build)" >&2
  exit 1
}

arch=$(uname -m)
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The trees the packages hold, staged as for the .deb.
agent="$work/stage/bannin-agent"
collector="$work/stage/bannin-collector"
stage_bin "$bins/bannin-agent" "$agent" usr/bin/bannin-agent "$agent"
install -D -m 0644 deploy/systemd/bannin-agent.service "$agent/usr/lib/systemd/system/bannin-agent.service"
install -D -m 0600 deploy/agent.example.toml "$agent/etc/bannin/agent.toml"
install -D -m 0644 README.md "$agent/usr/share/doc/bannin-agent/README.md"
install -D -m 0644 deploy/README.md "$agent/usr/share/doc/bannin-agent/DEPLOY.md"
mkdir -p "$agent/var/lib/bannin-agent" "$agent/etc/bannin/agent"

stage_bin "$bins/bannin-collector" "$collector" usr/bin/bannin-collector "$collector"
stage_bin "$bins/bannin" "$collector" usr/bin/bannin "$collector"
install -D -m 0644 deploy/systemd/bannin-collector.service "$collector/usr/lib/systemd/system/bannin-collector.service"
install -D -m 0640 deploy/collector.example.toml "$collector/etc/bannin/collector.toml"
install -D -m 0644 README.md "$collector/usr/share/doc/bannin-collector/README.md"
install -D -m 0644 deploy/README.md "$collector/usr/share/doc/bannin-collector/DEPLOY.md"
mkdir -p "$collector/var/lib/bannin" "$collector/etc/bannin/pki"

# spec NAME SUMMARY REQUIRES RECOMMENDS DESCRIPTION FILES SCRIPTLETS
spec() {
  cat <<EOF
Name: $1
Version: $version
Release: 1
Summary: $2
License: Apache-2.0
URL: https://example.invalid/bannin
BuildArch: $arch
Requires: $3
${4:+Recommends: $4}
AutoReqProv: no

%global debug_package %{nil}
%global __os_install_post %{nil}
%global _build_id_links none
%global _binary_payload $payload

%description
$5

%package debuginfo
Summary: Debug information for $1
Requires: $1 = %{version}-%{release}
AutoReqProv: no

%description debuginfo
Debug information for $1 (DWARF line tables), found by gdb, debuginfod and
systemd-coredump through the binaries' build ids.

%install
cp -a %{stage}/. %{buildroot}/

%files
$6

%files debuginfo
%attr(0644,root,root) /usr/lib/debug/.build-id/*/*.debug

$7
EOF
}

# Enabled on install; started by the administrator once the host is enrolled
# (the agent) or configured (the collector), as the .deb does.
systemd_scriptlets() { # unit restart-if-file
  cat <<EOF
%post
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || :
  if [ \$1 -eq 1 ]; then systemctl enable $1 >/dev/null 2>&1 || :; fi
  if [ -n "$2" ] && [ -f "$2" ]; then systemctl try-restart $1 >/dev/null 2>&1 || :; fi
fi

%preun
if [ \$1 -eq 0 ] && [ -d /run/systemd/system ]; then
  systemctl --no-reload disable --now $1 >/dev/null 2>&1 || :
fi

%postun
if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null 2>&1 || :; fi
EOF
}

spec bannin-agent \
  "Bannin endpoint agent: indicators of compromise to the collector over mutual TLS" \
  "nftables" "libpcap" \
  "Watches processes, files, accounts, logs, network and hardware for the
indicators of NIST SP 800-61, spools them durably and streams them to a
Bannin collector. Enroll with: bannin-agent enroll --collector HOST:PORT
--ca ca.pem --token-file FILE" \
  "%attr(0755,root,root) /usr/bin/bannin-agent
%attr(0644,root,root) /usr/lib/systemd/system/bannin-agent.service
%dir %attr(0755,root,root) /etc/bannin
%config(noreplace) %attr(0600,root,root) /etc/bannin/agent.toml
%dir %attr(0700,root,root) /etc/bannin/agent
%dir %attr(0700,root,root) /var/lib/bannin-agent
%doc %attr(0644,root,root) /usr/share/doc/bannin-agent/README.md
%doc %attr(0644,root,root) /usr/share/doc/bannin-agent/DEPLOY.md" \
  "$(systemd_scriptlets bannin-agent.service /etc/bannin/agent/agent.pem)" >"$work/bannin-agent.spec"

spec bannin-collector \
  "Bannin collector: fleet correlation, findings queue, response and evidence custody" \
  "shadow-utils" "" \
  "Receives the agents' telemetry over mutual TLS into a durable store,
correlates indicators across hosts, and serves responders (the bannin
command): triage, isolation, snapshots with a chain of custody, incidents." \
  "%attr(0755,root,root) /usr/bin/bannin-collector
%attr(0755,root,root) /usr/bin/bannin
%attr(0644,root,root) /usr/lib/systemd/system/bannin-collector.service
%dir %attr(0755,root,root) /etc/bannin
%config(noreplace) %attr(0640,root,bannin) /etc/bannin/collector.toml
%dir %attr(0750,root,bannin) /etc/bannin/pki
%dir %attr(0700,bannin,bannin) /var/lib/bannin
%doc %attr(0644,root,root) /usr/share/doc/bannin-collector/README.md
%doc %attr(0644,root,root) /usr/share/doc/bannin-collector/DEPLOY.md" \
  "%pre
getent group bannin >/dev/null || groupadd -r bannin
getent passwd bannin >/dev/null || useradd -r -g bannin -d /var/lib/bannin -s /sbin/nologin -c 'Bannin collector' bannin
exit 0

$(systemd_scriptlets bannin-collector.service "")
# The store holds evidence under custody: erasing the package keeps /var/lib/bannin." \
  >"$work/bannin-collector.spec"

for name in bannin-agent bannin-collector; do
  rpmbuild -bb --quiet \
    --define "_topdir $work/rpmbuild" \
    --define "_rpmdir $out" \
    --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
    --define "stage $work/stage/$name" \
    "$work/$name.spec" >"$work/$name.log" 2>&1 || {
    cat "$work/$name.log" >&2
    exit 1
  }
done

for name in bannin-agent bannin-collector bannin-agent-debuginfo bannin-collector-debuginfo; do
  echo "$out/$name-$version-1.$arch.rpm"
done
