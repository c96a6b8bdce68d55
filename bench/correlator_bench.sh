#!/usr/bin/env bash
# Benchmark: the correlator's full Kafka loop alone, next to the engine alone, in one run on one
# machine (issue 6; docs/design.md §6).
#
#   bench/correlator_bench.sh
#
#  1. An aggregator turns EVENTS audit events (pod-bound token uses of SERVICE_ACCOUNTS accounts,
#     one in REPLAY_EVERY a replay from an off-cluster address of its own, each account's last
#     event a replay) into observations, and is stopped: this part is not timed.
#  2. `tokentrail correlator` starts on that full observations topic; the clock runs until the
#     findings topic (read_committed) holds every replay's finding, which means every partition
#     was consumed, folded, and committed in transactions with its findings and state.
#     Observations/s = EVENTS / that time; per core = EVENTS / the process's CPU seconds
#     (user + system, start-up and group join included).
#  3. The engine alone (correlator/core's engine_throughput example), built and run here, so the
#     ratio compares one run on one machine.
#
# Environment: TOKENTRAIL_KAFKA_BOOTSTRAP (default: integration-tests/kafka/broker.sh start),
# TOKENTRAIL (default target/release/tokentrail), EVENTS=100000 SERVICE_ACCOUNTS=200
# REPLAY_EVERY=100 PARTITIONS=4 COMMIT_INTERVAL=1s BENCH_OUT=bench-out, KAFKA_SECURITY=ssl|sasl_ssl
# (the tokentrail processes through that secure listener of a broker.sh broker)
set -euo pipefail

cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-100000}
SERVICE_ACCOUNTS=${SERVICE_ACCOUNTS:-200}
REPLAY_EVERY=${REPLAY_EVERY:-100}
PARTITIONS=${PARTITIONS:-4}
COMMIT_INTERVAL=${COMMIT_INTERVAL:-1s}
OUT=${BENCH_OUT:-bench-out}/correlator
TOKENTRAIL=${TOKENTRAIL:-target/release/tokentrail}
mkdir -p "$OUT"

source bench/stream_common.sh

records() { kcat -C -b "$BOOT" -t "$1" -o beginning -e -q -f 'x\n' 2>/dev/null | wc -l; }
cpu_seconds() { # pid: user + system CPU so far
    awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"
}

gen "$EVENTS" 0 >"$OUT/backlog.jsonl"
WANT=$(replays "$OUT/backlog.jsonl")
kcat -P -b "$BOOT" -t "$RAW" -z lz4 -X linger.ms=20 -l "$OUT/backlog.jsonl"

# 1. Observations, not timed.
cat >"$OUT/aggregator.json" <<JSON
{"kafka": {"bootstrap_servers": "$PROC_BOOT", "security": $PROC_SECURITY, "group_id": "$RUN-agg",
  "audit_topics": [{"topic": "$RAW", "cluster": "bench"}],
  "observations_topic": "$OBS", "dead_letter_topic": "$DLQ"}}
JSON
"$TOKENTRAIL" aggregator --config "$OUT/aggregator.json" 2>"$OUT/aggregator.log" &
AGG=$!
trap 'kill $AGG ${CORR:-} 2>/dev/null || true' EXIT
while (($(records "$OBS") < EVENTS)); do sleep 2; done
kill -TERM "$AGG" && wait "$AGG" || true
OBSERVATIONS=$(records "$OBS")
echo "observations topic: $OBSERVATIONS records from $EVENTS events; $WANT replays to find" >&2

# 2. The correlator's loop: consume, fold, emit, commit findings + state + offsets.
START=$(date +%s.%N)
"$TOKENTRAIL" correlator --bootstrap-servers "$PROC_BOOT" "${PROC_FLAGS[@]}" --group "$RUN-corr" --instance "$RUN-corr-0" \
    --observations-topic "$OBS" --findings-topic "$FINDINGS" --changelog-topic "$STATE" \
    --commit-interval "$COMMIT_INTERVAL" 2>"$OUT/correlator.log" &
CORR=$!
while (($(findings_count) < WANT)); do sleep 0.2; done
END=$(date +%s.%N)
CPU=$(cpu_seconds "$CORR")
kill -TERM "$CORR" && wait "$CORR" || true

# 3. The engine alone, same machine, same run.
ENGINE=$(cargo run --quiet --release -p tokentrail-correlator-core --example engine_throughput 2>/dev/null |
    awk '/^fold/ { gsub(/[(,]/, "", $4); print $4 }')

python3 - "$OBSERVATIONS" "$START" "$END" "$CPU" "$ENGINE" "$PARTITIONS" "$COMMIT_INTERVAL" <<'PY' | tee "$OUT/results.md"
import sys
n, start, end, cpu, engine = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
wall = end - start
print("| what | figure |")
print("| --- | --- |")
print(f"| correlator, full Kafka loop ({n:,} observations, {sys.argv[6]} partitions, commit every {sys.argv[7]}) | {n / wall:,.0f} observations/s ({wall:.2f} s wall) |")
print(f"| the same, per CPU second of the correlator process | {n / cpu:,.0f} observations/s per core ({cpu:.2f} CPU s) |")
print(f"| engine alone (engine_throughput example), one core | {engine:,.0f} observations/s |")
print(f"| **Kafka loop per core / engine alone** | **{n / cpu / engine:.2f}** |")
PY
