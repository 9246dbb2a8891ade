#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Runs kmcl's fuzz targets (rust/host/fuzz/fuzz_targets: the ring reader,
# descriptors, GPA range lists, transfer-page range lists, completion
# correlation, the save stream;
# cargo-fuzz/libFuzzer) for SECONDS each.  Each run first replays its whole
# corpus -- the checked-in seeds in rust/host/fuzz/corpus/<target>/ and the
# corpus libFuzzer grew in earlier runs, kept in out/fuzz/corpus/<target>/ --
# then mutates.  Crashing inputs go to out/fuzz/artifacts/<target>/.
# Prints one line per target:
#   PASS fuzz: <target> (<corpus> inputs replayed, <runs> runs in <s>s)
#   FAIL fuzz: <target> ...
# and exits non-zero if any target failed.
#
#   scripts/fuzz.sh [SECONDS]     (default 300, `make fuzz`; make check: 10)
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-300}
fuzz_dir=$top/rust/host/fuzz
out=$top/out/fuzz
export RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 PATH=/usr/bin:$PATH
cargo_fuzz=${CARGO_HOME:-$HOME/.cargo}/bin/cargo-fuzz
failed=0

cd "$fuzz_dir" || exit 1
if ! "$cargo_fuzz" build --sanitizer none >"$out.build.log" 2>&1; then
	tail -20 "$out.build.log"
	echo "FAIL fuzz: targets build"
	exit 1
fi
for t in $("$cargo_fuzz" list); do
	mkdir -p "$out/corpus/$t" "$out/artifacts/$t"
	log=$out/$t.log
	"$cargo_fuzz" run --sanitizer none "$t" "$out/corpus/$t" "corpus/$t" -- \
		-max_total_time="$secs" -artifact_prefix="$out/artifacts/$t/" \
		-print_final_stats=1 >"$log" 2>&1
	rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	inputs=$(sed -n 's/.*seed corpus: files: \([0-9]*\).*/\1/p' "$log" | head -n 1)
	if [ "$rc" -eq 0 ]; then
		echo "PASS fuzz: $t (${inputs:-?} corpus inputs replayed, ${runs:-?} runs in ${secs}s)"
	else
		grep -E 'panicked|ERROR|SUMMARY' "$log" | head -5
		echo "FAIL fuzz: $t (exit $rc; inputs in out/fuzz/artifacts/$t/, log $log)"
		failed=1
	fi
done
exit $failed
