#!/usr/bin/env bash
# net (net-hello binary) against nginx on the same ~300-byte JSON body
# (benches/http/hello.json), same worker count, driven by wrk with 64
# keep-alive connections, alternating A B A B. Prints req/s per run, the
# median of each side and the median ratio net/nginx with its min-max spread,
# plus each server's CPU time per request (utime+stime of its processes over
# the run / requests), which is far less sensitive to other load on the
# machine than req/s.
#
# Usage: benches/http_vs_nginx.sh            (1 and 2 shards/workers)
# Env:   SHARDS="1 2" ROUNDS=3 DURATION=5 CONNS=64 WRK_THREADS=1
#        CARGO_TARGET_DIR (default ~/.cache/target-net)
# Needs: nginx and wrk (apt-get install nginx wrk). The load generator shares
# the machine's cores with the server under test; both sides get the same
# wrk settings.
set -euo pipefail

SHARDS=${SHARDS:-"1 2"}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
WRK_THREADS=${WRK_THREADS:-1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/target-net}
BODY_FILE="$ROOT/benches/http/hello.json"

command -v nginx >/dev/null || { echo "nginx not found (apt-get install nginx)"; exit 1; }
command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)"; exit 1; }

(cd "$ROOT" && cargo build --release -q -p net --bin net-hello)
NET_BIN="$CARGO_TARGET_DIR/release/net-hello"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do
        [ -n "$p" ] && kill "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_port() {
    for _ in $(seq 1 100); do
        if curl -s -o /dev/null "http://127.0.0.1:$1/"; then return 0; fi
        sleep 0.05
    done
    echo "server on port $1 did not come up"; exit 1
}

start_nginx() { # workers port
    local conf="$WORK/nginx-$1.conf"
    # nginx returns the body from memory, like net-hello: no file I/O on
    # either side. keepalive_requests high so nginx never drops connections
    # mid-run (its default is 1000); reuseport mirrors net's per-shard listeners.
    cat >"$conf" <<NGINX
worker_processes $1;
worker_cpu_affinity auto;
pid $WORK/nginx-$1.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    server_tokens off;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    server {
        listen 127.0.0.1:$2 reuseport;
        location / {
            default_type application/json;
            return 200 '$(cat "$BODY_FILE")';
        }
    }
}
NGINX
    nginx -p "$WORK" -c "$conf" -g 'daemon off;' -e "$WORK/nginx-error.log" &
    PIDS+=($!)
    NGINX_PID=$!
    wait_port "$2"
    NGINX_WORKERS=$(pgrep -P "$NGINX_PID" | tr '\n' ' ')
}

start_net() { # shards port
    "$NET_BIN" --addr "127.0.0.1:$2" --shards "$1" >/dev/null &
    PIDS+=($!)
    NET_PID=$!
    wait_port "$2"
}

run_wrk() { # port duration -> req/s
    wrk -t"$WRK_THREADS" -c"$CONNS" -d"${2}s" "http://127.0.0.1:$1/" | awk '/Requests\/sec/ {print $2}'
}

ticks() { # pids... -> CPU clock ticks used so far (all threads, exited ones too)
    local t=0 p
    for p in "$@"; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done
    echo "$t"
}

# port duration pids... -> "req/s cpu_us_per_request"
measure() {
    local port=$1 dur=$2 t0 t1 out req rps
    shift 2
    t0=$(ticks "$@")
    out=$(wrk -t"$WRK_THREADS" -c"$CONNS" -d"${dur}s" "http://127.0.0.1:$port/")
    t1=$(ticks "$@")
    req=$(echo "$out" | awk '/requests in/ {print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    awk -v r="$rps" -v t=$((t1 - t0)) -v n="$req" -v hz="$(getconf CLK_TCK)" \
        'BEGIN {printf "%s %.2f\n", r, t * 1e6 / hz / n}'
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# Same bytes on both sides?
check_same_body() {
    local a b
    a=$(curl -s "http://127.0.0.1:$1/")
    b=$(curl -s "http://127.0.0.1:$2/")
    [ "$a" = "$b" ] || { echo "bodies differ"; exit 1; }
}

echo "# net vs nginx, $(date -u +%F' '%H:%M' UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD), $(nproc) cores"
echo "# wrk -t$WRK_THREADS -c$CONNS -d${DURATION}s, $ROUNDS rounds A B A B; wrk shares the cores"
for n in $SHARDS; do
    NET_PORT=$(free_port)
    NGINX_PORT=$(free_port)
    start_net "$n" "$NET_PORT"
    start_nginx "$n" "$NGINX_PORT"
    check_same_body "$NET_PORT" "$NGINX_PORT"
    run_wrk "$NET_PORT" 1 >/dev/null
    run_wrk "$NGINX_PORT" 1 >/dev/null
    : >"$WORK/ratios"; : >"$WORK/net"; : >"$WORK/nginx"; : >"$WORK/net_cpu"; : >"$WORK/nginx_cpu"
    for r in $(seq 1 "$ROUNDS"); do
        read -r a a_cpu < <(measure "$NET_PORT" "$DURATION" "$NET_PID")
        # shellcheck disable=SC2086 # the worker list is meant to split
        read -r b b_cpu < <(measure "$NGINX_PORT" "$DURATION" $NGINX_WORKERS)
        echo "$a" >>"$WORK/net"; echo "$b" >>"$WORK/nginx"
        echo "$a_cpu" >>"$WORK/net_cpu"; echo "$b_cpu" >>"$WORK/nginx_cpu"
        ratio=$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.3f", a/b}')
        echo "$ratio" >>"$WORK/ratios"
        printf 'shards=%s round=%s net=%s nginx=%s ratio=%s cpu_us_per_req net=%s nginx=%s\n' \
            "$n" "$r" "$a" "$b" "$ratio" "$a_cpu" "$b_cpu"
    done
    printf 'SUMMARY shards=%s net_median=%s nginx_median=%s ratio_median=%s ratio_min=%s ratio_max=%s cpu_us_per_req_median net=%s nginx=%s\n' \
        "$n" "$(median <"$WORK/net")" "$(median <"$WORK/nginx")" "$(median <"$WORK/ratios")" \
        "$(sort -g "$WORK/ratios" | head -1)" "$(sort -g "$WORK/ratios" | tail -1)" \
        "$(median <"$WORK/net_cpu")" "$(median <"$WORK/nginx_cpu")"
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    PIDS=()
done
