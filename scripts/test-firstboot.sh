#!/usr/bin/env bash
# Tests the SD image's first-boot configuration (image/overlay/usr/local/lib/pifleet/pifleet-config)
# on files only: pifleet.toml as a user edits it on any PC (Windows line endings included)
# becomes the agent's config without the Wi-Fi secrets, the hostname and the Wi-Fi settings.
set -euo pipefail
cd "$(dirname "$0")/.."

script=image/overlay/usr/local/lib/pifleet/pifleet-config
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
passed=0 failed=0
check() { # DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@"; then
    echo "ok: $what"
    passed=$((passed + 1))
  else
    echo "FAILED: $what"
    failed=$((failed + 1))
  fi
}
run() { PIFLEET_ETC="$t/etc" PIFLEET_BOOT_CONFIG="$t/pifleet.toml" sh "$script" >"$t/out" 2>&1; }

mkdir -p "$t/etc"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tpifleet\n' >"$t/etc/hosts"
echo pifleet >"$t/etc/hostname"

# Saved by Notepad: CRLF line endings, comments, a [wifi] table.
printf '%s\r\n' \
  '# my kitchen Pi' \
  'orchestrator_url = "http://192.168.1.10:5000"' \
  'worker_token = "0123456789abcdef0123" # from the admin' \
  'id = "pi kitchen#1"' \
  '' \
  '[wifi]' \
  'ssid = "Home Net"' \
  "psk = 'secret passphrase'" \
  'country = GB' >"$t/pifleet.toml"
check "applies a pifleet.toml" run
agent="$t/etc/pifleet/agent.toml"
check "agent config keeps the agent keys" grep -qx 'orchestrator_url = "http://192.168.1.10:5000"' "$agent"
check "agent config has Unix line endings" bash -c "! grep -q $'\r' '$agent'"
check "agent config leaves the Wi-Fi secrets out" bash -c "! grep -qiE 'wifi|psk|secret' '$agent'"
check "agent config is not world-readable" test "$(stat -c %a "$agent")" = 640
check "the node name becomes a valid hostname" grep -qx 'pi-kitchen-1' "$t/etc/hostname"
check "/etc/hosts follows the hostname" grep -qP '^127\.0\.1\.1\tpi-kitchen-1$' "$t/etc/hosts"
wpa="$t/etc/wpa_supplicant/wpa_supplicant-wlan0.conf"
check "Wi-Fi: ssid, passphrase and country" bash -c "grep -qx '  ssid=\"Home Net\"' '$wpa' && grep -qx '  psk=\"secret passphrase\"' '$wpa' && grep -qx 'country=GB' '$wpa'"
check "Wi-Fi config is private" test "$(stat -c %a "$wpa")" = 600
check "wpa_supplicant@wlan0 is wanted by the wlan0 device" \
  test -L "$t/etc/systemd/system/sys-subsystem-net-devices-wlan0.device.wants/wpa_supplicant@wlan0.service"

# A misspelt passphrase key: the error names the line and the key, and the card does not
# join an open network of that name (the Wi-Fi stays as it was).
printf '%s\n' 'orchestrator_url = "http://192.168.1.10:5000"' '[wifi]' 'ssid = "Cafe"' \
  'password = "hunter22"' >"$t/pifleet.toml"
check "applies a pifleet.toml with a wrong Wi-Fi key" run
check "the error names the line and the key" \
  grep -q 'pifleet.toml line 4: \[wifi\] has no key "password" (the keys are ssid, psk, country)' "$t/out"
check "the Wi-Fi stays as it was, not an open network" \
  bash -c "grep -qx '  ssid=\"Home Net\"' '$wpa' && ! grep -q 'key_mgmt=NONE' '$wpa'"
check "the agent's part still applies" grep -qx 'orchestrator_url = "http://192.168.1.10:5000"' "$agent"

# The user removes Wi-Fi and the name; edits apply at the next boot.
printf 'orchestrator_url = "http://10.1.1.1:5000"\n' >"$t/pifleet.toml"
check "applies an edited pifleet.toml" run
check "the new URL reaches the agent" grep -q '10.1.1.1' "$agent"
check "Wi-Fi is switched off" bash -c "[ ! -e '$wpa' ] && [ ! -e '$t/etc/systemd/system/sys-subsystem-net-devices-wlan0.device.wants/wpa_supplicant@wlan0.service' ]"
check "the hostname stays" grep -qx 'pi-kitchen-1' "$t/etc/hostname"

rm "$t/pifleet.toml"
check "no pifleet.toml: keeps the current config" bash -c "run() { PIFLEET_ETC='$t/etc' PIFLEET_BOOT_CONFIG='$t/pifleet.toml' sh '$script'; }; run | grep -q 'keeping the current' && grep -q 10.1.1.1 '$agent'"

echo "firstboot: $passed passed, $failed failed"
((failed == 0))
