#!/bin/sh
# Guest side of `make vm-test`: runs the vivid integration tests (tests/vivid.rs, built on
# the host) against the real vivid driver, one at a time.
set -eu
. "$EDGECAM_REPO/tests/vm/lib.sh"

[ -n "${EDGECAM_VIVID_TESTS:-}" ] || fail "EDGECAM_VIVID_TESTS (the test binary) is not set"
wait_node /dev/video0 10 || fail "no /dev/video0"
step "vivid integration tests"
cd "$EDGECAM_REPO"
"$EDGECAM_VIVID_TESTS" --ignored --test-threads=1 2>&1
step "done"
