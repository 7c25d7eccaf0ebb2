#!/bin/sh
# Runs the five agent benchmarks of issue 3 in a row (about 15 minutes on 2
# cores) and keeps the whole output in benches/agent/last-run.txt.
# Extra arguments are not passed on; run a single script for custom settings.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out="$here/last-run.txt"
: > "$out"
for b in bench_execute bench_lifecycle bench_paging bench_memory bench_isolation; do
    echo "== $b" | tee -a "$out"
    timeout 1200 python3 "$here/$b.py" 2>&1 | tee -a "$out"
    echo | tee -a "$out"
done
