#!/usr/bin/env bash
# The replicated service on one machine, everything on loopback:
#   PostgreSQL (answers, feedback, question log) and Redis (rate limits) from Debian's packages,
#   a Chroma server ('chroma run', from the chromadb package) holding the index's published builds,
#   two replicas of the server sharing them, each loading the live build from Chroma,
#   and a sticky reverse proxy in front (scripts/proxy.py) at http://127.0.0.1:${CLUSTER_PORT:-8080}/.
# Stops everything on Ctrl-C. docs/deploy.md maps each piece to a real deployment.
#   scripts/cluster.sh                    two replicas
#   CLUSTER_REPLICAS=3 scripts/cluster.sh
#   CLUSTER_INDEX=files scripts/cluster.sh    no Chroma server: the replicas read the build in the index folder
# While it runs, publish a new build and watch the replicas switch to it (within ASSISTANT_CHROMA_POLL_SECONDS):
#   ASSISTANT_CHROMA_URL=<printed below> .venv/bin/assistant index --force
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
scripts/setup.sh --services
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ANONYMIZED_TELEMETRY=False GRADIO_ANALYTICS_ENABLED=False

replicas="${CLUSTER_REPLICAS:-2}"
proxy_port="${CLUSTER_PORT:-8080}"
work="$(mktemp -d /tmp/assistant-cluster-XXXXXX)"
free_port() { .venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pg_port="$(free_port)"
redis_port="$(free_port)"
chroma_port="$(free_port)"
index_mode="${CLUSTER_INDEX:-chroma}"
builder_index="${ASSISTANT_INDEX_DIR:-$root/index}"
if [[ "$index_mode" != chroma && "$index_mode" != files ]]; then
  echo "cluster: CLUSTER_INDEX must be 'chroma' or 'files', not '$index_mode'" >&2
  exit 2
fi
pg_bin="$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")"
as_pg=()
if [[ "$(id -u)" == 0 ]]; then
  pg_user=postgres
  id -u postgres >/dev/null 2>&1 || pg_user=nobody
  as_pg=(runuser -u "$pg_user" --)
  chown "$pg_user" "$work"
fi
pids=()
cleanup() {
  echo "cluster: stopping"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg" -m fast -w -t 30 stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

wait_for() {  # wait_for URL SECONDS WHAT
  local deadline=$((SECONDS + $2))
  until curl -fsS -o /dev/null "$1" 2>/dev/null; do
    if ((SECONDS > deadline)); then echo "cluster: $3 did not come up within $2 s (logs in $work)" >&2; exit 1; fi
    sleep 0.5
  done
}

echo "cluster: PostgreSQL on 127.0.0.1:$pg_port"
"${as_pg[@]}" "$pg_bin/initdb" -D "$work/pg" -U assistant --auth=trust -E UTF8 >"$work/initdb.log"
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/postgres.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $work" start >/dev/null
echo "cluster: Redis on 127.0.0.1:$redis_port"
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no --logfile "$work/redis.log" &
pids+=($!)

if [[ "$index_mode" == chroma ]]; then
  echo "cluster: Chroma on 127.0.0.1:$chroma_port"
  .venv/bin/chroma run --host 127.0.0.1 --port "$chroma_port" --path "$work/chroma" >"$work/chroma.log" 2>&1 &
  pids+=($!)
  wait_for "http://127.0.0.1:$chroma_port/api/v2/heartbeat" 60 "Chroma"
  export ASSISTANT_CHROMA_URL="http://127.0.0.1:$chroma_port"
fi

export ASSISTANT_DATABASE_URL="postgresql+psycopg://assistant@127.0.0.1:$pg_port/postgres"
export ASSISTANT_REDIS_URL="redis://127.0.0.1:$redis_port/0"
export ASSISTANT_TRUSTED_PROXIES='["127.0.0.1"]'
export ASSISTANT_DATA_DIR="$work/data"

echo "cluster: preparing the index once (built and fitted only when missing or stale${ASSISTANT_CHROMA_URL:+, then published to Chroma})"
ASSISTANT_INDEX_DIR="$builder_index" .venv/bin/assistant index >"$work/index.log"

upstreams=()
for n in $(seq 1 "$replicas"); do
  port="$(free_port)"
  replica_index="$builder_index"
  if [[ "$index_mode" == chroma ]]; then
    # A folder of its own: the replica reads the build from Chroma, not from the builder's disk. Only the
    # embedding model's exported ONNX graph is shared (a real replica's image ships it).
    replica_index="$work/replica-$n/index"
    mkdir -p "$replica_index"
    ln -s "$builder_index/models" "$replica_index/models"
  fi
  ASSISTANT_INDEX_DIR="$replica_index" ASSISTANT_PORT="$port" .venv/bin/assistant serve >"$work/replica-$n.log" 2>&1 &
  pids+=($!)
  upstreams+=(--upstream "http://127.0.0.1:$port")
  echo "cluster: replica $n on 127.0.0.1:$port"
done
for n in $(seq 1 "$replicas"); do
  port="${upstreams[$((2 * n - 1))]##*:}"
  wait_for "http://127.0.0.1:$port/api/health" 300 "replica $n"
done
.venv/bin/python "$root/scripts/proxy.py" --port "$proxy_port" "${upstreams[@]}" &
pids+=($!)
wait_for "http://127.0.0.1:$proxy_port/api/health" 30 "the proxy"
echo "cluster: ready at http://127.0.0.1:$proxy_port/ (chat), /api/ask, /widget.js; logs in $work; Ctrl-C stops it"
if [[ "$index_mode" == chroma ]]; then
  echo "cluster: index served from Chroma at $ASSISTANT_CHROMA_URL; publish a new build with"
  echo "  ASSISTANT_CHROMA_URL=$ASSISTANT_CHROMA_URL .venv/bin/assistant index --force"
fi
wait
