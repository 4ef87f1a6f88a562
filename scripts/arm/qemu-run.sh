#!/usr/bin/env bash
# Runs an aarch64 binary under qemu-user against the bullseye sysroot, with GStreamer
# pointed at the sysroot's plugins. Used as cargo's runner for the aarch64 target and by
# smoke.sh. The GStreamer variables are set here only, never for native processes.
set -euo pipefail
# shellcheck source=scripts/arm/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
arm_need_sysroot

export QEMU_LD_PREFIX="$ARM_SYSROOT"
export GST_PLUGIN_SYSTEM_PATH_1_0="$ARM_SYSROOT/usr/lib/$ARM_GNU/gstreamer-1.0"
unset GST_PLUGIN_PATH GST_PLUGIN_PATH_1_0 GST_PLUGIN_SCANNER GST_PLUGIN_SCANNER_1_0
# The registry of arm64 plugins must not be mixed with the host's.
export GST_REGISTRY_1_0="${ARM_GST_REGISTRY:-$ARM_CACHE/arm64-gst-registry.bin}"
# No binfmt_misc here: GStreamer cannot spawn the arm64 gst-plugin-scanner, so scan in-process.
export GST_REGISTRY_FORK=no
exec qemu-aarch64-static -L "$ARM_SYSROOT" "$@"
