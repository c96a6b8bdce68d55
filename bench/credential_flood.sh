#!/usr/bin/env bash
# Peak memory of `tokentrail analyze` against the number of distinct credentials (issue 17):
# every event of the log is a new pod-bound credential of a new service account, used once from
# its own address (bench/credential_flood.py). Prints peak RSS and bytes per credential for each
# size, in one run on one machine, so the figures compare side by side.
#
#   bash bench/credential_flood.sh [SIZES...]      # default: 100000 300000 1000000
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("${@:-100000 300000 1000000}")
read -r -a sizes <<<"${sizes[*]}"
out=${BENCH_OUT:-bench-out/credential-flood}
mkdir -p "$out"
cargo build --release --locked -q -p tokentrail
printf '%-12s %12s %10s %18s\n' credentials "peak RSS" wall "RSS per credential"
for n in "${sizes[@]}"; do
  log="$out/flood-$n.log"
  [[ -s $log ]] || python3 bench/credential_flood.py --events "$n" >"$log"
  /usr/bin/time -f '%M %e' -o "$out/time-$n" target/release/tokentrail analyze "$log" >"$out/report-$n.txt" 2>"$out/stderr-$n"
  read -r kib wall <"$out/time-$n"
  printf '%-12s %9d MiB %9ss %14d B\n' "$n" $((kib / 1024)) "$wall" $((kib * 1024 / n))
done
