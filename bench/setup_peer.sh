#!/usr/bin/env bash
# Builds the peer for bench/compare.py: llama.cpp's server as packaged by llama-cpp-python,
# pinned, compiled from source for this machine, in bench/.peer (git-ignored). Takes ~10-15
# minutes on 2 cores; run by hand, never in CI.
set -euo pipefail
cd "$(dirname "$0")"
PEER_VERSION="0.3.36"   # ggml 0.25.3: the build that produced shared/fixtures/smollm2-golden.json
if [ ! -x .peer/bin/python ]; then
  python3 -m venv .peer
fi
if ! .peer/bin/python -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$PEER_VERSION')" 2>/dev/null; then
  CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
    .peer/bin/pip install --disable-pip-version-check --no-binary llama-cpp-python \
    "llama-cpp-python[server]==$PEER_VERSION"
fi
.peer/bin/python -c "import llama_cpp; print('peer ready: llama-cpp-python', llama_cpp.__version__)"
