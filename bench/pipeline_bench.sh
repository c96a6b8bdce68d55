#!/usr/bin/env bash
# Benchmark: the streaming pipeline end to end (aggregator -> observations -> correlator ->
# findings, real processes, real broker, default settings) against the broker's raw consume rate
# of the same records, on one machine. Every time is a Kafka record timestamp, never a polling
# loop's clock: the loops below only wait.
#
#   bench/pipeline_bench.sh
#
# Each of RUNS runs gets fresh topics and fresh processes, warmed up (one event through to its
# finding: groups joined, transactions initialised), then:
#  1. throughput: EVENTS audit events (pod-bound token uses of SERVICE_ACCOUNTS accounts, one in
#     REPLAY_EVERY a replay from an off-cluster address of its own, each account's last event a
#     replay) are produced at once (kcat, lz4); time = the last finding's record timestamp (the
#     correlator produces findings inside the commit's transaction) minus the first raw
#     record's (kcat's produce). Events/s = EVENTS / that time.
#  1b. held backlog: EVENTS more (another seed) produced while the aggregator is frozen
#     (SIGSTOP), then it is thawed (SIGCONT): a backlog already in the topic, as the raw baseline
#     reads one and as a replay or a new consumer group meets one. Time = the last of their
#     findings' timestamps minus the thaw. In (1) the pipeline can go no faster than kcat
#     produces, which on this machine is under half the consume rate: (1) alone cannot show a
#     ratio above ~0.45.
#  2. raw baseline: kcat reads the same raw topic from the beginning to its end with
#     fetch.wait.max.ms=10 (librdkafka's default of 500 ms would time the broker's long poll);
#     records/s = records / kcat's wall time.
#  3. steady state: for each rate of RATES, LATENCY_SECS of events offered at that rate (paced by
#     Python into kcat); latency = each replay's finding timestamp minus its raw record's,
#     matched by audit ID; p50 and p99, and the rate actually produced.
# Prints each run's figures and, over the runs, the median and the range; also written to
# $BENCH_OUT/pipeline/results.md.
#
# Environment:
#   TOKENTRAIL_KAFKA_BOOTSTRAP  a running broker (default: integration-tests/kafka/broker.sh start)
#   KAFKA_SECURITY=ssl|sasl_ssl the tokentrail processes through that listener of a broker.sh
#                               broker (bench/stream_common.sh)
#   TOKENTRAIL=...              binary (default target/release/tokentrail, built here if missing)
#   EVENTS=100000 SERVICE_ACCOUNTS=200 REPLAY_EVERY=100 RATES="1000 5000 10000" LATENCY_SECS=10
#   RUNS=3 PARTITIONS=4 BENCH_OUT=bench-out
#   COMMIT_INTERVAL             the correlator's --commit-interval (default: its own, 250 ms)
#   JUDGING_SHARE               the correlator's --judging-share (default: its own, 0.25)
#   BATCH_MAX_BYTES             the aggregator's kafka.batch_max_bytes (default: its own, 256 KiB;
#                               0: one record per observation, as before batches)
set -euo pipefail

cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-100000}
SERVICE_ACCOUNTS=${SERVICE_ACCOUNTS:-200}
REPLAY_EVERY=${REPLAY_EVERY:-100}
RATES=${RATES:-1000 5000 10000}
LATENCY_SECS=${LATENCY_SECS:-10}
RUNS=${RUNS:-3}
PARTITIONS=${PARTITIONS:-4}
OUT=${BENCH_OUT:-bench-out}/pipeline
TOKENTRAIL=${TOKENTRAIL:-target/release/tokentrail}
mkdir -p "$OUT"

# The broker, the run's topics and the audit-event generator, shared with correlator_bench.sh.
source bench/stream_common.sh

