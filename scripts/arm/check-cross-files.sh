#!/usr/bin/env bash
# Consistency check of the cross-rs files, for CI where no Docker engine can build them:
# Cross.toml names existing Dockerfiles for aarch64 and armv7 with the repository root as
# context; each Dockerfile is based on bullseye, installs the shared package list for its
# architecture and sets the env for its own triple; the list holds valid package names.
# With --resolve it also asks apt (private configuration, machine state untouched) whether
# each Dockerfile's apt-get install resolves on bullseye with the foreign architecture added:
# the multiarch conflicts a real build would hit show up there.
set -euo pipefail
# shellcheck source=scripts/arm/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ARM_ROOT"

errors=0
err() { echo "check-cross-files: $*" >&2; errors=$((errors + 1)); }

# The package list.
list=cross/arm64-packages.txt
[ -f "$list" ] || { err "$list missing"; exit 1; }
n=0
while read -r name; do
  n=$((n + 1))
  [[ "$name" =~ ^[a-z0-9][a-z0-9+.-]+$ ]] || err "$list: '$name' is not a Debian package name"
done < <(arm_packages)
[ "$n" -gt 0 ] || err "$list lists no package"

# Cross.toml: [target.<triple>.dockerfile] tables with file and context.
[ -f Cross.toml ] || { err "Cross.toml missing"; exit 1; }
declare -A dockerfiles=()
while IFS='|' read -r triple file context; do
  dockerfiles[$triple]=$file
  [ -n "$file" ] || { err "Cross.toml: $triple has no dockerfile file"; continue; }
  [ -f "$file" ] || err "Cross.toml: $triple names $file, which does not exist"
  [ "$(basename "$file")" = "Dockerfile.$triple" ] || err "Cross.toml: $triple names $file, not a Dockerfile.$triple"
  [ "$context" = "." ] || err "Cross.toml: $triple's context is '${context:-unset}', not \".\" (its Dockerfile COPYs $list)"
done < <(awk '
  function flush() { if (t != "") print t "|" f "|" c; t = ""; f = ""; c = "" }
  /^\[/ { flush() }
  /^\[target\.[^.]+(\.[^.]+)*\.dockerfile\]/ { s = $0; gsub(/^\[target\.|\.dockerfile\]$/, "", s); t = s }
  t != "" && /^file *=/ { s = $0; sub(/^file *= *"/, "", s); sub(/".*/, "", s); f = s }
  t != "" && /^context *=/ { s = $0; sub(/^context *= *"/, "", s); sub(/".*/, "", s); c = s }
  END { flush() }' Cross.toml)
for triple in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf; do
  [ -n "${dockerfiles[$triple]:-}" ] || err "Cross.toml has no dockerfile for $triple"
done

# Each Dockerfile: base, shared list, its architecture, env for its own triple.
arg() { sed -n "s/^ARG $1=\"\{0,1\}\([^\"]*\)\"\{0,1\}$/\1/p" "$2" | head -n1; }
declare -A arch_of=([aarch64-unknown-linux-gnu]=arm64 [armv7-unknown-linux-gnueabihf]=armhf)
declare -A gnu_of=([aarch64-unknown-linux-gnu]=aarch64-linux-gnu [armv7-unknown-linux-gnueabihf]=arm-linux-gnueabihf)
for triple in "${!dockerfiles[@]}"; do
  f=${dockerfiles[$triple]}
  [ -f "$f" ] || continue
  upper=$(tr 'a-z-' 'A-Z_' <<<"$triple")
  lower=$(tr '-' '_' <<<"$triple")
  grep -q '^FROM debian:bullseye' "$f" || err "$f: not FROM debian:bullseye (the glibc 2.31 floor)"
  grep -q "^COPY $list " "$f" || err "$f: does not COPY $list"
  grep -q 'target-packages.txt' "$f" || err "$f: does not install from the copied package list"
  [ "$(arg DEB_ARCH "$f")" = "${arch_of[$triple]:-?}" ] || err "$f: ARG DEB_ARCH is '$(arg DEB_ARCH "$f")', expected ${arch_of[$triple]:-?}"
  gnu=${gnu_of[$triple]:-?}
  for want in "CARGO_TARGET_${upper}_LINKER=$gnu-gcc" "CC_${lower}=$gnu-gcc" "PKG_CONFIG_ALLOW_CROSS=1" \
      "PKG_CONFIG_LIBDIR=/usr/lib/$gnu/pkgconfig"; do
    grep -q "$want" "$f" || err "$f: sets no $want"
  done
  grep -q "gcc-$gnu" <<<"$(arg HOST_PACKAGES "$f")" || err "$f: HOST_PACKAGES lacks gcc-$gnu"
done

# --resolve: what `apt-get install` in each Dockerfile would do on bullseye.
if [ "${1:-}" = "--resolve" ]; then
  mirror=$(arm_mirror)
  for triple in "${!dockerfiles[@]}"; do
    f=${dockerfiles[$triple]}
    [ -f "$f" ] || continue
    arch=$(arg DEB_ARCH "$f")
    dir="$ARM_CACHE/cross-apt-$arch"
    mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
    : > "$dir/status"
    echo "deb [arch=amd64,$arch signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bullseye main" \
      > "$dir/sources.list"
    opts=(-o "Dir::Etc::SourceList=$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
      -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
      -o "Dir::State::Lists=$dir/lists" -o "Dir::State::status=$dir/status" -o "Dir::Cache=$dir/cache"
      -o APT::Architecture=amd64 -o APT::Architectures::=amd64 -o "APT::Architectures::=$arch"
      -o APT::Sandbox::User=root -o Acquire::Languages=none)
    apt-get "${opts[@]}" -qq update
    # shellcheck disable=SC2046 # word splitting wanted, as in the Dockerfile
    if out=$(apt-get "${opts[@]}" -s install --no-install-recommends $(arg HOST_PACKAGES "$f") \
        $(arm_packages | awk -v a="$arch" '{ print $1 ":" a }') 2>&1); then
      echo "check-cross-files: $f: apt-get install resolves on bullseye:" \
        "$(grep -c '^Inst' <<<"$out") packages, $(grep '^Inst' <<<"$out" | grep -c "\[$arch\]") of them $arch"
    else
      err "$f: apt-get install does not resolve on bullseye:"
      grep -E '^(E:| )' <<<"$out" | head -n 20 >&2
    fi
  done
fi

if [ "$errors" -gt 0 ]; then
  echo "check-cross-files: $errors problem(s)" >&2
  exit 1
fi
echo "check-cross-files: Cross.toml, ${#dockerfiles[@]} Dockerfiles and $list ($n packages) agree"
