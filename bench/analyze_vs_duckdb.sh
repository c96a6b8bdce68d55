#!/usr/bin/env bash
# Benchmark: the full `tokentrail analyze` against DuckDB's GROUP BY over the same audit log,
# in the same run, on the same machine (docs/design.md §6, issue 2).
#
#   bench/analyze_vs_duckdb.sh
#
# Steps: build tokentrail (release); generate bench-out/audit.log (~1M events) and
# bench-out/audit-250k.log (same cluster, a quarter of the requests) if missing; install
# DuckDB (pip) and GNU time (apt) if missing; then, with a warm page cache, alternate
# analyze and DuckDB runs RUNS times each and report, side by side, each tool's whole-process
# wall time, CPU time (user + system) and peak RSS (DuckDB's process is Python: start-up,
# `import duckdb`, connecting and the query), the ratios analyze/DuckDB, DuckDB's query time
# alone for reference, and analyze's peak RSS on 250k vs 1M events.
#
# Environment:
#   RUNS=3              runs of each measurement (the median is reported)
#   BENCH_OUT=bench-out where the generated evidence lives (git-ignored)
#   TOKENTRAIL=...      binary to measure (default target/release/tokentrail, built here)
#   SKIP_BUILD=1        do not run cargo build (for measuring a given binary)
#   INVENTORY=0         analyze the audit log alone (see docs/benchmarks.md for why the
#                       default also passes the kubectl dumps)
#   COMPARE=...         another tokentrail binary (an earlier build) measured in the same
#                       rounds on the 1M log; its findings must be byte-identical to TOKENTRAIL's
#
# Results go to stdout and to $BENCH_OUT/results.md; analyze's findings of the last run to
# $BENCH_OUT/findings.json (so the planted replays can be checked against
# $BENCH_OUT/audit.log.planted.txt).
set -euo pipefail

cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
OUT=${BENCH_OUT:-bench-out}
TOKENTRAIL=${TOKENTRAIL:-target/release/tokentrail}
LOG=$OUT/audit.log
SMALL=$OUT/audit-250k.log
TIMES=$(mktemp)
trap 'rm -f "$TIMES"' EXIT

say() { printf '\n== %s\n' "$*" >&2; }

# --- prerequisites --------------------------------------------------------------------------

if [[ -z ${SKIP_BUILD:-} ]]; then
    say "building tokentrail (release)"
    cargo build --release -p tokentrail >&2
fi
[[ -x $TOKENTRAIL ]] || { echo "no tokentrail binary at $TOKENTRAIL" >&2; exit 1; }

if [[ ! -x /usr/bin/time ]]; then
    say "installing GNU time (for peak RSS)"
    apt-get install -y time >&2 || { apt-get update >&2 && apt-get install -y time >&2; }
fi
if ! python3 -c 'import duckdb' 2>/dev/null; then
    say "installing duckdb"
    python3 -m pip install --quiet duckdb >&2
fi

mkdir -p "$OUT"
if [[ ! -s $LOG ]]; then
    say "generating $LOG"
    python3 bench/generate_audit_log.py --out "$OUT" >&2
fi
if [[ ! -s $SMALL ]]; then
    say "generating $SMALL"
    python3 bench/generate_audit_log.py --out "$OUT" --events 250000 --name audit-250k.log >&2
fi

# The dumps a responder has next to the log. Without them analyze knows no pod address from
# before the log started, so every pre-existing pod's own use would land in "unknown".
INVENTORY_FILES=()
if [[ ${INVENTORY:-1} != 0 ]]; then
    INVENTORY_FILES=("$OUT/nodes.json" "$OUT/pods.json" "$OUT/sa_secrets.json")
fi

# --- measurement helpers --------------------------------------------------------------------
# Each sets T (wall seconds of the whole process), M (peak RSS, KiB) and C (CPU seconds, user +
# system, of the whole process: on a shared machine it moves less with load than wall time
# does); duckdb_once also sets Q, the query's own time as duckdb_query.py measures it. They
# run in this shell, not in a subshell, so `set -e` stops the benchmark if a tool fails instead
# of recording garbage.

analyze_once() {  # LOG [BINARY [FINDINGS]]
    /usr/bin/time -f '%e %M %U %S' -o "$TIMES" \
        "${2:-$TOKENTRAIL}" analyze --format json "$1" "${INVENTORY_FILES[@]}" > "${3:-$OUT/findings.json}"
    read -r T M U S < "$TIMES"
    C=$(awk -v u="$U" -v s="$S" 'BEGIN { print u + s }')
}

duckdb_once() {
    # The whole process, as analyze's: Python's start-up, `import duckdb`, connecting, the
    # query and exiting. duckdb_query.py prints the query's own time too (Q), for reference.
    /usr/bin/time -f '%e %M %U %S' -o "$TIMES" python3 bench/duckdb_query.py "$1" > "$OUT/duckdb.out"
    read -r Q NGROUPS NEVENTS < "$OUT/duckdb.out"
    read -r T M U S < "$TIMES"
    C=$(awk -v u="$U" -v s="$S" 'BEGIN { print u + s }')
}

# median of the arguments (numbers).
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# --- runs -----------------------------------------------------------------------------------

