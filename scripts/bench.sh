#!/usr/bin/env bash
# KV3D's benchmark driver in kvault's words: `kvault bench prefix` (shared-prefix traffic
# against kvault and llama-server: hit rate, requests/s, TTFT), sized by the environment.
#
#   REQUESTS=1000 SHARED_RATIO=0.8 ./scripts/bench.sh      1000 requests, 80% sharing a prefix
#   ./scripts/bench.sh --concurrency 8 --json              more `bench prefix` flags pass through
#
# Environment (defaults in brackets):
#   REQUESTS      requests sent [1000]            -> --requests
#   SHARED_RATIO  fraction with a shared prefix [0.8] -> --shared-ratio
#   MODEL         GGUF model [models/q05.gguf, generated with `kvault make-model` if missing]
#   KVAULT_BIN    the kvault binary [build/kvault]
# llama-server comes from `make llama-tools` (bench prefix says so when it is missing).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kvault=${KVAULT_BIN:-$repo/build/kvault}
requests=${REQUESTS:-1000}
shared_ratio=${SHARED_RATIO:-0.8}
model=${MODEL:-$repo/models/q05.gguf}

die() { printf 'bench: error: %s\n' "$*" >&2; exit 2; }
[[ -x "$kvault" ]] || die "no kvault binary at $kvault: run 'make build' first"
[[ "$requests" =~ ^[0-9]+$ ]] || die "REQUESTS=$requests is not a whole number"
[[ "$shared_ratio" =~ ^(0(\.[0-9]+)?|1(\.0+)?|\.[0-9]+)$ ]] ||
  die "SHARED_RATIO=$shared_ratio is not a fraction between 0 and 1"
if [[ ! -f "$model" ]]; then
  [[ -z "${MODEL:-}" ]] || die "MODEL=$model: no such file"
  mkdir -p "$(dirname "$model")"
  "$kvault" make-model --preset q05 -o "$model" >&2
fi
exec "$kvault" bench prefix --model "$model" --requests "$requests" \
  --shared-ratio "$shared_ratio" "$@"
