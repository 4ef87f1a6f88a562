#!/usr/bin/env bash
# Builds the aarch64 sysroot .cache/arm64-sysroot from Debian bullseye arm64 packages: the
# names in cross/arm64-packages.txt plus their dependency closure, downloaded with a private
# apt configuration (the machine's own apt state is untouched) and unpacked with dpkg -x.
# Cached: nothing is done while the stamp matches the package list and this recipe.
set -euo pipefail
# shellcheck source=scripts/arm/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

start=$(date +%s.%N)
# Bump when the way the sysroot is made changes, so old sysroots are rebuilt.
RECIPE=1
want=$( { echo "recipe $RECIPE suite $ARM_SUITE"; arm_packages; } | sha256sum | cut -d' ' -f1)

report() {
  echo "sysroot: $1 $ARM_SYSROOT ($(du -sh "$ARM_SYSROOT" | cut -f1), $(find "$ARM_SYSROOT" -type f | wc -l) files) in $(elapsed_since "$start") s"
}

if [ -f "$ARM_SYSROOT/.stamp" ] && [ "$(cat "$ARM_SYSROOT/.stamp")" = "$want" ]; then
  report "cached"
  exit 0
fi

apt_install_missing debian-archive-keyring dpkg apt

mirror=$(arm_mirror)
mkdir -p "$ARM_APT/lists/partial" "$ARM_APT/cache/archives/partial" "$ARM_DEBS"
: > "$ARM_APT/status"
echo "deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $ARM_SUITE main" \
  > "$ARM_APT/sources.list"

echo "sysroot: reading the $ARM_SUITE arm64 package lists"
apt-get "${ARM_APT_OPTS[@]}" -qq update

# The closure, as apt itself resolves it for an empty arm64 system (the private status file
# is empty): one choice per `a | b` alternative and per virtual package, like the Dockerfiles'
# apt-get install. (`apt-cache depends --recurse` follows every alternative: 620 packages and
# 880 MB with soundfonts, BLAS variants and the like, instead of ~400 and ~190 MB.)
mapfile -t roots < <(arm_packages)
mapfile -t closure < <(
  apt-get "${ARM_APT_OPTS[@]}" -s install --no-install-recommends "${roots[@]}" \
    | awk '/^Inst / {print $2}' | sort -u
)
[ ${#closure[@]} -gt 0 ] || { echo "sysroot: apt resolved no packages" >&2; exit 1; }
echo "sysroot: ${#roots[@]} packages listed, ${#closure[@]} with dependencies"

# Download only the .debs not already cached (same file name = same version).
# (--print-uris leaves out files already in the current directory: ask from an empty one.)
mkdir -p "$ARM_APT/empty"
mapfile -t uris < <(cd "$ARM_APT/empty" && apt-get "${ARM_APT_OPTS[@]}" download --print-uris "${closure[@]}")
[ ${#uris[@]} -eq ${#closure[@]} ] || { echo "sysroot: apt gave ${#uris[@]} URIs for ${#closure[@]} packages" >&2; exit 1; }
cd "$ARM_DEBS"
files=()
missing=()
for line in "${uris[@]}"; do
  read -r _url file size _hash <<<"$line"
  files+=("$file")
  if [ ! -f "$file" ] || [ "$(stat -c %s "$file")" != "$size" ]; then
    missing+=("${file%%_*}")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "sysroot: downloading ${#missing[@]} .debs"
  apt-get "${ARM_APT_OPTS[@]}" -qq download "${missing[@]}"
fi
# Drop .debs of other versions or packages no longer needed, so the cache does not grow.
declare -A keep=()
for f in "${files[@]}"; do keep[$f]=1; done
for f in *.deb; do
  [ -e "$f" ] && [ -z "${keep[$f]:-}" ] && rm -f "$f"
done
dl_size=$(du -ch "${files[@]}" | tail -n1 | cut -f1)
echo "sysroot: ${#files[@]} .debs ($dl_size) in $(elapsed_since "$start") s"

tmp="$ARM_SYSROOT.tmp"
rm -rf "$tmp"
mkdir -p "$tmp"
printf '%s\n' "${files[@]}" | xargs -P "$(nproc)" -I{} dpkg -x {} "$tmp"

# Absolute symlinks (libfoo.so -> /lib/aarch64-linux-gnu/libfoo.so.1) would point into the
# host's root: make them relative to the sysroot. -s: resolve nothing on the way.
n=0
while IFS= read -r -d '' link; do
  target=$(readlink "$link")
  case "$target" in
    /*)
      ln -sfn "$(realpath -s -m --relative-to="$(dirname "$link")" "$tmp$target")" "$link"
      n=$((n + 1))
      ;;
  esac
done < <(find "$tmp" -type l -print0)
echo "sysroot: $n absolute symlinks made relative"

for f in "usr/lib/$ARM_GNU/pkgconfig/gstreamer-rtsp-server-1.0.pc" "lib/$ARM_GNU/libc.so.6" \
    usr/include/linux/videodev2.h "usr/lib/$ARM_GNU/gstreamer-1.0/libgstx264.so"; do
  [ -e "$tmp/$f" ] || { echo "sysroot: $f missing after unpacking" >&2; exit 1; }
done
rm -rf "$ARM_SYSROOT"
mv "$tmp" "$ARM_SYSROOT"
echo "$want" > "$ARM_SYSROOT/.stamp"
report "built"
