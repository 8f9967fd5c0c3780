#!/usr/bin/env bash
# Installs the built kvault binary and a default config under a prefix (KV3D's installer, in
# kvault's words). Build first (`make build`).
#
#   scripts/install.sh                   into PREFIX=/usr/local
#   PREFIX=~/.local scripts/install.sh   or scripts/install.sh --prefix ~/.local
#   MODEL=models/q05.gguf scripts/install.sh   the config then names that model
#
# What it writes:
#   $PREFIX/bin/kvault                the binary (build/kvault, or the file KVAULT_BIN names);
#                                     llama.cpp is linked in, so nothing else is needed
#   $PREFIX/etc/kvault/config.json    a default config: `kvault serve` reads it when the
#                                     user has no ~/.config/kvault/config.json (that one wins,
#                                     and flags and KVAULT_* variables win over both). An
#                                     existing file is kept; the new one goes beside it as
#                                     config.json.new
# Run it again to upgrade the binary; remove those two paths to uninstall.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prefix=${PREFIX:-/usr/local}
while (($#)); do
  case "$1" in
    --prefix) prefix=${2:?--prefix needs a folder}; shift 2 ;;
    --prefix=*) prefix=${1#--prefix=}; shift ;;
    -h|--help) sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install: error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

die() { printf 'install: error: %s\n' "$*" >&2; exit 1; }

binary=${KVAULT_BIN:-$repo/build/kvault}
[[ -x "$binary" ]] || die "no kvault binary at $binary: run 'make build' first"
"$binary" --version >/dev/null 2>&1 || die "$binary does not run (--version failed)"
model=""
if [[ -n "${MODEL:-}" ]]; then
  [[ -f "$MODEL" ]] || die "MODEL=$MODEL: no such file"
  model=$(cd "$(dirname "$MODEL")" && pwd)/$(basename "$MODEL")
fi

mkdir -p "$prefix/bin" "$prefix/etc/kvault" || die "cannot create folders under $prefix"
# Copied under a temporary name, then renamed: a running kvault keeps its old binary intact.
install -m 0755 "$binary" "$prefix/bin/.kvault.new"
mv -f "$prefix/bin/.kvault.new" "$prefix/bin/kvault"

# Keys are `kvault serve` flags (README "Configuration"); these are the defaults, written out
# so they can be edited in one place.
config='{'
[[ -z "$model" ]] || config+=$'\n'"  \"model\": \"$model\","
config+='
  "host": "127.0.0.1",
  "port": 8200,
  "conversation_threads": 4,
  "conversation_queue": 64,
  "cache_ram_mb": 2048,
  "cache_disk_gb": 20,
  "log_level": "info"
}'
target="$prefix/etc/kvault/config.json"
if [[ -e "$target" ]]; then
  printf '%s\n' "$config" >"$target.new"
  echo "install: kept $target (the new default is $target.new)" >&2
else
  printf '%s\n' "$config" >"$target"
fi
echo "install: $prefix/bin/kvault ($("$prefix/bin/kvault" --version | head -1)), config $target" >&2
