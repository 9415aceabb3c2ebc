#!/usr/bin/env bash
# Installs the deploy-guard binary for this machine: the release asset for its OS and
# architecture, verified against the release's sha256sums.txt; or, when no release matches, a
# `cargo build --release --locked` of the source this script sits in. Used by action.yml; runs
# anywhere with bash and curl.
#
#   scripts/install.sh --resolve   print version=, target=, dir= (for the Action's cache key)
#   scripts/install.sh             install; print bin=, from= (release | source | cached)
#
# Printed `name=value` lines also go to $GITHUB_OUTPUT when it is set. Settings (environment):
#   DG_VERSION           release tag, e.g. v1.2.0 [default: v + the version in ./Cargo.toml]
#   DG_RELEASE_BASE_URL  where the assets and sha256sums.txt are
#                        [default: https://github.com/$DG_REPOSITORY/releases/download/$DG_VERSION]
#   DG_REPOSITORY        [default: station/deploy-guard]
#   DG_INSTALL_DIR       [default: ${RUNNER_TOOL_CACHE:-$HOME/.cache}/deploy-guard/VERSION/TARGET]
#   DG_TARGET            override the detected target triple
#
# A checksum mismatch stops with exit 1 and installs nothing: it never falls back to a build.
# An installed (or cache-restored) binary is used only when it matches sha256sums.txt, fetched
# again on every run; with no release to check it against, it is built again from source.
set -euo pipefail

die() { echo "deploy-guard install: error: $*" >&2; exit 1; }
say() { echo "deploy-guard install: $*" >&2; }
out() {
  echo "$1=$2"
  if [ -n "${GITHUB_OUTPUT:-}" ]; then echo "$1=$2" >>"$GITHUB_OUTPUT"; fi
  # Later steps of the job can call `deploy-guard` by name.
  if [ "$1" = bin ] && [ -n "${GITHUB_PATH:-}" ]; then dirname "$2" >>"$GITHUB_PATH"; fi
}

src_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

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
    v="$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$src_dir/Cargo.toml" | head -n1)"
    [ -n "$v" ] || die "no version given and none found in $src_dir/Cargo.toml"
  fi
  case "$v" in v*) ;; *) v="v$v" ;; esac
  [[ "$v" =~ ^v[0-9A-Za-z._+-]+$ ]] || die "version '$v' is not a release tag like v1.2.0"
  echo "$v"
}

version="$(resolve_version)"
target="$(detect_target)"
[[ "$target" =~ ^[0-9A-Za-z._-]+$ ]] || die "target '$target' is not a target triple"
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

# fetch URL FILE: prints the HTTP status ("000" when the server could not be reached).
fetch() {
  local code
  code="$(curl --silent --show-error --location --retry 3 --retry-connrefused --connect-timeout 10 \
    --max-time 300 --output "$2" --write-out '%{http_code}' "$1" 2>"$tmp/curl.err")" || true
  [ -n "$code" ] || code=000
  echo "$code"
}

install_from_source() {
  say "no release asset for $version on $target ($1): building from source in $src_dir"
  command -v cargo >/dev/null 2>&1 ||
    die "no release for $version on $target and cargo is not installed: install Rust (https://rustup.rs) or use a released version"
  local target_dir="${CARGO_TARGET_DIR:-$src_dir/target}"
  (cd "$src_dir" && CARGO_TARGET_DIR="$target_dir" cargo build --release --locked) >&2 ||
    die "cargo build --release --locked failed"
  [ -x "$target_dir/release/deploy-guard" ] || die "cargo built no $target_dir/release/deploy-guard"
  cp "$target_dir/release/deploy-guard" "$tmp/deploy-guard"
  place
  out bin "$bin"
  out from source
  exit 0
}

place() {
  chmod 755 "$tmp/deploy-guard"
  mkdir -p "$dir"
  # A checksum file left by an older install.sh: never read, so not kept to mislead.
  rm -f "$dir/deploy-guard.sha256"
  mv -f "$tmp/deploy-guard" "$bin"
}

asset="deploy-guard-$target"
base="${DG_RELEASE_BASE_URL:-https://github.com/${DG_REPOSITORY:-station/deploy-guard}/releases/download/$version}"
base="${base%/}"

case "$target" in unsupported-*) install_from_source "no release is built for this platform" ;; esac

code="$(fetch "$base/sha256sums.txt" "$tmp/sha256sums.txt")"
case "$code" in
  200) ;;
  404) install_from_source "$base/sha256sums.txt: 404" ;;
  *) die "cannot download $base/sha256sums.txt (HTTP $code): $(cat "$tmp/curl.err")" ;;
esac
expected="$(awk -v a="$asset" '($2 == a || $2 == "*" a) { print $1; exit }' "$tmp/sha256sums.txt")"
[ -n "$expected" ] || install_from_source "sha256sums.txt lists no $asset"
[[ "$expected" =~ ^[0-9a-f]{64}$ ]] || die "sha256sums.txt has a malformed checksum for $asset"

# Already in place (a rerun, or restored from the Action's cache)? Only if it matches the
# release's checksum, read again now: the cache entry is writable by any job with the same key,
# so nothing kept in it (a recorded checksum) can vouch for the binary beside it.
if [ -x "$bin" ] && [ "$(sha256_of "$bin")" = "$expected" ]; then
  say "$version for $target already installed and matches sha256sums.txt: $bin"
  out bin "$bin"
  out from cached
  exit 0
fi
[ ! -e "$bin" ] || say "the installed $bin does not match sha256sums.txt: replacing it"

say "downloading $base/$asset"
code="$(fetch "$base/$asset" "$tmp/deploy-guard")"
case "$code" in
  200) ;;
  404) install_from_source "$base/$asset: 404" ;;
  *) die "cannot download $base/$asset (HTTP $code): $(cat "$tmp/curl.err")" ;;
esac
actual="$(sha256_of "$tmp/deploy-guard")"
if [ "$actual" != "$expected" ]; then
  die "checksum mismatch for $asset: sha256sums.txt says $expected, the download is $actual. \
Nothing was installed. The release asset or the download was tampered with or corrupted; do not run it."
fi
echo "$expected" >"$tmp/deploy-guard.sha256"
place
say "installed $version for $target (sha256 $expected): $bin"
out bin "$bin"
out from release
