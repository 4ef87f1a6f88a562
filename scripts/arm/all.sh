#!/usr/bin/env bash
# `make arm-test`: the whole aarch64 path in order, stopping at the first failure, with the
# time of each step and the total. Installs what it needs (as root or through sudo).
set -euo pipefail
dir="$(dirname "${BASH_SOURCE[0]}")"
# shellcheck source=scripts/arm/common.sh
source "$dir/common.sh"

steps=("sysroot.sh" "build.sh" "unit-tests.sh" "smoke.sh" "glibc-floor.sh" "check-cross-files.sh --resolve")
times=()
total=$(date +%s.%N)
for step in "${steps[@]}"; do
  echo "== arm-test: $step"
  start=$(date +%s.%N)
  # shellcheck disable=SC2086 # a step may carry arguments
  if ! bash "$dir"/$step; then
    echo "== arm-test: FAILED at $step after $(elapsed_since "$start") s" >&2
    exit 1
  fi
  times+=("$(elapsed_since "$start")")
done
echo "== arm-test: passed"
for i in "${!steps[@]}"; do
  printf '   %-32s %7s s\n' "${steps[$i]}" "${times[$i]}"
done
printf '   %-32s %7s s\n' "total" "$(elapsed_since "$total")"
