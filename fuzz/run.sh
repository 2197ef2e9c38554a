#!/usr/bin/env bash
# Fuzzes every target for SECONDS each, one after the other, and exits non-zero on a finding.
#
#   fuzz/run.sh SECONDS [TARGET...]      e.g. fuzz/run.sh 300, or fuzz/run.sh 60 mongo_wire
#
# Targets (fuzz/fuzz_targets/; the checks they make are in tests/fuzz_regressions/checks.rs):
#   pgoutput_decode  cdc_tui::source::postgres::pgoutput::decode
#   config_check     cdc_tui::config::check_text (parse, then validate)
#   mongo_wire       mongo_test_server::wire::parse_message
#
# Besides panics (and, with AddressSanitizer, memory errors and leaks) it counts as a finding:
#   - an input that takes longer than 5 s (-timeout): a hang;
#   - a single allocation over 64 MB (-malloc_limit_mb) or a process over 512 MB
#     (-rss_limit_mb): memory reserved from a length field instead of from the input.
# A finding is saved under fuzz/artifacts/TARGET/; replay it with
#   fuzz/target/x86_64-unknown-linux-gnu/release/TARGET FILE
# fix the bug, then keep the input as tests/fuzz_regressions/TARGET/NAME so that
# `cargo test --test fuzz_regressions` replays it from then on. The corpus that fuzzing grows
# is kept in fuzz/corpus/TARGET/ (not committed); the inputs kept under
# tests/fuzz_regressions/TARGET/ seed it. Logs: fuzz/logs/TARGET.log.
#
# Stable toolchain: cargo-fuzz builds with nightly-only flags (-Zsanitizer=address and the
# sanitizer-coverage options). RUSTC_BOOTSTRAP=1 makes the stable rustc and cargo accept them;
# the stable toolchain ships the sanitizer runtimes (librustc-stable_rt.asan.a), so
# AddressSanitizer works. Where it does not, FUZZ_SANITIZER=none fuzzes without it (panics,
# hangs and -rss_limit_mb are still caught; -malloc_limit_mb needs a sanitizer's allocator).
# --build-std is not used: it needs the rust-src component, which stable does not install.
#
# The build goes to fuzz/target, not the shared target dir: the instrumentation flags and
# RUSTC_BOOTSTRAP would otherwise make the normal builds there recompile.
set -euo pipefail

if [ $# -lt 1 ] || ! [[ $1 =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: fuzz/run.sh SECONDS [TARGET...]" >&2
  exit 2
fi
duration=$1
shift
cd "$(dirname "$0")/.."
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(pgoutput_decode config_check mongo_wire)
fi

export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="$PWD/fuzz/target"
sanitizer=${FUZZ_SANITIZER:-address}

if ! command -v cargo-fuzz >/dev/null; then
  cargo install cargo-fuzz --locked
fi

# Build every target once, then run the binaries: all targets fuzz the same snapshot of the
# code, and the times below are fuzzing only (`cargo fuzz run` would rebuild before each).
cargo fuzz build --fuzz-dir fuzz --sanitizer "$sanitizer"
bin_dir="$CARGO_TARGET_DIR/$(rustc -vV | sed -n 's/^host: //p')/release"
# ASan keeps freed memory in a quarantine (256 MB by default) to catch use after free; a
# smaller one keeps it from eating into -rss_limit_mb below.
export ASAN_OPTIONS="${ASAN_OPTIONS:-quarantine_size_mb=64}"

mkdir -p fuzz/logs
failed=()
summary=()
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
  options=(
    "-max_total_time=$duration"
    -timeout=5
    -rss_limit_mb=512
    -malloc_limit_mb=64
    "-artifact_prefix=fuzz/artifacts/$target/"
    -print_final_stats=1
  )
  if [ -f "fuzz/dicts/$target.dict" ]; then
    options+=("-dict=fuzz/dicts/$target.dict")
  fi
  log="fuzz/logs/$target.log"
  echo "== $target: ${duration}s"
  started=$(date +%s)
  status=0
  "$bin_dir/$target" "${options[@]}" "fuzz/corpus/$target" "tests/fuzz_regressions/$target" \
    >"$log" 2>&1 || status=$?
  elapsed=$(($(date +%s) - started))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  if [ "$status" -ne 0 ]; then
    failed+=("$target")
    tail -n 60 "$log"
    summary+=("$target: FINDING after ${elapsed}s, ${runs:-?} executions (see $log and fuzz/artifacts/$target/)")
  else
    summary+=("$target: ${elapsed}s, ${runs:-?} executions, nothing found")
  fi
done

echo
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "findings in: ${failed[*]}" >&2
  exit 1
fi
