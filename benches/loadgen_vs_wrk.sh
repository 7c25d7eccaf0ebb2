#!/usr/bin/env bash
# loadgen benchmark (issue 4), in one run:
#  1. loadgen vs wrk, each driving nginx serving a fixed small body on
#     loopback, closed loop, same connections and threads, alternating
#     A B A B ... ROUNDS times; prints each round, the median ratio
#     loadgen/wrk and its min-max spread. Goal: ratio >= 0.9.
#  2. capacity reports of the agent for the lifecycle scenario with SELECT 1
#     and with a 10k-row query (JSON + HTML under $OUT).
#
# Both sides share the machine's cores with the server: the figures are
# ratios taken in the same run, not absolute capacities.
#
# Usage: benches/loadgen_vs_wrk.sh            (both parts)
#        PART=wrk benches/loadgen_vs_wrk.sh   (only part 1)
#        PART=capacity benches/loadgen_vs_wrk.sh
# Env: ROUNDS (3), SECONDS_PER_RUN (5), CONNS (50), THREADS (2),
#      STEP (5s), OUT (target dir for reports), COMPUTE_AGENT_BIN,
#      LOADGEN_BIN (default: builds loadgen --release).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SECS=${SECONDS_PER_RUN:-5}
CONNS=${CONNS:-50}
THREADS=${THREADS:-2}
STEP=${STEP:-5s}
PART=${PART:-all}
OUT=${OUT:-$(mktemp -d /tmp/loadgen-bench.XXXXXX)}
mkdir -p "$OUT"

need() { command -v "$1" >/dev/null || { echo "missing $1 (apt-get install -y nginx wrk)" >&2; exit 2; }; }

if [[ -z "${LOADGEN_BIN:-}" ]]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/target-loadgen}
  cargo build --release -p loadgen >&2
  LOADGEN_BIN=$CARGO_TARGET_DIR/release/loadgen
fi

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

echo "# loadgen benchmark $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git rev-parse --short HEAD) on $(nproc) cores"
echo "# reports in $OUT"

if [[ $PART == all || $PART == wrk ]]; then
  need nginx; need wrk
  NGX=$(mktemp -d /tmp/loadgen-nginx.XXXXXX)
  mkdir -p "$NGX/tmp"
  nginx -p "$NGX" -c "$PWD/benches/loadgen/nginx.conf" >"$NGX/log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 50); do curl -fs http://127.0.0.1:18080/health >/dev/null 2>&1 && break; sleep 0.1; done
  kill -0 "${PIDS[-1]}" 2>/dev/null || { echo "nginx did not start (port 18080 busy?): $(cat "$NGX/log")" >&2; exit 2; }
  echo
  echo "## 1. loadgen vs wrk on nginx (closed loop, $CONNS connections, $THREADS threads, ${SECS}s each, $ROUNDS rounds)"
  echo "| round | wrk req/s | loadgen req/s | ratio | wrk CPU us/req | loadgen CPU us/req |"
  echo "|---|---|---|---|---|---|"
  ratios=(); cpus=()
  for r in $(seq "$ROUNDS"); do
    # CPU seconds (user+sys) of each client, from /usr/bin/time: a second,
    # noise-resistant view of client cost (CPU per request).
    w=$(/usr/bin/time -f "%U %S" -o "$OUT/wrk.time" wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" http://127.0.0.1:18080/health \
          | awk '/Requests\/sec/ {print $2}')
    l=$(/usr/bin/time -f "%U %S" -o "$OUT/lg.time" "$LOADGEN_BIN" run --scenario health --url http://127.0.0.1:18080 \
          --connections "$CONNS" --threads "$THREADS" --duration "${SECS}s" --warmup 0s --no-progress --json - \
          | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["throughput"],1))')
    read -r wc lc ratio < <(python3 - "$w" "$l" "$SECS" "$OUT/wrk.time" "$OUT/lg.time" <<'PY'
import sys
w, l, secs = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
cpu = lambda p: sum(map(float, open(p).read().split()[-2:]))
print(round(cpu(sys.argv[4]) / (w * secs) * 1e6, 2), round(cpu(sys.argv[5]) / (l * secs) * 1e6, 2), round(l / w, 3))
PY
)
    ratios+=("$ratio"); cpus+=("$(python3 -c "print($lc/$wc)")")
    echo "| $r | $w | $l | $ratio | $wc | $lc |"
  done
  python3 - "${#ratios[@]}" "${ratios[@]}" "${cpus[@]}" <<'PY'
import statistics, sys
n = int(sys.argv[1]); r = [float(x) for x in sys.argv[2:2 + n]]; c = [float(x) for x in sys.argv[2 + n:]]
print(f"\nmedian req/s ratio loadgen/wrk: {statistics.median(r):.3f} (min {min(r):.3f}, max {max(r):.3f}); goal >= 0.9")
print(f"median CPU-per-request ratio loadgen/wrk: {statistics.median(c):.3f} (min {min(c):.3f}, max {max(c):.3f}); below 1 = loadgen cheaper")
PY
  kill "${PIDS[-1]}" 2>/dev/null || true
fi

if [[ $PART == all || $PART == capacity ]]; then
  AGENT=${COMPUTE_AGENT_BIN:-$HOME/.cache/compute-agent-target/release/compute-agent}
  [[ -x $AGENT ]] || { echo "agent binary not found at $AGENT (set COMPUTE_AGENT_BIN)" >&2; exit 2; }
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  AGENT_TOKEN=bench LISTEN_ADDR=127.0.0.1:$PORT SHARDS=${SHARDS:-2} "$AGENT" 2>"$OUT/agent.log" &
  PIDS+=($!)
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.1; done
  # Warm the agent (first DuckDB use on each shard) before the first step.
  "$LOADGEN_BIN" run --scenario lifecycle --sql "SELECT 1" --url "http://127.0.0.1:$PORT" --token bench \
    --rate 20 --duration 3s --warmup 0s --quiet --no-progress || true
  for q in "select1|SELECT 1" "rows10k|SELECT i, i * 2 AS doubled, 'row-' || i AS label FROM range(10000) t(i)"; do
    name=${q%%|*}; sql=${q#*|}
    echo
    echo "## 2. capacity, lifecycle scenario, $name: $sql"
    "$LOADGEN_BIN" capacity --scenario lifecycle --sql "$sql" --url "http://127.0.0.1:$PORT" --token bench \
      --start-rate "${START_RATE:-50}" --max-rate "${MAX_RATE:-20000}" --factor 2 --precision 0.1 --max-steps "${MAX_STEPS:-12}" \
      --duration "$STEP" --warmup 1s --connections 256 --no-progress \
      --json "$OUT/capacity-$name.json" --html "$OUT/capacity-$name.html" || true
  done
fi
