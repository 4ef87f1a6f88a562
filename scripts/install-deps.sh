#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages edgecam needs to build, test and demo.
# Idempotent: packages already present are skipped, so a second run is quick.
set -euo pipefail

PACKAGES=(
  pkg-config libclang-dev
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  libgstrtspserver-1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-rtsp gstreamer1.0-tools gstreamer1.0-libav gstreamer1.0-x
  mosquitto mosquitto-clients libv4l-dev v4l-utils ffmpeg python3 time make
  nginx libnginx-mod-rtmp iproute2 prometheus
)

# shellcheck source=scripts/lib/apt.sh
source "$(dirname "$0")/lib/apt.sh"
# The RTMP tests run their own nginx (tests/support/rtmp.rs) and the metrics test its own
# Prometheus (tests/support/prometheus.rs, which also uses promtool); the system services
# the packages enable would only hold ports 80 and 9090. Each is disabled only when this
# run installed it, so a machine's own web server or Prometheus is left alone.
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
newly_installed_services=()
for service in nginx prometheus; do
  installed "$service" || newly_installed_services+=("$service")
done
apt_install_missing "${PACKAGES[@]}"
for service in "${newly_installed_services[@]}"; do
  if [ -d /run/systemd/system ]; then
    as_root systemctl disable --now "$service.service" >/dev/null 2>&1 || true
  elif [ -x "/etc/init.d/$service" ] && command -v update-rc.d >/dev/null 2>&1; then
    as_root "/etc/init.d/$service" stop >/dev/null 2>&1 || true
    as_root update-rc.d "$service" disable >/dev/null 2>&1 || true
  fi
done

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust with rustup (https://rustup.rs) first" >&2
  exit 1
fi
# fmt and clippy are part of `make test`.
if command -v rustup >/dev/null 2>&1; then
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
fi