lines=$(wc -l < "$LOG")
small_lines=$(wc -l < "$SMALL")
bytes=$(stat -c %s "$LOG")
say "warming the page cache (both tools then read from memory)"
cat "$LOG" "$SMALL" > /dev/null

a_time=(); a_rss=(); a_cpu=(); b_time=(); b_rss=(); b_cpu=(); d_time=(); d_rss=(); d_cpu=(); d_query=(); s_rss=(); w_ratio=(); c_ratio=()
for run in $(seq "$RUNS"); do
    # Alternating the tools keeps drift in machine load from favouring one of them. The 1M
    # analyze run comes last among analyze runs, so findings.json is its output.
    say "run $run/$RUNS: tokentrail analyze, $small_lines events"
    analyze_once "$SMALL"; s_rss+=("$M")
    say "run $run/$RUNS: duckdb, $lines events"
    duckdb_once "$LOG"; d_time+=("$T"); d_rss+=("$M"); d_cpu+=("$C"); d_query+=("$Q")
    dT=$T; dC=$C
    say "run $run/$RUNS: tokentrail analyze, $lines events"
    analyze_once "$LOG"; a_time+=("$T"); a_rss+=("$M"); a_cpu+=("$C")
    # The ratios of this round's neighbouring runs: their spread shows the machine's noise.
    w_ratio+=("$(awk -v a="$T" -v d="$dT" 'BEGIN { printf "%.2f", a / d }')")
    c_ratio+=("$(awk -v a="$C" -v d="$dC" 'BEGIN { printf "%.2f", a / d }')")
    if [[ -n ${COMPARE:-} ]]; then
        say "run $run/$RUNS: $COMPARE analyze, $lines events"
        analyze_once "$LOG" "$COMPARE" "$OUT/findings.compare.json"; b_time+=("$T"); b_rss+=("$M"); b_cpu+=("$C")
        cmp -s "$OUT/findings.json" "$OUT/findings.compare.json" \
            || { echo "findings of $COMPARE differ from those of $TOKENTRAIL" >&2; exit 1; }
    fi
done

at=$(median "${a_time[@]}"); am=$(median "${a_rss[@]}")
dt=$(median "${d_time[@]}"); dm=$(median "${d_rss[@]}")
ac=$(median "${a_cpu[@]}"); dc=$(median "${d_cpu[@]}")
dq=$(median "${d_query[@]}")
sm=$(median "${s_rss[@]}")
rules=$(python3 -c '
import collections, json, sys
c = collections.Counter(json.loads(l)["rule"] for l in open(sys.argv[1]) if l.strip())
print(", ".join(f"{r} {n}" for r, n in sorted(c.items())) or "none")' "$OUT/findings.json")

{
    echo "## Results"
    echo
    echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/ {print $2}') GiB RAM"
    echo "- input: $LOG, $lines events, $(awk -v b="$bytes" 'BEGIN { printf "%.2f GB", b / 1e9 }'); analyze also reads: ${INVENTORY_FILES[*]:-nothing else}"
    echo "- $("$TOKENTRAIL" --version), DuckDB $(python3 -c 'import duckdb; print(duckdb.__version__)') ($NGROUPS groups, $NEVENTS events counted)"
    echo "- $RUNS runs each, alternating, warm page cache; medians"
    echo
    echo "Whole processes, side by side:"
    echo
    echo "| | wall (s) | CPU (s) | peak RSS (MiB) | wall, all runs (s) | CPU, all runs (s) |"
    echo "|---|---|---|---|---|---|"
    echo "| \`tokentrail analyze --format json\` (every rule) | $at | $ac | $((am / 1024)) | ${a_time[*]} | ${a_cpu[*]} |"
    echo "| DuckDB \`GROUP BY user, sourceIPs[-1]\` (python3: start-up, import, query) | $dt | $dc | $((dm / 1024)) | ${d_time[*]} | ${d_cpu[*]} |"
    if [[ -n ${COMPARE:-} ]]; then
        echo "| \`$COMPARE\` (findings byte-identical) | $(median "${b_time[@]}") | $(median "${b_cpu[@]}") | $(($(median "${b_rss[@]}") / 1024)) | ${b_time[*]} | ${b_cpu[*]} |"
    fi
    echo
    echo "analyze / DuckDB, whole processes: wall **$(awk -v a="$at" -v d="$dt" 'BEGIN { printf "%.2f", a / d }')** (per round: ${w_ratio[*]}); CPU $(awk -v a="$ac" -v d="$dc" 'BEGIN { printf "%.2f", a / d }') (per round: ${c_ratio[*]})"
    echo
    echo "DuckDB's query alone (inside the process, after import and connect): $dq s median (${d_query[*]}); analyze / query alone: $(awk -v a="$at" -v d="$dq" 'BEGIN { printf "%.2f", a / d }')"
    echo
    echo "| analyze peak RSS | events | MiB |"
    echo "|---|---|---|"
    echo "| $SMALL | $small_lines | $((sm / 1024)) |"
    echo "| $LOG | $lines | $((am / 1024)) |"
    echo
    echo "Findings of the $lines-event run: $rules (planted: $OUT/audit.log.planted.txt)"
} | tee "$OUT/results.md"
