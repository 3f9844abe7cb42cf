#!/usr/bin/env bash
# The agent's Debian packages: builds all three (scripts/build-deb.sh), lintian on each (no
# errors allowed), then installs one into a Debian bookworm root the way a Raspberry Pi OS user
# does, `apt install ./pifleet-agent_<version>_<arch>.deb`, with no systemd running (a chroot):
#   - the binary runs, the files and modes are right, the unit is enabled (systemctl --root)
#   - the pifleet system user exists, in group gpio where the root has one (arm64: like Pi OS
#     and the image) and without it where there is none (amd64: a PC)
#   - /etc/pifleet/agent.toml is a conffile, root:pifleet 0640, and an edit to it survives a
#     reinstall
#   - remove: the binary goes, the unit is no longer enabled, config and state stay
#   - purge: config, state directory and the config's statoverride go
#
#   scripts/test-deb.sh [arm64|amd64]   (default arm64: its root runs under qemu-user)
#
# The root (minbase + adduser) is cached in /var/cache/pifleet, keyed on its inputs.
# Needs root (chroot).
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "test-deb: $*" >&2; }
die() { log "FAILED: $*"; exit 1; }
# shellcheck source=scripts/lib/debian.sh
. scripts/lib/debian.sh

arch=${1:-arm64}
case "$arch" in arm64 | amd64) ;; *) die "unknown architecture '$arch' (arm64 or amd64)" ;; esac
[ "$(id -u)" -eq 0 ] || die "needs root (chroot into the test root); run with sudo"
suite=bookworm
version=$(awk -F'"' '/^\[workspace.package\]/ { w = 1 } w && /^version/ { print $2; exit }' Cargo.toml)

started=$(date +%s)
apt_need mmdebstrap:mmdebstrap lintian:lintian
[ "$arch" = amd64 ] || arm64_binfmt

