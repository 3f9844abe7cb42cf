# Sourced by the scripts that build Debian roots (image/build.sh, scripts/test-deb.sh): host
# packages, the Debian mirror this machine's apt uses, arm64 binaries under qemu-user, and the
# cache of root file systems. Callers define log() and die().

# apt_need CMD:PACKAGE...: installs the packages whose command is missing (apt waits for a lock
# another process holds rather than failing).
apt_need() {
  local pair need=() sudo_cmd=""
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
  done
  ((${#need[@]})) || return 0
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  log "installing ${need[*]}"
  $sudo_cmd apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need[@]}" >/dev/null
}

# apt_uri_for SUITE: the first URI of this machine's apt sources that serves SUITE, in deb822
# (*.sources) or one-line (sources.list) format.
apt_uri_for() {
  local want=$1 f
  {
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      awk -v s="$want" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i+1) == s) print $i }'
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -e "$f" ] || continue
      awk -v s="$want" '
        /^[[:space:]]*$/ { if (u != "" && ok) print u; u = ""; ok = 0; next }
        /^URIs:/ { u = $2 }
        /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) ok = 1 }
        END { if (u != "" && ok) print u }' "$f"
    done
  } | head -1
}

# debian_sources SUITE COMPONENTS: sets the array `sources` to the mmdebstrap source lines for
# SUITE, SUITE-updates and SUITE-security from this machine's mirror (PIFLEET_MIRROR and
# PIFLEET_SECURITY_MIRROR override it).
debian_sources() {
  local suite=$1 components=$2 mirror security
  mirror=${PIFLEET_MIRROR:-$(apt_uri_for "$suite")}
  security=${PIFLEET_SECURITY_MIRROR:-$(apt_uri_for "$suite-security")}
  [ -n "$mirror" ] || die "no apt source for '$suite' on this machine; set PIFLEET_MIRROR to a Debian mirror URL"
  sources=("deb $mirror $suite $components" "deb $mirror $suite-updates $components")
  [ -z "$security" ] || sources+=("deb $security $suite-security $components")
}

# arm64_binfmt: arm64 binaries run here (maintainer scripts in an arm64 chroot) through
# binfmt_misc, with the static qemu registered with the F (fix binary) flag so it works inside
# the chroot. Registers it when the host has not (containers and CI machines often start without
# systemd-binfmt), or has without F.
arm64_binfmt() {
  local binfmt=/proc/sys/fs/binfmt_misc conf=/usr/lib/binfmt.d/qemu-aarch64.conf
  apt_need qemu-aarch64-static:qemu-user-static arch-test:arch-test
  [ -e "$binfmt/register" ] || mount -t binfmt_misc binfmt_misc "$binfmt" ||
    die "cannot mount binfmt_misc (needed to run arm64 package scripts)"
  if ! grep -qE '^flags:.*F' "$binfmt/qemu-aarch64" 2>/dev/null; then
    grep -q ':[A-Z]*F[A-Z]*$' "$conf" || die "$conf does not register qemu with the F flag (install qemu-user-static)"
    [ ! -e "$binfmt/qemu-aarch64" ] || echo -1 >"$binfmt/qemu-aarch64"
    cat "$conf" >"$binfmt/register"
  fi
  arch-test arm64 >/dev/null || die "arm64 binaries do not run here (binfmt_misc + qemu-user-static)"
}

# The cache of root file systems lives outside the work tree, so a fresh clone (CI) finds it.
# An entry's name carries the hash of everything that makes it (callers pass them to
# rootfs_cache_path), so a changed input can never pick a stale root; an entry older than
# PIFLEET_ROOTFS_MAX_AGE_DAYS (7) is rebuilt to take in Debian's updates.
rootfs_cache_dir=${PIFLEET_CACHE_DIR:-/var/cache/pifleet}

# rootfs_cache_path NAME INPUT...: prints the cache file for NAME keyed on the inputs and
# mmdebstrap's version; removes entries of NAME with other keys and a too old entry.
rootfs_cache_path() {
  local name=$1 key path f
  shift
  key=$(printf '%s\n' "$@" "$(mmdebstrap --version 2>/dev/null)" | sha256sum | cut -c1-16)
  path="$rootfs_cache_dir/$name-$key.tar"
  mkdir -p "$rootfs_cache_dir"
  for f in "$rootfs_cache_dir/$name"-*.tar; do
    [ -e "$f" ] && [ "$f" != "$path" ] && rm -f "$f"
  done
  if [ -e "$path" ] && [ -n "$(find "$path" -mtime +"${PIFLEET_ROOTFS_MAX_AGE_DAYS:-7}")" ]; then
    rm -f "$path"
  fi
  echo "$path"
}
