#!/usr/bin/env bash
# Fuzz the MQTT codec for a bounded time: the cargo-fuzz target `decode` (dataplane/fuzz) for
# [seconds] (default 60) of libFuzzer, after its build. It needs a nightly toolchain and
# cargo-fuzz: without nightly it says "skipped" and exits 0 (the codec's property tests, run
# with the tests, stand in); without cargo-fuzz it installs it, within 10 minutes. The build is
# bounded too (FUZZ_BUILD_SECONDS, default 900). A crash fails the script; the input lands in
# dataplane/fuzz/artifacts/decode/.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: scripts/fuzz.sh [seconds]" >&2
  exit 2
fi

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "fuzz: skipped: no nightly toolchain (rustup toolchain install nightly), which libFuzzer's sanitizer flags need"
  exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz (at most 10 minutes)"
  if ! timeout 600 cargo +nightly install cargo-fuzz --locked; then
    echo "fuzz: skipped: cargo-fuzz could not be installed"
    exit 0
  fi
fi

# Beside the workspace's own build output, so it is cached and ignored like it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/fuzz}"
cd dataplane/fuzz
# A cold build (release, sanitizers, the data plane's whole dependency tree) takes minutes on a
# small CI machine: bounded, so that CI stays within its time; running out of time is a skip,
# a build error is a failure.
build_seconds="${FUZZ_BUILD_SECONDS:-900}"
echo "fuzz: building the decode target ($(cargo fuzz --version), at most ${build_seconds} s)"
status=0
timeout "$build_seconds" cargo +nightly fuzz build decode || status=$?
if [ "$status" -eq 124 ]; then
  echo "fuzz: skipped: the build took longer than ${build_seconds} s (FUZZ_BUILD_SECONDS)"
  exit 0
elif [ "$status" -ne 0 ]; then
  exit "$status"
fi
echo "fuzz: running decode for ${seconds} s"
cargo +nightly fuzz run decode -- -max_total_time="$seconds" -print_final_stats=1
echo "fuzz: no crash in ${seconds} s"