PIDS=()
stop_pipeline() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; PIDS=(); }
trap stop_pipeline EXIT
BATCH_JSON=""
[ -z "${BATCH_MAX_BYTES:-}" ] || BATCH_JSON=", \"batch_max_bytes\": $BATCH_MAX_BYTES"
start_pipeline() { # run
    cat >"$OUT/aggregator.json" <<JSON
{"kafka": {"bootstrap_servers": "$PROC_BOOT", "security": $PROC_SECURITY, "group_id": "$RUN-agg",
  "audit_topics": [{"topic": "$RAW", "cluster": "bench"}],
  "observations_topic": "$OBS", "dead_letter_topic": "$DLQ"$BATCH_JSON}}
JSON
    "$TOKENTRAIL" aggregator --config "$OUT/aggregator.json" 2>"$OUT/aggregator-$1.log" &
    PIDS+=($!)
    "$TOKENTRAIL" correlator --bootstrap-servers "$PROC_BOOT" "${PROC_FLAGS[@]}" --group "$RUN-corr" --instance "$RUN-corr-0" \
        --observations-topic "$OBS" --findings-topic "$FINDINGS" --changelog-topic "$STATE" \
        ${COMMIT_INTERVAL:+--commit-interval "$COMMIT_INTERVAL"} ${JUDGING_SHARE:+--judging-share "$JUDGING_SHARE"} \
        2>"$OUT/correlator-$1.log" &
    PIDS+=($!)
}
await_findings() { # count
    local deadline=$((SECONDS + 600))
    while (($(findings_count) < $1)); do
        ((SECONDS < deadline)) || { echo "fewer than $1 findings after 600 s" >&2; exit 1; }
        sleep 0.5
    done
}
# "TIMESTAMP_MS AUDIT_ID" of every raw record, and of every finding (its first audit ID).
raw_stamps() { kcat -C -b "$BOOT" -t "$RAW" -o beginning -e -q -f '%T %s\n' | sed -n 's/^\([0-9]*\) .*"auditID":"\([^"]*\)".*/\1 \2/p'; }
finding_stamps() {
    kcat -C -b "$BOOT" -t "$FINDINGS" -o beginning -e -q -X isolation.level=read_committed -f '%T %s\n' |
        python3 -c '
import json, sys
for line in sys.stdin:
    ts, payload = line.split(" ", 1)
    ids = json.loads(payload).get("audit_ids", [])
    if ids:
        print(ts, ids[0])'
}

gen "$EVENTS" 0 >"$OUT/backlog.jsonl"
BACKLOG=$(replays "$OUT/backlog.jsonl")
gen "$EVENTS" 90 >"$OUT/held.jsonl"
HELD=$(replays "$OUT/held.jsonl")
echo "backlog: $EVENTS events, $BACKLOG replays, $(du -h "$OUT/backlog.jsonl" | cut -f1)" >&2
seed=2
for rate in $RATES; do
    gen $((rate * LATENCY_SECS)) $seed >"$OUT/paced-$rate.jsonl"
    seed=$((seed + 1))
done

