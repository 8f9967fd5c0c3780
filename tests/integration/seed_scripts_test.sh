#!/usr/bin/env bash
# KV3D's scripts as its users run them (../shared/seeds, issue 15 item 9), with kvault's binary
# and the test model: scripts/install.sh into a temporary prefix (the installed binary starts
# from the installed config, and /health names the service and version), and scripts/bench.sh
# turning REQUESTS and SHARED_RATIO into `kvault bench prefix` flags (for real too when
# llama-server is built: `make llama-tools`). Run from the repository root.
set -uo pipefail

kvault=$(realpath "${KVAULT_BIN:-build/kvault}")
model=$(realpath "${KVAULT_TEST_MODEL:-build/testdata/tiny.gguf}")
repo=$(pwd)
tmp=$(mktemp -d /tmp/kvault_seed_scripts_XXXXXX)
server_pid=""
cleanup() {
  [[ -z "$server_pid" ]] || kill "$server_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
failures=0
check() {  # check "what" command...: one line per check, the test fails if any does
  if "${@:2}"; then echo "ok    $1"; else echo "FAIL  $1"; failures=$((failures + 1)); fi
}

# --- scripts/install.sh ---------------------------------------------------------------------
prefix=$tmp/prefix
KVAULT_BIN=$kvault MODEL=$model scripts/install.sh --prefix "$prefix" 2>"$tmp/install.log"
check "install exits 0" test $? -eq 0
check "binary installed" test -x "$prefix/bin/kvault"
check "installed binary is the built one" cmp -s "$kvault" "$prefix/bin/kvault"
config=$prefix/etc/kvault/config.json
check "config is JSON naming the model" \
  python3 -c "import json,sys; c=json.load(open(sys.argv[1])); assert c['model']==sys.argv[2]" \
  "$config" "$model"
echo '{"port": 1}' >"$config.mine" && cp "$config.mine" "$config"
KVAULT_BIN=$kvault MODEL=$model scripts/install.sh --prefix "$prefix" 2>>"$tmp/install.log"
check "a second install keeps the user's config" cmp -s "$config" "$config.mine"
check "and puts the new default beside it" test -f "$config.new"
mv "$config.new" "$config"
KVAULT_BIN=$tmp/none scripts/install.sh --prefix "$tmp/other" 2>"$tmp/missing.log"
check "no binary: exit 1 with one line" test $? -eq 1 -a "$(wc -l <"$tmp/missing.log")" -eq 1

# The installed binary, with no user config and no --model, runs the model the installed config
# names (from a folder with no models/ of its own).
mkdir -p "$tmp/home" "$tmp/cwd"
(cd "$tmp/cwd" && exec env -u XDG_CONFIG_HOME HOME="$tmp/home" "$prefix/bin/kvault" serve \
  --port 0 --cache-dir "$tmp/blocks" --data-dir "$tmp/data" 2>"$tmp/serve.log") &
server_pid=$!
port=""
for _ in $(seq 300); do
  port=$(grep -oE 'serving .* on http://[0-9.]+:[0-9]+' "$tmp/serve.log" | grep -oE '[0-9]+$')
  [[ -n "$port" ]] && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
check "installed kvault serves from the installed config" test -n "$port"
if [[ -n "$port" ]]; then
  curl -sf "http://127.0.0.1:$port/health" >"$tmp/health.json"
  version=$("$kvault" --version | head -1 | cut -d' ' -f2)
  check "/health has service kvault and version $version" python3 -c \
    "import json,sys; h=json.load(open(sys.argv[1])); assert (h['service'], h['version']) == ('kvault', sys.argv[2]), h" \
    "$tmp/health.json" "$version"
else
  sed 's/^/  serve: /' "$tmp/serve.log" | tail -5
fi
kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
server_pid=""

# --- scripts/bench.sh -----------------------------------------------------------------------
# A stand-in kvault records the command bench.sh runs.
fake=$tmp/fake-kvault
printf '#!/bin/sh\nprintf "%%s\\n" "$*" >"%s"\n' "$tmp/bench-args" >"$fake"
chmod +x "$fake"
REQUESTS=7 SHARED_RATIO=0.25 MODEL=$model KVAULT_BIN=$fake scripts/bench.sh --concurrency 2
check "bench.sh runs bench prefix with REQUESTS and SHARED_RATIO" test \
  "$(cat "$tmp/bench-args")" = \
  "bench prefix --model $model --requests 7 --shared-ratio 0.25 --concurrency 2"
REQUESTS=many MODEL=$model KVAULT_BIN=$fake scripts/bench.sh 2>"$tmp/bad.log"
check "REQUESTS=many: exit 2 naming it" test $? -eq 2 -a -n "$(grep -o 'REQUESTS=many' "$tmp/bad.log")"
SHARED_RATIO=1.5 MODEL=$model KVAULT_BIN=$fake scripts/bench.sh 2>"$tmp/bad.log"
check "SHARED_RATIO=1.5: exit 2 naming it" test $? -eq 2 -a -n "$(grep -o 'SHARED_RATIO=1.5' "$tmp/bad.log")"

bin_dir=$(sed -n 's/^KVAULT_LLAMA_BIN_DIR=//p' "$repo/build/llama.env" 2>/dev/null)
if [[ -x "$bin_dir/llama-server" ]]; then
  REQUESTS=6 SHARED_RATIO=0.5 MODEL=$model KVAULT_BIN=$kvault scripts/bench.sh \
    --prefix-tokens 64 --max-tokens 2 --concurrency 1 --json >"$tmp/bench.json" 2>"$tmp/bench.log"
  check "bench.sh for real: 6 requests reported, some prompt tokens cached" python3 -c \
    "import json,sys; r=json.load(open(sys.argv[1])); assert r['requests']==6 and r['results']['kvault']['cached_tokens']>0, r" \
    "$tmp/bench.json"
else
  echo "skip  bench.sh for real: no llama-server in '$bin_dir' (make llama-tools)"
fi

echo "$failures failure(s)"
((failures == 0))
