#!/bin/sh
# shellcheck shell=dash disable=SC1091,SC2013,SC2015,SC2016,SC2086 # /out/env exists in the guest; ok/bad always succeed
# Guest side of scripts/package/systemd-vm-test.sh, run by systemd (PID 1) as root inside
# the VM: installs the .deb, then checks the unit's behaviour. Writes /out/results.txt and
# powers the VM off.
set -u
. /out/env
export GST_REGISTRY_1_0 GST_REGISTRY_UPDATE=no
R=/out/results.txt
: > $R
fails=0
note() { echo "$*" | tee -a $R; }
ok() { note "ok: $*"; }
bad() { note "FAIL: $*"; fails=$((fails + 1)); }
prop() { systemctl show -p "$2" --value "$1"; }
finish() {
  journalctl -u edgecam --no-pager -o short-monotonic > /out/edgecam-journal.txt 2>&1
  journalctl -b --no-pager -o short-monotonic > /out/journal.txt 2>&1
  if [ $fails -eq 0 ]; then note "RESULT: ok"; else note "RESULT: fail ($fails)"; fi
  sync
  systemctl poweroff -ff
}
# wait_for SECONDS COMMAND...: polls once a second until COMMAND succeeds.
wait_for() {
  local n=$1; shift
  while [ "$n" -gt 0 ]; do "$@" && return 0; sleep 1; n=$((n - 1)); done
  return 1
}

note "systemd $(systemctl --version | head -n1 | cut -d' ' -f2), kernel $(uname -r)"

# What udev would do on a real system: the render group, and video nodes root:video 0660.
getent group render >/dev/null || groupadd --system render
for d in /dev/video* /dev/media*; do chgrp video "$d" && chmod 0660 "$d"; done

# Install: the unit must land, not be enabled, not run.
if dpkg -i "$DEB" > /out/dpkg.log 2>&1; then ok "dpkg -i $(basename "$DEB")"; else bad "dpkg -i (see dpkg.log)"; finish; fi
[ "$(systemctl is-enabled edgecam 2>&1)" = disabled ] && ok "not enabled after install" || bad "is-enabled: $(systemctl is-enabled edgecam 2>&1)"
[ "$(systemctl is-active edgecam 2>&1)" = inactive ] && ok "not started after install" || bad "is-active: $(systemctl is-active edgecam 2>&1)"

# Peers: an RTSP receiver and a broker, as transient units.
systemd-run --quiet --unit=receiver -p StandardOutput=file:/out/receiver.jsonl "$REPO/target/release/edgecam-upstream" --port 8554
systemd-run --quiet --unit=broker /usr/sbin/mosquitto -p 1883
wait_for 20 sh -c 'ss -ltn | grep -q ":8554 " && ss -ltn | grep -q ":1883 "' || bad "receiver/broker did not listen"

cat > /etc/edgecam/edgecam.toml <<'TOML'
device_id = "vmtest"
[[stream]]
id = "test"
source = "test"
width = 320
height = 240
framerate = 10
encoder = "x264"
bitrate_kbps = 300
upstream = ["rtsp://127.0.0.1:8554/vmtest/test"]
[[stream]]
id = "vivid"
source = "/dev/video0"
width = 320
height = 180
framerate = 10
encoder = "x264"
bitrate_kbps = 300
upstream = ["rtsp://127.0.0.1:8554/vmtest/vivid"]
[mqtt]
url = "mqtt://127.0.0.1:1883"
username = "cam"
health_interval_s = 2
commands_allow = ["*", "daemon.restart"]
TOML
cp /etc/edgecam/edgecam.toml /tmp/good.toml

# 1. Start with no /etc/edgecam/mqtt-password or mqtt-key: SetCredential= is the fallback.
t0=$(date +%s)
systemctl start edgecam && ok "start (Type=notify: READY=1 within $(( $(date +%s) - t0 )) s)" || bad "start: $(prop edgecam Result)"
cred=$(od -An -c /run/credentials/edgecam.service/mqtt-password 2>&1 | tr -s ' ')
[ "$cred" = " \n" ] && ok "missing mqtt-password: fallback credential is a lone newline" || bad "mqtt-password credential: '$cred'"
[ -e /run/credentials/edgecam.service/mqtt-key ] && ok "mqtt-key fallback credential present" || bad "no mqtt-key credential"
pid=$(prop edgecam MainPID)
note "MainPID $pid: uid $(awk '/^Uid/{print $2}' /proc/$pid/status), groups $(awk '/^Groups/{$1=""; print}' /proc/$pid/status)"
for g in $(awk '/^Groups/{$1=""; print}' /proc/$pid/status); do note "  group $g = $(getent group "$g" | cut -d: -f1)"; done
note "ExecStart as run: $(tr '\0' ' ' < /proc/$pid/cmdline)"
tr '\0' ' ' < /proc/$pid/cmdline | grep -q -- "--config /etc/edgecam/edgecam.toml " && ok "\${CONFIGURATION_DIRECTORY} expanded to /etc/edgecam" || bad "config path: $(tr '\0' ' ' < /proc/$pid/cmdline)"

