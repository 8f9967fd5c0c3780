#!/usr/bin/env bash
# A local cluster in one command (README "Running several replicas"; `make cluster` runs it):
# Redis, REPLICAS kvault replicas and HAProxy (deploy/haproxy.cfg) on 127.0.0.1, each with its
# own folder under CLUSTER_DIR. Waits until all are healthy, prints the router's URL, and stops
# them all on Ctrl-C or SIGTERM. A replica that dies meanwhile (try `kill -9`) is reported and
# left down: HAProxy's health check moves its conversations to the others.
#
# Environment:
#   PORT         the router's port                                   default 8200
#   REPLICAS     kvault replicas, 1 to 8, on PORT+1 .. PORT+REPLICAS  default 3
#   MODEL        the GGUF model every replica serves      default models/default.gguf, made
#                (once) by `kvault make-model --preset $PRESET` (PRESET default q05), as `make serve`
#   REDIS_PORT   Redis's port                                         default PORT+100
#   STATS_PORT   HAProxy's stats page (/stats)                        default PORT+99
#   CLUSTER_DIR  the folders (replica-N/{data,cache}, redis/, logs)  default build/cluster
#   ARGS         extra `kvault serve` flags for every replica, e.g. ARGS="--window 8192"
#   KVAULT_BIN   the kvault binary                                    default build/kvault
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

PORT=${PORT:-8200}
REPLICAS=${REPLICAS:-3}
PRESET=${PRESET:-q05}
MODEL=${MODEL:-${KVAULT_MODEL:-models/default.gguf}}
REDIS_PORT=${REDIS_PORT:-$((PORT + 100))}
STATS_PORT=${STATS_PORT:-$((PORT + 99))}
CLUSTER_DIR=${CLUSTER_DIR:-build/cluster}
KVAULT_BIN=${KVAULT_BIN:-build/kvault}
read -r -a extra_args <<<"${ARGS:-}"

log() { printf 'cluster: %s\n' "$*" >&2; }
die() { printf 'cluster: error: %s\n' "$*" >&2; exit 1; }

[[ "$REPLICAS" =~ ^[1-8]$ ]] || die "REPLICAS must be 1 to 8 (deploy/haproxy.cfg lists 8), not '$REPLICAS'"

# ---------------------------------------------------------------------------------------------
# 1. What it runs: redis-server and haproxy (Debian packages, as scripts/bootstrap.sh installs
#    them), kvault, a model.
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${missing[@]}"
fi
# Debian's packages start their own services; this cluster runs private ones, on its own ports.
[[ -x "$KVAULT_BIN" ]] || make -C "$repo" build
if [[ ! -f "$MODEL" ]]; then
  [[ "$MODEL" == models/default.gguf ]] || die "MODEL=$MODEL does not exist"
  mkdir -p models
  "$KVAULT_BIN" make-model --preset "$PRESET" -o "$MODEL"
fi

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$PORT" "$STATS_PORT" "$REDIS_PORT" $(seq $((PORT + 1)) $((PORT + REPLICAS))); do
  port_taken "$p" && die "port $p on 127.0.0.1 is in use (set PORT, REDIS_PORT or STATS_PORT)"
done

