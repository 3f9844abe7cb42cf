#!/usr/bin/env bash
# Checks every systemd unit and drop-in we ship with `systemd-analyze verify`, strictly: any
# warning (unknown key, bad value, missing dependency) fails.
#
# verify checks that ExecStart= binaries exist, so it runs against a throwaway root (--root)
# holding the host's stock units, our units, and stub executables at the paths our units name.
# The manager drop-in (RuntimeWatchdogSec=...) is checked key by key against systemd's own
# system.conf and its values with `systemd-analyze timespan`.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v systemd-analyze >/dev/null || {
  echo "verify-units: systemd-analyze not found (apt-get install systemd)" >&2
  exit 1
}

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/etc/systemd/system" "$root/usr/lib/systemd"
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"

units=()
for f in systemd/*.service systemd/*.timer image/overlay/etc/systemd/system/*.service; do
  [ -e "$f" ] || continue
  cp "$f" "$root/etc/systemd/system/"
  units+=("$(basename "$f")")
done
# Drop-ins (foo.service.d/*.conf) from the image overlay.
for d in image/overlay/etc/systemd/system/*.service.d; do
  [ -d "$d" ] || continue
  mkdir -p "$root/etc/systemd/system/$(basename "$d")"
  cp "$d"/*.conf "$root/etc/systemd/system/$(basename "$d")/"
  unit=$(basename "$d" .d)
  [[ " ${units[*]} " == *" $unit "* ]] || units+=("$unit")
done
((${#units[@]})) || { echo "verify-units: no units found" >&2; exit 1; }

# Stub executables for every absolute path our units execute that the host lacks.
shopt -s nullglob
{ grep -hoE '^-?Exec(Start|StartPre|StartPost|Stop|Reload)=[-@:+!]*/[^ ]+' \
  "$root"/etc/systemd/system/*.service "$root"/etc/systemd/system/*.d/*.conf || true; } |
  sed -E 's/^[^=]*=[-@:+!]*//' | sort -u | while read -r exe; do
  [ -e "$root$exe" ] && continue
  mkdir -p "$root$(dirname "$exe")"
  printf '#!/bin/sh\nexit 0\n' >"$root$exe"
  chmod +x "$root$exe"
done

out=$(systemd-analyze verify --root="$root" "${units[@]}" 2>&1) || {
  echo "$out" >&2
  echo "verify-units: systemd-analyze verify failed" >&2
  exit 1
}
if [ -n "$out" ]; then
  echo "$out" >&2
  echo "verify-units: systemd-analyze verify printed warnings (treated as errors)" >&2
  exit 1
fi
echo "verify-units: ${units[*]}: ok"

# Manager drop-ins: known keys, valid time spans.
for conf in systemd/system.conf.d/*.conf; do
  [ -e "$conf" ] || continue
  grep -qx '\[Manager\]' "$conf" || { echo "verify-units: $conf: no [Manager] section" >&2; exit 1; }
  while IFS='=' read -r key value; do
    grep -qE "^#?$key=" /etc/systemd/system.conf || {
      echo "verify-units: $conf: unknown key '$key' (not in systemd's system.conf)" >&2
      exit 1
    }
    case "$key" in
      *Sec) systemd-analyze timespan "$value" >/dev/null || {
        echo "verify-units: $conf: bad time span $key=$value" >&2
        exit 1
      } ;;
    esac
    if [ "$key" = RuntimeWatchdogSec ]; then
      usec=$(systemd-analyze timespan "$value" | awk '/μs:|us:/ { print $2; exit }')
      ((usec > 0 && usec < 15000000)) || {
        echo "verify-units: $conf: RuntimeWatchdogSec=$value must be >0 and below the bcm2835 watchdog's ~15 s ceiling" >&2
        exit 1
      }
    fi
  done < <(grep -E '^[A-Za-z]+=' "$conf")
  echo "verify-units: $conf: ok"
done