: >"$OUT/runs.txt"
: >"$OUT/throughput.txt"
: >"$OUT/latency.txt"
for run in $(seq "$RUNS"); do
    ((run == 1)) || new_topics
    start_pipeline "$run"
    gen 1 1 | kcat -P -b "$BOOT" -t "$RAW"
    want=1
    await_findings $want

    # 1. Throughput: the backlog at once.
    kcat -P -b "$BOOT" -t "$RAW" -z lz4 -X linger.ms=20 -l "$OUT/backlog.jsonl"
    want=$((want + BACKLOG))
    await_findings $want
    raw_stamps | grep ' bench-0-' | sort -n | sed -n 1p >"$OUT/first.txt"
    finding_stamps | grep ' bench-0-' | sort -n | tail -n1 >"$OUT/last.txt"
    read -r first _ <"$OUT/first.txt"
    read -r last _ <"$OUT/last.txt"
    pipeline=$(python3 -c "print(round($EVENTS / (($last - $first) / 1000)))")

    # 1b. A backlog already in the topic when the aggregator reads it.
    kill -STOP "${PIDS[0]}"
    kcat -P -b "$BOOT" -t "$RAW" -z lz4 -X linger.ms=20 -l "$OUT/held.jsonl"
    thawed=$(date +%s%3N)
    kill -CONT "${PIDS[0]}"
    want=$((want + HELD))
    await_findings $want
    finding_stamps | grep ' bench-90-' | sort -n | tail -n1 >"$OUT/last-held.txt"
    read -r last_held _ <"$OUT/last-held.txt"
    held=$(python3 -c "print(round($EVENTS / (($last_held - $thawed) / 1000)))")

    # 2. The raw baseline: the same topic, read to its end without fetch waits.
    t0=$(date +%s.%N)
    got=$(kcat -C -b "$BOOT" -t "$RAW" -o beginning -e -q -X fetch.wait.max.ms=10 | wc -l)
    t1=$(date +%s.%N)
    rawrate=$(python3 -c "print(round($got / ($t1 - $t0)))")
    line="run $run: pipeline $pipeline events/s ($EVENTS events in $((last - first)) ms), on a held backlog $held events/s ($((last_held - thawed)) ms), raw consume $rawrate records/s ($got records), ratios $(python3 -c "print(round($pipeline / $rawrate, 3), round($held / $rawrate, 3))")"

    # 3. Steady state at each offered rate.
    for rate in $RATES; do
        file="$OUT/paced-$rate.jsonl"
        python3 - "$rate" "$file" <<'PY' | kcat -P -b "$BOOT" -t "$RAW" -X linger.ms=5
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
        want=$((want + $(replays "$file")))
        await_findings $want
        prefix=$(head -c 200 "$file" | sed -n 's/.*"auditID":"\(bench-[0-9]*\)-.*/\1/p')
        raw_stamps | grep " $prefix-" >"$OUT/raw-ts.txt"
        finding_stamps | grep " $prefix-" >"$OUT/findings-ts.txt"
        lat=$(python3 - "$OUT/raw-ts.txt" "$OUT/findings-ts.txt" <<'PY'
import sys
produced = {}
for line in open(sys.argv[1]):
    ts, audit = line.split()
    produced[audit] = int(ts)
times = sorted(produced.values())
achieved = (len(times) - 1) / ((times[-1] - times[0]) / 1000) if len(times) > 1 else 0
lat = sorted(int(ts) - produced[a] for ts, a in (l.split() for l in open(sys.argv[2])) if a in produced)
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print(f"{pick(0.5)} {pick(0.99)} {len(lat)} {round(achieved)}")
PY
)
        read -r p50 p99 matched achieved <<<"$lat"
        line+=", at $rate/s (produced $achieved/s): p50 $p50 ms p99 $p99 ms ($matched findings)"
        echo "$run $rate $p50 $p99" >>"$OUT/latency.txt"
    done
    echo "$line" | tee -a "$OUT/runs.txt" >&2
    echo "$run $pipeline $rawrate $held" >>"$OUT/throughput.txt"
    stop_pipeline
done

# Medians and ranges over the runs.
python3 - "$OUT" <<'PY' | tee "$OUT/results.md"
import statistics, sys
out = sys.argv[1]
thr = [l.split() for l in open(f"{out}/throughput.txt")]
lat = [l.split() for l in open(f"{out}/latency.txt")]
def row(name, xs, unit):
    xs = [float(x) for x in xs]
    return f"| {name} | {statistics.median(xs):,.0f} {unit} | {min(xs):,.0f}-{max(xs):,.0f} | {' '.join(f'{x:,.0f}' for x in xs)} |"
print("| what | median | range | runs |")
print("| --- | --- | --- | --- |")
print(row("pipeline, first raw record to last finding", [t[1] for t in thr], "events/s"))
print(row("raw consume (kcat, fetch.wait.max.ms=10)", [t[2] for t in thr], "records/s"))
ratios = [float(t[1]) / float(t[2]) for t in thr]
print(f"| **ratio pipeline / raw** | **{statistics.median(ratios):.3f}** | {min(ratios):.3f}-{max(ratios):.3f} | {' '.join(f'{r:.3f}' for r in ratios)} |")
print(row("pipeline on a held backlog, thaw to last finding", [t[3] for t in thr], "events/s"))
ratios = [float(t[3]) / float(t[2]) for t in thr]
print(f"| **ratio held backlog / raw** | **{statistics.median(ratios):.3f}** | {min(ratios):.3f}-{max(ratios):.3f} | {' '.join(f'{r:.3f}' for r in ratios)} |")
for rate in sorted({int(l[1]) for l in lat}):
    mine = [l for l in lat if int(l[1]) == rate]
    print(row(f"p50 latency at {rate:,}/s", [l[2] for l in mine], "ms"))
    print(row(f"p99 latency at {rate:,}/s", [l[3] for l in mine], "ms"))
PY
