#!/usr/bin/env bash
# Installs the deploy-guard binary for this machine: the release asset for its OS and
# architecture, verified against the checksums COMMITTED in this checkout
# (release/sha256sums/VERSION.txt, written by the release workflow into the tagged commit), so
# pinning the action to a tag or a commit pins the binary too. The release's own sha256sums.txt is
# never read: a release can be edited after the fact, a commit cannot. Used by action.yml; runs
# anywhere with bash and curl.
#
#   scripts/install.sh --resolve   print version=, target=, dir= (for the Action's cache key)
#   scripts/install.sh             install; print bin=, from= (release | source | cached)
#
# Printed `name=value` lines also go to $GITHUB_OUTPUT when it is set. Settings (environment):
#   DG_VERSION            release tag, vX.Y.Z or vX.Y.Z-rc.N [default: v + the version in ./Cargo.toml]
#   DG_CHECKSUMS_FILE     the committed checksums [default: release/sha256sums/VERSION.txt here]
#   DG_RELEASE_BASE_URL   where the assets are
#                         [default: https://github.com/$DG_REPOSITORY/releases/download/$DG_VERSION]
#   DG_REPOSITORY         [default: station/deploy-guard]
#   DG_INSTALL_DIR        [default: ${RUNNER_TOOL_CACHE:-$HOME/.cache}/deploy-guard/VERSION/TARGET]
#   DG_TARGET             override the detected target triple
#   DG_BUILD_FROM_SOURCE  1 (or true): `cargo build --release --locked` of this checkout instead
#
# A binary already in place (a rerun, the Action's cache) that matches the committed checksum is
# used without any download, so a rollback runs while GitHub's downloads are down. A checksum
# mismatch stops with exit 1 and installs nothing; nothing ever falls back to a source build.
set -euo pipefail

# Under Actions an error is an annotation; its text is escaped so a value in it (a bad version)
# cannot start a workflow command of its own.
die() {
  local msg="deploy-guard install: $*"
  if [ "${GITHUB_ACTIONS:-}" = true ]; then
    msg="${msg//'%'/%25}"; msg="${msg//$'\r'/%0D}"; msg="${msg//$'\n'/%0A}"
    echo "::error title=deploy-guard install::$msg" >&2
  else
    echo "$msg" >&2
  fi
  exit 1
}
say() { echo "deploy-guard install: $*" >&2; }
out() {
  echo "$1=$2"
  if [ -n "${GITHUB_OUTPUT:-}" ]; then echo "$1=$2" >>"$GITHUB_OUTPUT"; fi
  # Later steps of the job can call `deploy-guard` by name.
  if [ "$1" = bin ] && [ -n "${GITHUB_PATH:-}" ]; then dirname "$2" >>"$GITHUB_PATH"; fi
}

src_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
repository="${DG_REPOSITORY:-station/deploy-guard}"
case "${DG_BUILD_FROM_SOURCE:-}" in
  1 | true) from_source=1 ;;
  "" | 0 | false) from_source=0 ;;
  *) die "DG_BUILD_FROM_SOURCE (the build-from-source input) is '${DG_BUILD_FROM_SOURCE}': use true or false" ;;
esac

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
  else shasum -a 256 "$1" | cut -d' ' -f1; fi
}

detect_target() {
  if [ -n "${DG_TARGET:-}" ]; then echo "$DG_TARGET"; return; fi
  local os arch
  os="$(uname -s)"; arch="$(uname -m)"
  case "$os/$arch" in
    Linux/x86_64 | Linux/amd64) echo x86_64-unknown-linux-musl ;;
    Linux/aarch64 | Linux/arm64) echo aarch64-unknown-linux-musl ;;
    Darwin/arm64 | Darwin/aarch64) echo aarch64-apple-darwin ;;
    *) echo "unsupported-$os-$arch" ;;
  esac
}

resolve_version() {
  local v="${DG_VERSION:-}"
  if [ -z "$v" ]; then
    v="v$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$src_dir/Cargo.toml" | head -n1)"
    [ "$v" != v ] || die "no version given and none found in $src_dir/Cargo.toml"
  fi
  case "$v" in [0-9]*) v="v$v" ;; esac
  [[ "$v" =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-rc\.[0-9]+)?$ ]] ||
    die "version '$v' is not a release: give a release tag like v1.2.0 (https://github.com/$repository/releases), or leave the version input empty to install this action's own release"
  echo "$v"
}