# ---------------------------------------------------------------------------------------------
# 2. Start everything; the trap stops whatever was started, however the script ends.
mkdir -p "$CLUSTER_DIR"
dir=$(cd "$CLUSTER_DIR" && pwd)
names=() pids=()
# stop_all STATUS: stops every process started, then exits with STATUS.
stop_all() {
  local status=$1
  trap - EXIT INT TERM
  ((${#pids[@]})) || exit "$status"
  log "stopping ${names[*]}"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 100); do  # up to 10 s to finish their turns and close their files
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  kill -KILL "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  log "stopped"
  exit "$status"
}
trap 'stop_all $?' EXIT
trap 'stop_all 0' INT TERM

# start NAME LOG COMMAND...: runs COMMAND in the background, its output in LOG.
start() {
  local name=$1 logfile=$2
  shift 2
  "$@" >"$logfile" 2>&1 &
  names+=("$name")
  pids+=($!)
}

mkdir -p "$dir/redis"
start redis "$dir/redis.log" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
  --dir "$dir/redis" --save '' --appendonly no --daemonize no

# --remote-url: the Redis tier (issue 12), passed once this kvault has the flag.
remote_args=()
if "$KVAULT_BIN" serve --help 2>/dev/null | grep -q -- --remote-url; then
  remote_args=(--remote-url "redis://127.0.0.1:$REDIS_PORT")
else
  log "this kvault has no --remote-url: replicas share nothing through Redis yet"
fi
router_env=(KVAULT_ROUTER_HOST=127.0.0.1 KVAULT_ROUTER_PORT="$PORT"
            KVAULT_ROUTER_STATS_PORT="$STATS_PORT")
for i in $(seq "$REPLICAS"); do
  port=$((PORT + i))
  mkdir -p "$dir/replica-$i"
  start "replica-$i" "$dir/replica-$i.log" "$KVAULT_BIN" serve --model "$MODEL" \
    --host 127.0.0.1 --port "$port" --data-dir "$dir/replica-$i/data" \
    --cache-dir "$dir/replica-$i/cache" "${remote_args[@]}" "${extra_args[@]}"
  router_env+=("KVAULT_REPLICA_$i=127.0.0.1:$port")
done

env "${router_env[@]}" haproxy -c -q -f deploy/haproxy.cfg || die "deploy/haproxy.cfg is invalid"
start haproxy "$dir/haproxy.log" env "${router_env[@]}" haproxy -db -f deploy/haproxy.cfg

# ---------------------------------------------------------------------------------------------
# 3. Wait until all are healthy: Redis answers PING, each replica's /health says 200, and the
#    router's stats show every replica UP.
http_ok() {
  python3 - "$1" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}
redis_ok() {
  (
    exec 4<>"/dev/tcp/127.0.0.1/$REDIS_PORT"
    printf 'PING\r\n' >&4
    read -r -t 2 reply <&4
    [[ "$reply" == +PONG* ]]
  ) 2>/dev/null
}
replicas_up_in_router() {
  local csv
  csv=$(python3 -c "import urllib.request; print(urllib.request.urlopen(
    'http://127.0.0.1:$STATS_PORT/stats;csv', timeout=2).read().decode())" 2>/dev/null) || return 1
  [[ $(grep -c '^kvault_replicas,r[0-9]*,.*,UP,' <<<"$csv") -eq $REPLICAS ]]
}
check_alive() {
  for k in "${!pids[@]}"; do
    kill -0 "${pids[$k]}" 2>/dev/null && continue
    log "${names[$k]} exited during start-up; the end of its log:"
    tail -n 20 "$dir/${names[$k]}.log" >&2
    exit 1
  done
}

deadline=$((SECONDS + 300))  # q05 loads in seconds; a real model from a cold disk may not
wait_for() {
  local what=$1
  shift
  until "$@"; do
    check_alive
    ((SECONDS < deadline)) || die "timed out waiting for $what (logs in $dir)"
    sleep 0.2
  done
}
wait_for redis redis_ok
for i in $(seq "$REPLICAS"); do
  wait_for "replica-$i" http_ok "http://127.0.0.1:$((PORT + i))/health"
done
wait_for "the router's health checks" replicas_up_in_router

cat <<EOF

kvault cluster ready: http://127.0.0.1:$PORT/v1 (the router; OpenAI base URL)
  replicas  $(for i in $(seq "$REPLICAS"); do printf 'http://127.0.0.1:%d ' $((PORT + i)); done)
  redis     redis://127.0.0.1:$REDIS_PORT
  stats     http://127.0.0.1:$STATS_PORT/stats
  folders and logs in $dir
One conversation stays on one replica: send its id as X-Conversation-Id (or conversation_id).
Ctrl-C stops them all.

EOF

# ---------------------------------------------------------------------------------------------
# 4. Run until stopped; report (once) whatever dies meanwhile.
reported=()
while true; do
  for k in "${!pids[@]}"; do
    if [[ -z "${reported[$k]:-}" ]] && ! kill -0 "${pids[$k]}" 2>/dev/null; then
      log "${names[$k]} exited (log: $dir/${names[$k]}.log)"
      reported[k]=1
    fi
  done
  sleep 1 &
  wait $! || true
done
