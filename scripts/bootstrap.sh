#!/usr/bin/env bash
# Installs what kvault builds with and obtains and builds llama.cpp once into a cache outside
# the checkout. Idempotent: a second run with everything in place takes about a second.
#
#   scripts/bootstrap.sh            packages + llama.cpp library; writes build/llama.env
#   scripts/bootstrap.sh --tools    also llama.cpp's llama-bench, llama-batched-bench and
#                                   llama-server (same source and flags), for `make bench`
#
# llama.cpp is taken from, in this order:
#   (a) an installed llama that CMake's find_package(llama) finds (KVAULT_LLAMA_SYSTEM=0 skips);
#   (b) the source folder named by KVAULT_LLAMA_DIR;
#   (c) the npm registry: node-llama-cpp (version and sha256 in scripts/llama.lock) ships
#       llama.cpp's source as a git bundle, cloned into third_party/llama.cpp.
# Sources (b) and (c) are built with clang into
#   ${KVAULT_CACHE_DIR:-~/.cache/kvault}/llama-<commit>-<flags hash>/
# keyed by the commit and every flag that changes the binaries (compiler, CPU features, CUDA).
# KVAULT_CUDA=1 builds the CUDA backend (needs nvcc on PATH).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
want_tools=0
[[ "${1:-}" == "--tools" ]] && want_tools=1

