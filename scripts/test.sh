#!/usr/bin/env bash
# make test: every test against one redis-server (unit and integration), and the
# integration suite against a local Redis Cluster, side by side.
#
# The Redis Cluster pass leaves out the tests marked ``same_on_cluster``: what they check
# does not depend on the Redis deployment (they start servers of their own, read Kafka
# only, or stop at parsing before any Redis call), so a second run would repeat the first.
#
# Why side by side: each pass is mostly waiting (for workers, the broker, Redis), about
# 40 % of a core, and both share one broker and one machine without stepping on each
# other: every integration test has a topic prefix, consumer group and key prefix of its
# own, and a pass deletes only topics whose owning process has died. Run one after the
# other they took about 20 min; side by side, about as long as the longer one.
#
# Each process writes its own log (.segstream/test/{single,single-long,cluster,cluster-long}.log); all
# are printed when they end, the pytest summaries last. Exit status: non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
LOGS=.segstream/test
mkdir -p "$LOGS"
CLUSTER_ENV=(SEGSTREAM_REDIS_CLUSTER=1 SEGSTREAM_REDIS_URL=redis://127.0.0.1:7001/0)

"$BIN/segstream" services up || exit 2
env "${CLUSTER_ENV[@]}" "$BIN/segstream" services up || exit 2

# The one-redis-server pass is split in two, run side by side too: the long-running
# integration files (faults, timers, dashboard, event time, pipeline restarts, local
# services: about half of that pass's time) and everything else. Three processes then
# finish at about the same time, instead of one pass running alone at the end.
LONG=(tests/integration/test_faults.py tests/integration/test_timers.py
  tests/integration/test_dashboard.py tests/integration/test_event_time.py
  tests/integration/test_pipeline.py tests/integration/test_services.py)
ignore_long=()
for f in "${LONG[@]}"; do ignore_long+=("--ignore=$f"); done

started=$(date +%s)
"$BIN/python" -m pytest "${ignore_long[@]}" >"$LOGS/single.log" 2>&1 &
single=$!
"$BIN/python" -m pytest -p no:cacheprovider "${LONG[@]}" >"$LOGS/single-long.log" 2>&1 &
single_long=$!
# The Redis Cluster pass is split the same way: its long files (the one-server pass's, and
# the CDNOW replay and the CLI-errors matrix) beside the rest, so it no longer ends last.
CLUSTER_LONG=("${LONG[@]}" tests/integration/test_clv.py tests/integration/test_cli_errors.py)
ignore_cluster_long=()
for f in "${CLUSTER_LONG[@]}"; do ignore_cluster_long+=("--ignore=$f"); done
env "${CLUSTER_ENV[@]}" "$BIN/python" -m pytest -p no:cacheprovider -m "not same_on_cluster" \
  "${ignore_cluster_long[@]}" tests/integration >"$LOGS/cluster.log" 2>&1 &
cluster=$!
env "${CLUSTER_ENV[@]}" "$BIN/python" -m pytest -p no:cacheprovider -m "not same_on_cluster" \
  "${CLUSTER_LONG[@]}" >"$LOGS/cluster-long.log" 2>&1 &
cluster_long=$!
echo "make test: four pytest processes running (logs: $LOGS/single.log, $LOGS/single-long.log, $LOGS/cluster.log, $LOGS/cluster-long.log)"

# A line of progress a minute, so a long run does not look stuck: pytest's percentage.
progress() { grep -o '\[ *[0-9]*%\]' "$1" 2>/dev/null | tail -n 1 | tr -d '[] ' || true; }
# Checked every 2 s (so the time printed at the end is the processes' own), told every minute.
waited=0
while kill -0 "$single" 2>/dev/null || kill -0 "$single_long" 2>/dev/null || kill -0 "$cluster" 2>/dev/null || kill -0 "$cluster_long" 2>/dev/null; do
  sleep 2
  waited=$((waited + 2))
  if (( waited % 60 == 0 )); then
    echo "  $(( waited / 60 )) min: one redis-server $(progress "$LOGS/single.log") and $(progress "$LOGS/single-long.log"), Redis Cluster $(progress "$LOGS/cluster.log") and $(progress "$LOGS/cluster-long.log")"
  fi
done
wait "$single"; single_rc=$?
wait "$single_long"; single_long_rc=$?
wait "$cluster"; cluster_rc=$?
wait "$cluster_long"; cluster_long_rc=$?
elapsed=$(( $(date +%s) - started ))

echo "===== one redis-server: every test but the long-running integration files ====="
cat "$LOGS/single.log"
echo "===== one redis-server: the long-running integration files ====="
cat "$LOGS/single-long.log"
echo "===== Redis Cluster (127.0.0.1:7001-7003): the integration tests but the long ones ====="
cat "$LOGS/cluster.log"
echo "===== Redis Cluster (127.0.0.1:7001-7003): the long-running integration files ====="
cat "$LOGS/cluster-long.log"
echo "===== make test: $(( elapsed / 60 )) min $(( elapsed % 60 )) s ====="
echo "one redis-server:        $(tail -n 1 "$LOGS/single.log") (exit $single_rc)"
echo "one redis-server, long:  $(tail -n 1 "$LOGS/single-long.log") (exit $single_long_rc)"
echo "Redis Cluster:           $(tail -n 1 "$LOGS/cluster.log") (exit $cluster_rc)"
echo "Redis Cluster, long:     $(tail -n 1 "$LOGS/cluster-long.log") (exit $cluster_long_rc)"
# pytest's exit 5 (no tests collected) is a failure too
[[ $single_rc -eq 0 && $single_long_rc -eq 0 && $cluster_rc -eq 0 && $cluster_long_rc -eq 0 ]]
