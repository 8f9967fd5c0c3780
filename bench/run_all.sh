#!/usr/bin/env bash
# Runs every benchmark of bench/RESULTS.md with the parameters recorded there, one after the
# other (they must not share the machine), and keeps each report in bench/out/<name>.txt.
#   bench/run_all.sh            all of them (about two hours on a 2-core VM)
#   bench/run_all.sh resume     only those whose names are given
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory build llama-tools >/dev/null
mkdir -p models bench/out
[[ -f models/q05.gguf ]] || build/kvault make-model --preset q05 -o models/q05.gguf
[[ -f models/q05-peaked.gguf ]] || build/kvault make-model --preset q05 --output-scale 8 -o models/q05-peaked.gguf
[[ -f build/testdata/tiny.gguf ]] || build/kvault make-model --preset tiny --output-scale 8 -o build/testdata/tiny.gguf
declare -A commands=(
  [engine]="build/kvault bench engine --model models/q05.gguf -r 8"
  [serve]="build/kvault bench serve --model models/q05.gguf --conversations 1,4,8 --tokens 128"
  [resume]="build/kvault bench resume --model models/q05.gguf --conversations 8 --history 2000 --rounds 3 --conversation-threads 2"
  [prefix]="build/kvault bench prefix --model models/q05.gguf --requests 200 --shared-ratio 0.8"
  [prefix-tiny]="build/kvault bench prefix --model build/testdata/tiny.gguf --requests 1000 --shared-ratio 0.8"
  [footprint]="build/kvault bench footprint --model models/q05.gguf"
  [fidelity]="build/kvault bench fidelity --model models/q05.gguf --prompts 100"
  [fidelity-peaked]="build/kvault bench fidelity --model models/q05-peaked.gguf --prompts 100"
  [memory]="build/kvault bench memory --model build/testdata/tiny.gguf --tokens 10000000"
  [recall]="build/kvault bench recall --model build/testdata/tiny.gguf"
  [reconnect]="build/kvault bench reconnect --model models/q05.gguf --tokens 1000000"
  [recall-turn]="build/kvault bench recall-turn --model models/q05.gguf --tokens 1000000"
  [fidelity-recall-kv]="build/kvault bench fidelity --recall-kv --model models/q05.gguf --prompts 100"
  [fidelity-recall-kv-peaked]="build/kvault bench fidelity --recall-kv --model models/q05-peaked.gguf --prompts 100"
  [topics]="build/kvault bench topics --model models/q05.gguf --cycles 3 --context-tokens 64"
  [cluster]="build/kvault bench cluster --model models/q05.gguf --conversations 4 --history 2000 --rounds 1 --conversation-threads 1"
  [upstream]="build/kvault bench upstream --model models/q05.gguf --requests 200 --long-tokens 1000000"
  [restore-path]="build/bench/restore_path_bench"
)
order=(engine serve resume prefix prefix-tiny topics footprint fidelity fidelity-peaked memory recall reconnect recall-turn fidelity-recall-kv fidelity-recall-kv-peaked cluster upstream restore-path)
(($#)) && order=("$@")
for name in "${order[@]}"; do
  command=${commands[$name]:?unknown benchmark $name}
  echo "== $name: $command" >&2
  { echo "\$ $command"; $command 2>/dev/null; } | tee "bench/out/$name.txt"
done
