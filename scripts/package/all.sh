#!/usr/bin/env bash
# `make package-test`: the packaging checks in order, each timed; stops at the first failure.
set -euo pipefail
cd "$(dirname "$0")/../.."

total_start=$(date +%s)
for step in systemd-check.sh deb-check.sh crates-inc-check.sh; do
  echo "== $step"
  start=$(date +%s)
  if ! bash "scripts/package/$step"; then
    echo "== $step: FAILED after $(( $(date +%s) - start )) s" >&2
    exit 1
  fi
  echo "== $step: ok in $(( $(date +%s) - start )) s"
done
echo "== package-test: ok in $(( $(date +%s) - total_start )) s"