# 2. Both streams reach the receiver (the vivid one through DevicePolicy and group video).
for s in test vivid; do
  if wait_for 90 grep -q "\"path\":\"/vmtest/$s\".*\"event\":\"stats\"\|\"event\":\"stats\".*\"path\":\"/vmtest/$s\"" /out/receiver.jsonl; then
    ok "stream $s: frames at the receiver"
  else
    bad "stream $s: no frames at the receiver"
  fi
done
note "STATUS= $(prop edgecam StatusText)"
h=$(timeout 20 mosquitto_sub -h 127.0.0.1 -C 1 -t edgecam/vmtest/health 2>&1)
echo "$h" > /out/health.json
echo "$h" | grep -q '"cpu_percent"' && echo "$h" | grep -q '"mem_total_mb"' && ! echo "$h" | grep -q '"mem_total_mb":0[,.}]' \
  && ok "health over MQTT reads /proc under ProtectProc=invisible (mem_total_mb, load1, cpu_percent)" || bad "health: $h"
echo "$h" | grep -q '"disk_free_mb":null' && bad "disk_free_mb null: StateDirectory missing" || ok "disk_free_mb reported for /var/lib/edgecam"
[ -d /var/lib/private/edgecam ] && ok "StateDirectory /var/lib/private/edgecam owned by $(stat -c %u:%g /var/lib/private/edgecam)" || bad "no state directory"

ls /var/cache/edgecam/gstreamer-1.0/registry.*.bin >/dev/null 2>&1 \
  && ok "GStreamer registry kept in CacheDirectory ($(ls /var/cache/edgecam/gstreamer-1.0/))" || bad "no GStreamer registry under /var/cache/edgecam"
journalctl -u edgecam --no-pager | grep -q "dconf" && bad "dconf warnings in the journal" || ok "no dconf warnings (GSETTINGS_BACKEND=memory)"

# 3. Exit 75 over MQTT: restarted by Restart=on-failure.
r0=$(prop edgecam NRestarts)
mosquitto_pub -h 127.0.0.1 -t edgecam/vmtest/cmd/daemon.restart -m '{}'
if wait_for 30 sh -c "[ \$(systemctl show -p NRestarts --value edgecam) -gt $r0 ]" && wait_for 30 sh -c '[ "$(systemctl is-active edgecam)" = active ]'; then
  ok "daemon.restart (exit 75): restarted, NRestarts $r0 -> $(prop edgecam NRestarts)"
else
  bad "daemon.restart: NRestarts $(prop edgecam NRestarts), state $(systemctl is-active edgecam), status $(prop edgecam ExecMainStatus)"
fi

# 4. A real password file replaces the fallback.
printf 's3cret\n' > /etc/edgecam/mqtt-password && chmod 0600 /etc/edgecam/mqtt-password
t0=$(date +%s%N)
systemctl restart edgecam
note "restart with a saved registry: READY=1 after $(( ($(date +%s%N) - t0) / 1000000 )) ms (software emulation)"
[ "$(cat /run/credentials/edgecam.service/mqtt-password 2>&1)" = s3cret ] && ok "LoadCredential= from /etc/edgecam/mqtt-password (root 0600)" || bad "credential not loaded"

# 5. Stop within TimeoutStopSec=5.
t0=$(date +%s%N)
systemctl stop edgecam
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$(prop edgecam Result)" = success ] && [ $ms -lt 5000 ] && ok "stop in $ms ms, Result=success" || bad "stop: $ms ms, Result=$(prop edgecam Result)"

# 6. Exit 78 (configuration error): failed, not restarted.
printf '[[stream]]\nid = "x"\nframerate = 0\nupstream = ["rtsp://h/x"]\n' > /etc/edgecam/edgecam.toml
systemctl reset-failed edgecam 2>/dev/null
systemctl start edgecam 2>/dev/null
sleep 5
st=$(prop edgecam ExecMainStatus); res=$(prop edgecam Result); nr=$(prop edgecam NRestarts); act=$(systemctl is-active edgecam)
[ "$st" = 78 ] && [ "$act" = failed ] && [ "$nr" = 0 ] && ok "exit 78: $act, Result=$res, not restarted" || bad "exit 78: status $st, $act, Result=$res, NRestarts $nr"
cp /tmp/good.toml /etc/edgecam/edgecam.toml

# 7. Sandbox as systemd sees it at run time.
systemd-analyze security edgecam --no-pager > /out/security.txt 2>&1
note "$(grep 'Overall exposure' /out/security.txt)"

finish