# --- build and lint ---------------------------------------------------------------------------
t=$(date +%s)
mapfile -t debs < <(scripts/build-deb.sh all)
((${#debs[@]} == 3)) || die "build-deb.sh built ${#debs[@]} packages, expected 3"
log "built ${debs[*]} in $(($(date +%s) - t)) s"
t=$(date +%s)
# Warnings are listed (they are known and few); an error fails the test.
lintian --fail-on error "${debs[@]}" >&2 || die "lintian reports errors (above)"
log "lintian: no errors in ${#debs[@]} packages ($(($(date +%s) - t)) s)"
deb=target/deb/pifleet-agent_${version}_${arch}.deb
[ -f "$deb" ] || die "no $deb"

# --- the test root ----------------------------------------------------------------------------
debian_sources "$suite" main
# arm64 is a Pi: it has a gpio group (Pi OS makes one; so does the image).
hook='set -e'
[ "$arch" = amd64 ] || hook='set -e; chroot "$1" groupadd --system gpio'
base=$(rootfs_cache_path "deb-test-$suite-$arch" "$suite" "$arch" "${sources[@]}" adduser "$hook")
if [ ! -s "$base" ]; then
  t=$(date +%s)
  log "making the $suite $arch test root (mmdebstrap minbase + adduser)"
  mmdebstrap --quiet --arch="$arch" --variant=minbase --include=adduser --format=tar \
    --aptopt='Acquire::Languages "none"' --customize-hook="$hook" \
    "$suite" "$base.part.$$" "${sources[@]}"
  mv "$base.part.$$" "$base"
  log "test root made in $(($(date +%s) - t)) s"
fi

work=$(mktemp -d)
cleanup() { [ -n "${KEEP:-}" ] || rm -rf "$work"; }
trap cleanup EXIT
root="$work/root"
mkdir "$root"
tar -C "$root" --numeric-owner -xpf "$base"
[ ! -d "$root/run/systemd/system" ] || die "the test root claims a running systemd"
passed=0
check() { # DESCRIPTION COMMAND...
  local what=$1
  shift
  "$@" || die "$what"
  log "ok: $what"
  passed=$((passed + 1))
}
# Owner names as the root's own user database has them (the host's may differ).
stat_is() {
  local got
  got=$(chroot "$root" stat -c '%U:%G %a' "$1")
  [ "$got" = "$2" ] || { log "$1 is $got, expected $2"; return 1; }
}

# --- install ----------------------------------------------------------------------------------
pkg=/tmp/$(basename "$deb")
cp "$deb" "$root$pkg"
# apt_in_root LOG ARGS...: apt-get in the root, its output in $work/LOG (shown on failure).
apt_in_root() {
  local out="$work/$1"
  shift
  timeout 600 chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get -y -q "$@" >"$out" 2>&1 ||
    { cat "$out" >&2; die "apt-get $* failed in the $arch root"; }
}
t=$(date +%s)
apt_in_root install.log install "$pkg"
install_s=$(($(date +%s) - t))
log "ok: apt install $pkg with no systemd running ($install_s s)"
check "the binary runs and says its version" bash -c "chroot '$root' pifleet-agent --version | grep -qF '$version'"
check "/usr/bin/pifleet-agent root 0755" stat_is /usr/bin/pifleet-agent "root:root 755"
check "man pifleet-agent: the manual page, compressed" \
  bash -c "zcat '$root/usr/share/man/man1/pifleet-agent.1.gz' | grep -q '^pifleet-agent \\\\- '"
check "the unit in /usr/lib/systemd/system, ExecStart=/usr/bin/pifleet-agent" \
  grep -q '^ExecStart=/usr/bin/pifleet-agent ' "$root/usr/lib/systemd/system/pifleet-agent.service"
check "the unit is enabled (systemctl --root)" \
  bash -c "[ \"\$(systemctl --root='$root' is-enabled pifleet-agent.service)\" = enabled ]"
check "pifleet is a system user without a login shell" \
  bash -c "in=\$(chroot '$root' getent passwd pifleet) && uid=\$(echo \"\$in\" | cut -d: -f3) && ((uid < 1000)) && [ \"\$(echo \"\$in\" | cut -d: -f7)\" = /usr/sbin/nologin ]"
if [ "$arch" = amd64 ]; then
  check "no gpio group here, and none was made" bash -c "! chroot '$root' getent group gpio >/dev/null"
else
  check "pifleet is in group gpio" bash -c "chroot '$root' id -Gn pifleet | tr ' ' '\n' | grep -qx gpio"
fi
check "/etc/pifleet/agent.toml is a conffile" \
  bash -c "chroot '$root' dpkg-query -W -f='\${Conffiles}' pifleet-agent | grep -q '/etc/pifleet/agent.toml '"
check "/etc/pifleet/agent.toml root:pifleet 0640" stat_is /etc/pifleet/agent.toml "root:pifleet 640"

# The user's one edit, then a reinstall (an upgrade takes the same path through dpkg).
sed -i 's|^orchestrator_url = .*|orchestrator_url = "http://10.9.8.7:5000"|' "$root/etc/pifleet/agent.toml"
apt_in_root reinstall.log install --reinstall "$pkg"
check "an edit to the config survives a reinstall" grep -qx 'orchestrator_url = "http://10.9.8.7:5000"' "$root/etc/pifleet/agent.toml"
check "and keeps root:pifleet 0640" stat_is /etc/pifleet/agent.toml "root:pifleet 640"

# What a running agent leaves (systemd makes the state dir from StateDirectory=).
install -d -m 0750 "$root/var/lib/pifleet-agent/spool"
echo '{}' >"$root/var/lib/pifleet-agent/spool/result.json"
chroot "$root" chown -R pifleet:pifleet /var/lib/pifleet-agent

# --- remove, then purge -----------------------------------------------------------------------
apt_in_root remove.log remove pifleet-agent
check "remove: the binary is gone" test ! -e "$root/usr/bin/pifleet-agent"
check "remove: the unit is no longer enabled" test ! -e "$root/etc/systemd/system/multi-user.target.wants/pifleet-agent.service"
check "remove: config and state stay" test -f "$root/etc/pifleet/agent.toml" -a -f "$root/var/lib/pifleet-agent/spool/result.json"
apt_in_root purge.log purge pifleet-agent
check "purge: the config is gone" test ! -e "$root/etc/pifleet"
check "purge: the state directory is gone" test ! -e "$root/var/lib/pifleet-agent"
check "purge: no statoverride left" bash -c "[ -z \"\$(chroot '$root' dpkg-statoverride --list)\" ]"
check "purge: no unit links or masks left" \
  bash -c "! find '$root/etc/systemd/system' -name 'pifleet-agent*' | grep -q ."
log "install $install_s s; all in $(($(date +%s) - started)) s"
echo "deb-install ($arch): $passed passed, 0 failed"