version="$(resolve_version)"
target="$(detect_target)"
[[ "$target" =~ ^[0-9A-Za-z._-]+$ ]] || die "target '$target' is not a target triple"
case "$target" in
  unsupported-*)
    [ "$from_source" = 1 ] ||
      die "no deploy-guard release is built for this runner (${target#unsupported-}): run the job on Linux x86_64 or arm64 (runs-on: ubuntu-latest or ubuntu-24.04-arm) or macOS arm64 (macos-14 or later), or set build-from-source: true (DG_BUILD_FROM_SOURCE=1) to build it with cargo, which takes minutes" ;;
esac
dir="${DG_INSTALL_DIR:-${RUNNER_TOOL_CACHE:-$HOME/.cache}/deploy-guard/$version/$target}"

if [ "${1:-}" = "--resolve" ]; then
  out version "$version"
  out target "$target"
  out dir "$dir"
  exit 0
fi
[ $# -eq 0 ] || die "unknown argument '$1' (use --resolve or nothing)"

bin="$dir/deploy-guard"

mkdir -p "$(dirname "$dir")"
tmp="$(mktemp -d "$(dirname "$dir")/.install.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

place() {
  chmod 755 "$tmp/deploy-guard"
  mkdir -p "$dir"
  # A checksum file left by an older install.sh: never read, so not kept to mislead.
  rm -f "$dir/deploy-guard.sha256"
  mv -f "$tmp/deploy-guard" "$bin"
}

if [ "$from_source" = 1 ]; then
  say "build-from-source: building $src_dir with cargo (this takes minutes)"
  command -v cargo >/dev/null 2>&1 ||
    die "build-from-source is set but cargo is not installed: install Rust (https://rustup.rs) in an earlier step, or use a release"
  target_dir="${CARGO_TARGET_DIR:-$src_dir/target}"
  (cd "$src_dir" && CARGO_TARGET_DIR="$target_dir" cargo build --release --locked) >&2 ||
    die "cargo build --release --locked failed in $src_dir"
  [ -x "$target_dir/release/deploy-guard" ] || die "cargo built no $target_dir/release/deploy-guard"
  cp "$target_dir/release/deploy-guard" "$tmp/deploy-guard"
  place
  out bin "$bin"
  out from source
  exit 0
fi

sums="${DG_CHECKSUMS_FILE:-$src_dir/release/sha256sums/$version.txt}"
[ -f "$sums" ] ||
  die "no committed checksums for $version ($sums is missing): this checkout of the action is not a release of $version. Pin the action to a release (uses: $repository@v1, a vX.Y.Z tag or its commit SHA) and leave the version input empty, or set build-from-source: true"
asset="deploy-guard-$target"
expected="$(awk -v a="$asset" '($2 == a || $2 == "*" a) { print $1; exit }' "$sums")"
[ -n "$expected" ] || die "$sums lists no $asset: $version has no binary for $target; set build-from-source: true to build one"
[[ "$expected" =~ ^[0-9a-f]{64}$ ]] || die "$sums has a malformed checksum for $asset"

# Already in place (a rerun, or restored from the Action's cache)? Only if it matches the
# committed checksum: the cache entry is writable by any job with the same key, so nothing kept
# in it can vouch for the binary beside it. No download at all then.
if [ -x "$bin" ] && [ "$(sha256_of "$bin")" = "$expected" ]; then
  say "$version for $target already installed and matches the committed checksum: $bin"
  out bin "$bin"
  out from cached
  exit 0
fi
[ ! -e "$bin" ] || say "the installed $bin does not match the committed checksum: replacing it"

base="${DG_RELEASE_BASE_URL:-https://github.com/$repository/releases/download/$version}"
base="${base%/}"
say "downloading $base/$asset"
code="$(curl --silent --show-error --location --retry 3 --retry-connrefused --connect-timeout 10 \
  --max-time 300 --output "$tmp/deploy-guard" --write-out '%{http_code}' "$base/$asset" 2>"$tmp/curl.err")" || true
[ "$code" = 200 ] || die "cannot download $base/$asset (HTTP ${code:-000}): $(cat "$tmp/curl.err"). Nothing was installed; rerun the job when the download works"
actual="$(sha256_of "$tmp/deploy-guard")"
if [ "$actual" != "$expected" ]; then
  die "checksum mismatch for $asset: the committed $sums says $expected, the download is $actual. \
Nothing was installed. The release asset or the download was tampered with or corrupted; do not run it."
fi
place
say "installed $version for $target (sha256 $expected): $bin"
out bin "$bin"
out from release