log() { printf 'bootstrap: %s\n' "$*" >&2; }
die() { printf 'bootstrap: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# 1. Debian packages. Each is named for what kvault uses it (README "Dependencies").
packages=(
  cmake ninja-build git pkg-config clang libomp-dev libclang-rt-dev clang-format ccache
  libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libsqlite3-dev libzstd-dev libxxhash-dev libcli11-dev
  libhnswlib-dev python3
  chromium  # headless browser of tests/integration/dashboard_browser_test.py
  wordnet-base  # WordNet's data files: the chunk index's query expansion (memory/thesaurus.h)
  libhiredis-dev  # kvault's client of the Redis remote tier (--remote-url)
  redis-server haproxy  # scripts/cluster.sh (make cluster) and the tests of several replicas
  libre2-dev  # linear-time regular expressions: the template normalisation rules (--normalize)
)
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${missing[@]}"
fi

# ---------------------------------------------------------------------------------------------
# 2. llama.cpp source (always needed for its models/ggml-vocab-*.gguf, used by make-model).
# shellcheck source=llama.lock
source "$repo/scripts/llama.lock"
cache_dir=${KVAULT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kvault}
mkdir -p "$cache_dir"

fetch_from_npm() {
  local dest=$1 tarball="$cache_dir/npm/node-llama-cpp-$NODE_LLAMA_CPP_VERSION.tgz"
  mkdir -p "$cache_dir/npm"
  if [[ ! -f "$tarball" ]] || ! echo "$NODE_LLAMA_CPP_SHA256  $tarball" | sha256sum -c --quiet - 2>/dev/null; then
    log "fetching node-llama-cpp@$NODE_LLAMA_CPP_VERSION from the npm registry"
    rm -f "$tarball"
    (cd "$cache_dir/npm" && npm pack --silent "node-llama-cpp@$NODE_LLAMA_CPP_VERSION" >/dev/null)
  fi
  echo "$NODE_LLAMA_CPP_SHA256  $tarball" | sha256sum -c --quiet - ||
    die "sha256 of $tarball does not match scripts/llama.lock; refusing to use it"
  local unpack
  unpack=$(mktemp -d)
  tar -xzf "$tarball" -C "$unpack" package/llama/gitRelease.bundle
  rm -rf "$dest"
  mkdir -p "$(dirname "$dest")"
  git -c advice.detachedHead=false clone --quiet "$unpack/package/llama/gitRelease.bundle" "$dest"
  git -C "$dest" -c advice.detachedHead=false checkout --quiet "$LLAMA_CPP_COMMIT"
  rm -rf "$unpack"
}

if [[ -n "${KVAULT_LLAMA_DIR:-}" ]]; then
  llama_src=$(cd "$KVAULT_LLAMA_DIR" && pwd) || die "KVAULT_LLAMA_DIR=$KVAULT_LLAMA_DIR is not a folder"
  [[ -f "$llama_src/include/llama.h" ]] || die "$llama_src has no include/llama.h"
  commit=$(git -C "$llama_src" rev-parse HEAD 2>/dev/null || echo unknown)
else
  llama_src="$repo/third_party/llama.cpp"
  have=$(git -C "$llama_src" rev-parse HEAD 2>/dev/null || true)
  if [[ "$have" != "$LLAMA_CPP_COMMIT" ]]; then
    fetch_from_npm "$llama_src"
  fi
  commit=$(git -C "$llama_src" rev-parse HEAD)
  [[ "$commit" == "$LLAMA_CPP_COMMIT" ]] || die "bundle holds $commit, lock says $LLAMA_CPP_COMMIT"
fi

# ---------------------------------------------------------------------------------------------
# 3. The library: installed (a), or built once into the cache.
find_installed_llama() {
  [[ "${KVAULT_LLAMA_SYSTEM:-1}" == 1 ]] || return 1
  cmake --find-package -DNAME=llama -DCOMPILER_ID=Clang -DLANGUAGE=CXX -DMODE=EXIST \
    >/dev/null 2>&1
}

flags=(
  -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF
  -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF
)
[[ "${KVAULT_CUDA:-0}" == 1 ]] && flags+=(-DGGML_CUDA=ON)

llama_prefix=""
llama_bin=""
if [[ -z "${KVAULT_LLAMA_DIR:-}" ]] && find_installed_llama; then
  log "using the installed llama (find_package); its tools are taken from PATH"
  commit="installed-$(pkg-config --modversion llama 2>/dev/null || echo unknown)"
  llama_bin=$(dirname "$(command -v llama-bench 2>/dev/null || echo /usr/bin/llama-bench)")
else
  # GGML_NATIVE builds for this CPU, so its feature flags are part of the key.
  cpu_flags=$(grep -m1 -E '^(flags|Features)' /proc/cpuinfo 2>/dev/null || uname -m)
  key_text="${flags[*]} $(clang++ --version | head -1) $cpu_flags"
  key=$(printf '%s' "$key_text" | sha256sum | cut -c1-10)
  build_root="$cache_dir/llama-${commit:0:12}-$key"
  llama_prefix="$build_root/install"
  llama_bin="$build_root/build/bin"
  mkdir -p "$build_root"
  exec 9>"$build_root/.lock"
  flock 9  # two builds at once (make -j, parallel CI jobs) share one cache entry
  jobs=${KVAULT_JOBS:-$(nproc)}
  if [[ ! -f "$llama_prefix/.complete" ]]; then
    log "building llama.cpp ${commit:0:12} into $build_root (once; ~2 min on 2 cores)"
    start=$(date +%s)
    cmake -S "$llama_src" -B "$build_root/build" -G Ninja "${flags[@]}" \
      -DCMAKE_INSTALL_PREFIX="$llama_prefix" \
      -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF \
      >"$build_root/configure.log" 2>&1 || die "configure failed; see $build_root/configure.log"
    cmake --build "$build_root/build" -j "$jobs" >"$build_root/build.log" 2>&1 ||
      die "build failed; see $build_root/build.log"
    cmake --install "$build_root/build" >"$build_root/install.log" 2>&1 ||
      die "install failed; see $build_root/install.log"
    echo "$commit" >"$llama_prefix/.complete"
    log "llama.cpp library built in $(($(date +%s) - start)) s"
  fi
  if ((want_tools)) && [[ ! -f "$build_root/.tools-complete" ]]; then
    log "building llama-bench, llama-batched-bench and llama-server (once)"
    start=$(date +%s)
    # Same build folder and flags: only the tools and their common library are compiled.
    cmake -S "$llama_src" -B "$build_root/build" -G Ninja "${flags[@]}" \
      -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
      >"$build_root/configure-tools.log" 2>&1 || die "configure failed; see $build_root/configure-tools.log"
    cmake --build "$build_root/build" -j "$jobs" \
      --target llama-bench llama-batched-bench llama-server \
      >"$build_root/build-tools.log" 2>&1 || die "tools build failed; see $build_root/build-tools.log"
    touch "$build_root/.tools-complete"
    log "llama.cpp tools built in $(($(date +%s) - start)) s"
  fi
  flock -u 9
fi

# ---------------------------------------------------------------------------------------------
# 4. What CMake needs, as -D definitions (read by the Makefile).
mkdir -p "$repo/build"
cat >"$repo/build/llama.env" <<EOF
KVAULT_LLAMA_PREFIX=$llama_prefix
KVAULT_LLAMA_COMMIT=$commit
KVAULT_LLAMA_SOURCE_DIR=$llama_src
KVAULT_LLAMA_BIN_DIR=$llama_bin
EOF
log "ready: llama.cpp ${commit:0:12}"
