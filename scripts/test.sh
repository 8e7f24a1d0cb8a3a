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
# Each pass writes its own log (.segstream/test/{single,cluster}.log); both are printed
# when they end, the pytest summaries last. Exit status: non-zero if either failed.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
LOGS=.segstream/test
mkdir -p "$LOGS"
CLUSTER_ENV=(SEGSTREAM_REDIS_CLUSTER=1 SEGSTREAM_REDIS_URL=redis://127.0.0.1:7001/0)

"$BIN/segstream" services up || exit 2
env "${CLUSTER_ENV[@]}" "$BIN/segstream" services up || exit 2

started=$(date +%s)
"$BIN/python" -m pytest >"$LOGS/single.log" 2>&1 &
single=$!
env "${CLUSTER_ENV[@]}" "$BIN/python" -m pytest -p no:cacheprovider -m "not same_on_cluster" tests/integration \
  >"$LOGS/cluster.log" 2>&1 &
cluster=$!
echo "make test: two pytest passes running (logs: $LOGS/single.log, $LOGS/cluster.log)"

# A line of progress a minute, so a long run does not look stuck: pytest's percentage.
progress() { grep -o '\[ *[0-9]*%\]' "$1" 2>/dev/null | tail -n 1 | tr -d '[] ' || true; }
while kill -0 "$single" 2>/dev/null || kill -0 "$cluster" 2>/dev/null; do
  sleep 60
  echo "  $(( ($(date +%s) - started) / 60 )) min: one redis-server $(progress "$LOGS/single.log"), Redis Cluster $(progress "$LOGS/cluster.log")"
done
wait "$single"; single_rc=$?
wait "$cluster"; cluster_rc=$?
elapsed=$(( $(date +%s) - started ))

echo "===== one redis-server: every test ====="
cat "$LOGS/single.log"
echo "===== Redis Cluster (127.0.0.1:7001-7003): the integration tests ====="
cat "$LOGS/cluster.log"
echo "===== make test: $(( elapsed / 60 )) min $(( elapsed % 60 )) s ====="
echo "one redis-server: $(tail -n 1 "$LOGS/single.log") (exit $single_rc)"
echo "Redis Cluster:    $(tail -n 1 "$LOGS/cluster.log") (exit $cluster_rc)"
# pytest's exit 5 (no tests collected) is a failure too
[[ $single_rc -eq 0 && $cluster_rc -eq 0 ]]
