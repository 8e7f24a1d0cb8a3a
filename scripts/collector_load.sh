#!/usr/bin/env bash
# Load test of the HTTP collector on loopback with wrk (Debian package `wrk`): sustained
# throughput and latency of POST /v1/events, one event per request and 50-event batches,
# at a light and a saturating number of connections. Writes docs/collector_benchmarks.md.
#
#   scripts/collector_load.sh            # needs Kafka + Redis (segstream services up)
#   SECONDS_EACH=30 CONNECTIONS="8 64" scripts/collector_load.sh
#
# The collector runs with its own topic and key prefix, which are deleted afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
SECONDS_EACH=${SECONDS_EACH:-20}
CONNECTIONS=${CONNECTIONS:-"4 32"}
BATCHES=${BATCHES:-"1 50"}
OUT=${OUT:-docs/collector_benchmarks.md}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }

run_id="bench-collector-$(date +%s)"
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
work=$(mktemp -d)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export SEGSTREAM_TOPIC_PREFIX="$run_id." SEGSTREAM_KEY_PREFIX="$run_id" \
    SEGSTREAM_COLLECTOR__PORT="$port" SEGSTREAM_COLLECTOR__RATE_PER_S=0 \
    SEGSTREAM_COLLECTOR__WRITE_KEYS='{"bench": "bench-key"}'
"$PY" -m streams.cli collector >"$work/collector.log" 2>&1 &
collector=$!
cleanup() {
    kill "$collector" 2>/dev/null && wait "$collector" 2>/dev/null || true
    "$PY" - <<'PYEOF' || true
from kafka.admin import KafkaAdminClient
from streams.settings import Settings
from streams.kafka.topics import all_topics
import redis
s = Settings()
admin = KafkaAdminClient(bootstrap_servers=s.kafka_bootstrap)
existing = set(admin.list_topics())
admin.delete_topics([t for t in all_topics(s) if t in existing])
admin.close()
r = redis.Redis.from_url(s.redis_url)
for k in r.scan_iter(match=f"{s.key_prefix}:*"):
    r.delete(k)
PYEOF
    rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    sleep 0.2
done
curl -fs "http://127.0.0.1:$port/health" >/dev/null || { cat "$work/collector.log"; exit 1; }

: >"$work/results.jsonl"
for batch in $BATCHES; do
    # warm-up: connections, producer batches, the JIT-free parts of the path
    BATCH=$batch WRITE_KEY=bench-key wrk -t1 -c4 -d3s -s scripts/collector_load/post.lua \
        "http://127.0.0.1:$port" >/dev/null
    for c in $CONNECTIONS; do
        echo "batch $batch, $c connections, ${SECONDS_EACH}s ..." >&2
        line=$(BATCH=$batch WRITE_KEY=bench-key wrk -t1 -c"$c" -d"${SECONDS_EACH}s" \
            -s scripts/collector_load/post.lua "http://127.0.0.1:$port" | tail -1)
        echo "{\"batch\": $batch, \"connections\": $c, \"wrk\": $line}" >>"$work/results.jsonl"
    done
done
kill "$collector"
wait "$collector" || true

"$PY" - "$work/results.jsonl" "$OUT" "$SECONDS_EACH" <<'PYEOF'
import json, os, platform, subprocess, sys, time
from kafka import KafkaConsumer, TopicPartition
from streams.settings import Settings
from streams.kafka.topics import CART

results = [json.loads(l) for l in open(sys.argv[1])]
out, seconds = sys.argv[2], sys.argv[3]
s = Settings()
consumer = KafkaConsumer(bootstrap_servers=s.kafka_bootstrap)
topic = s.topic(CART)
parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
in_kafka = sum(consumer.end_offsets(parts).values())
consumer.close()
sent = 0
rows = []
for r in results:
    w, b = r["wrk"], r["batch"]
    secs = w["duration_us"] / 1e6
    ok = w["requests"] - w["non_2xx"]
    sent += ok * b
    rows.append(
        f"| {'1 event' if b == 1 else f'{b}-event batch'} | {r['connections']} | "
        f"{w['requests'] / secs:,.0f} | {ok * b / secs:,.0f} | {w['p50_us'] / 1000:.1f} | "
        f"{w['p90_us'] / 1000:.1f} | {w['p99_us'] / 1000:.1f} | {w['non_2xx'] + w['socket_errors']} |"
    )
load = os.getloadavg()[0]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0]
doc = f"""# Collector benchmarks

`scripts/collector_load.sh` ({time.strftime('%Y-%m-%d')}): one `segstream collector`
process, wrk ({wrk.split(' [')[0]}) with one thread on loopback, POST `/v1/events` with
`X-Write-Key`, rate limit off, {seconds} s per row after a 3 s warm-up. Each request's
answer comes after Kafka acknowledged its events (`acks=all`, idempotent producer; the
local one-node broker). The events are cart additions of 64 x batch customers.
Machine: {os.cpu_count()} CPU ({cpu}), Python {platform.python_version()}; the collector,
wrk, Kafka and Redis share it (load average {load:.1f} at the end of the run).

| request | connections | requests/s | events/s | p50 ms | p90 ms | p99 ms | errors |
|---|---|---|---|---|---|---|---|
""" + "\n".join(rows) + f"""

Accepted events found in Kafka afterwards: {in_kafka:,} of {sent:,} answered 2xx
(the warm-ups add {in_kafka - sent:,}).

Light load (4 connections) shows the latency of one request: parse, validate, produce and
wait for the broker's acknowledgement. The saturating row is the sustained throughput of
one process; run one collector per core behind a load balancer for more.
"""
open(out, "w").write(doc)
print(doc)
PYEOF
