#!/usr/bin/env bash
# Fuzzes the server's decoders of everything a client sends and the local
# client store (see docs/RELIABILITY.md). cargo-fuzz / libFuzzer on the
# stable toolchain: RUSTC_BOOTSTRAP=1 lets stable rustc take the
# sanitizer-coverage flags cargo-fuzz passes; no sanitizer (`-s none`: the
# crates are `unsafe_code = forbid`, and ASan would need an instrumented std).
#
#   scripts/fuzz.sh --ci        bounded run: 45 s per target (CI)
#   scripts/fuzz.sh             long run: 1 h per target
#   scripts/fuzz.sh 600         N seconds per target
#   FUZZ_TARGETS="store_mutations" scripts/fuzz.sh   one target only
#
# The committed seed corpus is fuzz/corpus/<target>/; new inputs go to
# fuzz/target/corpus/<target>/ (not committed), crashes to
# fuzz/artifacts/<target>/. A crash fails the script; keep its input as a
# regression seed in fuzz/corpus/<target>/ once fixed.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=3600
case "${1:-}" in
  --ci) seconds=45 ;;
  "") ;;
  *) seconds="$1" ;;
esac
targets=${FUZZ_TARGETS:-"decode_client_message store_mutations"}

if ! command -v cargo-fuzz >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo-fuzz" ]; then
  echo "==> installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
export PATH="$HOME/.cargo/bin:$PATH"
export RUSTC_BOOTSTRAP=1
if [ "$seconds" -le 60 ]; then
  # A bounded CI run fuzzes for seconds, so it builds lightly optimised and
  # without debug info: 196 s against 271 s on the quiet 2-core machine, for
  # 87 against 118 runs/s of store_mutations (SQLite-bound) in 30 s
  # (2026-12-04). Long runs keep the full release profile of fuzz/Cargo.toml.
  export CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_DEBUG=0
fi

echo "==> fuzz: building targets"
start=$(date +%s)
(cd fuzz && cargo fuzz build -s none)
echo "==> fuzz: built in $(( $(date +%s) - start )) s"

for t in $targets; do
  work="fuzz/target/corpus/$t"
  mkdir -p "$work" "fuzz/artifacts/$t"
  echo "==> fuzz: $t for ${seconds} s"
  # The first corpus directory receives new inputs; the committed seeds are
  # only read. -rss_limit_mb bounds memory; -timeout flags a slow input.
  # The exit status is taken from the fuzzer itself, not from a pipeline
  # (behind `| grep ... || true` a crash would read as success).
  status=0
  (cd fuzz && cargo fuzz run -s none "$t" "target/corpus/$t" "corpus/$t" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1) \
    >"fuzz/target/$t.log" 2>&1 || status=$?
  grep -E "^(#[0-9]+ +(INITED|DONE|pulse)|stat::|==|SUMMARY|Done|.*panicked)" "fuzz/target/$t.log" || true
  if [ "$status" -ne 0 ]; then
    echo "error: fuzz target $t failed (exit $status); see fuzz/target/$t.log and fuzz/artifacts/$t/" >&2
    exit 1
  fi
done
echo "==> fuzz: done"
