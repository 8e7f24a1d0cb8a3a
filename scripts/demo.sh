#!/usr/bin/env bash
# The segstream demo: a worker, simulated shop traffic, and segment changes as they happen.
# Expects Kafka and Redis to answer (`make demo` runs `segstream services up` first).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
DURATION=${DEMO_SECONDS:-60}
CUSTOMERS=${DEMO_CUSTOMERS:-150}
RATE=${DEMO_RATE:-100}
SEED=${DEMO_SEED:-$(( $(date +%s) % 100000 ))}   # new customers on every run
RUN=.segstream/demo
mkdir -p "$RUN"
WORKER_LOG="$RUN/worker.log"

worker_pid=""
cleanup() {
  if [[ -n "$worker_pid" ]] && kill -0 "$worker_pid" 2>/dev/null; then
    kill -TERM "$worker_pid" 2>/dev/null || true
    wait "$worker_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

echo "== segstream demo: $CUSTOMERS customers, $RATE events/s for ${DURATION}s (seed $SEED)"
echo "== afterwards, look a customer up with: $BIN/segstream customer c-$SEED-00001"
"$BIN/segstream" topics >/dev/null
"$BIN/segstream" worker >"$WORKER_LOG" 2>&1 &
worker_pid=$!
for _ in $(seq 1 180); do
  grep -q "\[^Worker\]: Ready" "$WORKER_LOG" 2>/dev/null && break
  if ! kill -0 "$worker_pid" 2>/dev/null; then
    echo "worker exited; last lines of $WORKER_LOG:" >&2; tail -30 "$WORKER_LOG" >&2; exit 1
  fi
  sleep 0.5
done
grep -q "\[^Worker\]: Ready" "$WORKER_LOG" || { echo "worker not ready after 90 s" >&2; tail -30 "$WORKER_LOG" >&2; exit 1; }
echo "== worker ready (log: $WORKER_LOG); segment changes as they happen:"

"$BIN/segstream" watch --duration $(( DURATION + 8 )) 2>/dev/null &
watch_pid=$!
sleep 2
"$BIN/segstream" simulate --customers "$CUSTOMERS" --rate "$RATE" --duration "$DURATION" \
  --seed "$SEED" --quiet >"$RUN/simulate.log" 2>&1
wait "$watch_pid"
