#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets/) for a bounded time and prints
# one line per target: executions, executions per second, corpus, coverage.
# Fails on the first target that finds a crash, a leak or a timeout; the
# input that did it is in fuzz/artifacts/<target>/ (replay it with
# `cargo +nightly fuzz run <target> <file>`).
#
#   scripts/fuzz.sh SECONDS [--smoke] [TARGET...]
#
# Without --smoke each target grows its own corpus in fuzz/corpus/<target>/
# (git-ignored), starting from the committed seeds in fuzz/seeds/<target>/.
# With --smoke (what `make test` runs) each target starts from the seeds
# alone in a fresh folder, so the run stays short and the same everywhere.
set -euo pipefail

seconds=${1:?usage: scripts/fuzz.sh SECONDS [--smoke] [TARGET...]}
shift
smoke=false
if [[ ${1:-} == --smoke ]]; then
  smoke=true
  shift
fi
cd "$(dirname "$0")/.."
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  for f in fuzz/fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi

# Inputs built with `arbitrary` start short and need room to grow into
# requests with several events; the text targets grow as libFuzzer likes.
structured=" audit_redact engine forwarded jwt_source ratelimit_key waf_csrf "

# Release code with debug assertions (and so overflow checks): an integer
# that would wrap silently in the shipped module fails here.
cargo +nightly fuzz build -O -a

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%-14s %12s %9s %8s %8s\n' target executions exec/s corpus coverage
for t in "${targets[@]}"; do
  if $smoke; then
    corpus=$work/$t
  else
    corpus=fuzz/corpus/$t
  fi
  mkdir -p "$corpus" "fuzz/artifacts/$t"
  seeds=()
  [[ -d fuzz/seeds/$t ]] && seeds=("fuzz/seeds/$t")
  options=(-max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 -max_len=16384
           -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1)
  [[ $structured == *" $t "* ]] && options+=(-len_control=0)
  log=$work/$t.log
  if ! cargo +nightly fuzz run -O -a "$t" "$corpus" "${seeds[@]}" -- "${options[@]}" >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz target $t failed: its input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1)
  corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$done_line")
  cov=$(sed -n 's/.* cov: \([0-9]*\) .*/\1/p' <<<"$done_line")
  printf '%-14s %12s %9s %8s %8s\n' "$t" "${runs:-?}" "${rate:-?}" "${corp:-?}" "${cov:-?}"
done
