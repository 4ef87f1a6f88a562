#!/usr/bin/env bash
# `make vm-test`: builds edgecam and its vivid tests on the host, then runs them inside
# the VM against the real vivid driver. Bounded by VM_TIMEOUT (default 600 s).
set -euo pipefail
cd "$(dirname "$0")/../.."

cargo build --locked --bins
tests=$(cargo test --locked --test vivid --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "vivid":
        print(m["executable"])')
[ -x "$tests" ] || { echo "vm-test: could not build the vivid test binary" >&2; exit 1; }

bash scripts/vm/fetch.sh
bash scripts/vm/build-initramfs.sh
EDGECAM_VIVID_TESTS="$tests" bash scripts/vm/run.sh tests/vm/edgecam.sh "${VM_TIMEOUT:-600}"
