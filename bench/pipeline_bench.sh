#!/usr/bin/env bash
# Benchmark: the streaming pipeline end to end (aggregator -> observations -> correlator ->
# findings, real processes, real broker) against the broker's raw consume rate of the same
# records, in one run on one machine (docs/design.md §6, issue 7).
#
#   bench/pipeline_bench.sh
#
# Two measurements, then the raw consume rate of the same topic with kcat:
#  1. throughput: EVENTS audit events (pod-bound token uses of SERVICE_ACCOUNTS accounts, one
#     in REPLAY_EVERY a replay from an off-cluster address of its own) are written to a backlog
#     first; an aggregator and a correlator then start, and the clock runs until the findings
#     topic holds every replay's finding (the last event of each account is a replay, so the
#     last finding means every partition was consumed). Events/s = EVENTS / that time.
#  2. latency: with both running and idle, RATE events/s are offered for LATENCY_SECS (one in
#     REPLAY_EVERY a replay); latency = the finding's Kafka timestamp (the correlator's commit)
#     minus the raw record's (kcat's produce), matched by audit ID; p50 and p99.
# The correlator commits every COMMIT_INTERVAL (its default, 1s): that bounds latency from below.
#
# Environment:
#   TOKENTRAIL_KAFKA_BOOTSTRAP  a running broker (default: integration-tests/kafka/broker.sh start)
#   KAFKA_SECURITY=ssl|sasl_ssl the tokentrail processes through that listener of a broker.sh
#                               broker (bench/stream_common.sh)
#   TOKENTRAIL=...              binary (default target/release/tokentrail, built here if missing)
#   EVENTS=100000 SERVICE_ACCOUNTS=200 REPLAY_EVERY=100 RATE=2000 LATENCY_SECS=20
#   PARTITIONS=4 COMMIT_INTERVAL=1s BENCH_OUT=bench-out
set -euo pipefail

cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-100000}
SERVICE_ACCOUNTS=${SERVICE_ACCOUNTS:-200}
REPLAY_EVERY=${REPLAY_EVERY:-100}
RATE=${RATE:-2000}
LATENCY_SECS=${LATENCY_SECS:-20}
PARTITIONS=${PARTITIONS:-4}
COMMIT_INTERVAL=${COMMIT_INTERVAL:-1s}
OUT=${BENCH_OUT:-bench-out}/pipeline
TOKENTRAIL=${TOKENTRAIL:-target/release/tokentrail}
mkdir -p "$OUT"

# The broker, the run's topics and the audit-event generator, shared with correlator_bench.sh.
source bench/stream_common.sh

gen "$EVENTS" 0 >"$OUT/backlog.jsonl"
WANT=$(replays "$OUT/backlog.jsonl")
echo "backlog: $EVENTS events, $WANT replays, $(du -h "$OUT/backlog.jsonl" | cut -f1)" >&2
kcat -P -b "$BOOT" -t "$RAW" -z lz4 -X linger.ms=20 -l "$OUT/backlog.jsonl"

cat >"$OUT/aggregator.json" <<JSON
{"kafka": {"bootstrap_servers": "$PROC_BOOT", "security": $PROC_SECURITY, "group_id": "$RUN-agg",
  "audit_topics": [{"topic": "$RAW", "cluster": "bench"}],
  "observations_topic": "$OBS", "dead_letter_topic": "$DLQ"}}
JSON
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
START=$(date +%s.%N)
"$TOKENTRAIL" aggregator --config "$OUT/aggregator.json" 2>"$OUT/aggregator.log" &
PIDS+=($!)
"$TOKENTRAIL" correlator --bootstrap-servers "$PROC_BOOT" "${PROC_FLAGS[@]}" --group "$RUN-corr" --instance "$RUN-corr-0" \
    --observations-topic "$OBS" --findings-topic "$FINDINGS" --changelog-topic "$STATE" \
    --commit-interval "$COMMIT_INTERVAL" 2>"$OUT/correlator.log" &
PIDS+=($!)
while (($(findings_count) < WANT)); do sleep 0.5; done
END=$(date +%s.%N)
THROUGHPUT=$(python3 -c "print(round($EVENTS / ($END - $START)))")
echo "pipeline: $EVENTS events to $WANT findings in $(python3 -c "print(round($END - $START, 2))") s: $THROUGHPUT events/s" >&2

# Latency at a fixed offered rate, the pipeline warm and idle.
N=$((RATE * LATENCY_SECS))
gen "$N" 1 >"$OUT/paced.jsonl"
WANT2=$((WANT + $(replays "$OUT/paced.jsonl")))
python3 - "$RATE" "$OUT/paced.jsonl" <<'PY' | kcat -P -b "$BOOT" -t "$RAW" -X linger.ms=5
import sys, time
rate = int(sys.argv[1]); start = time.monotonic()
for i, line in enumerate(open(sys.argv[2])):
    due = start + i / rate
    delay = due - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    sys.stdout.write(line)
    if i % 50 == 0:
        sys.stdout.flush()
PY
while (($(findings_count) < WANT2)); do sleep 0.5; done
kcat -C -b "$BOOT" -t "$RAW" -o beginning -e -q -f '%T %s\n' | grep '"bench-1-' >"$OUT/raw-ts.txt"
kcat -C -b "$BOOT" -t "$FINDINGS" -o beginning -e -q -X isolation.level=read_committed -f '%T %s\n' >"$OUT/findings-ts.txt"
LAT=$(python3 - "$OUT/raw-ts.txt" "$OUT/findings-ts.txt" <<'PY'
import json, sys
produced = {}
for line in open(sys.argv[1]):
    ts, payload = line.split(" ", 1)
    produced[json.loads(payload)["auditID"]] = int(ts)
lat = []
for line in open(sys.argv[2]):
    ts, payload = line.split(" ", 1)
    f = json.loads(payload)
    for a in f.get("audit_ids", [])[:1]:
        if a in produced:
            lat.append(int(ts) - produced[a])
lat.sort()
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print(f"{len(lat)} {pick(0.5)} {pick(0.99)}")
PY
)
read -r MATCHED P50 P99 <<<"$LAT"
echo "latency at $RATE events/s offered: p50 $P50 ms, p99 $P99 ms ($MATCHED findings matched)" >&2

# The broker's raw consume rate of the same topic, same records, same run.
RAW_RECORDS=$((EVENTS + N))
T0=$(date +%s.%N)
GOT=$(kcat -C -b "$BOOT" -t "$RAW" -o beginning -e -q | wc -l)
T1=$(date +%s.%N)
RAWRATE=$(python3 -c "print(round($GOT / ($T1 - $T0)))")
RATIO=$(python3 -c "print(round($THROUGHPUT / $RAWRATE, 3))")
cat <<MD | tee "$OUT/results.md"
| what | figure |
| --- | --- |
| pipeline throughput (backlog of $EVENTS events, aggregator + correlator, 1 replica each, $PARTITIONS partitions) | $THROUGHPUT events/s |
| end-to-end latency at $RATE events/s offered, p50 / p99 (commit interval $COMMIT_INTERVAL) | $P50 ms / $P99 ms |
| kcat raw consume of the same topic ($GOT of $RAW_RECORDS records) | $RAWRATE records/s |
| **ratio pipeline / raw consume** | **$RATIO** |
MD
