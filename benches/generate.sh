#!/usr/bin/env bash
# Generator throughput and peak memory: builds lakecube in release mode, generates each preset
# given (default: sf1 sf10) into a temporary folder, and prints the summary line lakecube writes
# (rows, seconds, rows/s, peak RSS). Figures, not pass/fail: see docs/performance.md.
# Usage: benches/generate.sh [preset …]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet
presets=("$@"); [ ${#presets[@]} -gt 0 ] || presets=(sf1 sf10)
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for p in "${presets[@]}"; do
  dir=$(mktemp -d)
  ./target/release/lakecube generate --lake "$dir" --preset "$p" 2>&1 | tail -n 1
  echo "  on disk: $(du -sh "$dir" | cut -f1)"
  rm -rf "$dir"
done
