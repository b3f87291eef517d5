#!/usr/bin/env bash
# Builds the peer for bench/compare.py: llama.cpp's own `llama-server` (continuous batching),
# from the llama.cpp sources vendored in the pinned llama-cpp-python sdist (ggml 0.25.3, the
# build that produced shared/fixtures/smollm2-golden.json), compiled for this machine into
# bench/.peer (git-ignored). cmake and ninja come from PyPI. ~15 minutes on 2 cores; run by
# hand, never in CI.
set -euo pipefail
cd "$(dirname "$0")"
PEER_VERSION="0.3.36"
SERVER=.peer/llama-server
if [ -x "$SERVER" ]; then
  echo "peer ready: $SERVER"; exit 0
fi
if [ ! -x .peer/bin/python ]; then
  python3 -m venv .peer
fi
.peer/bin/pip install --quiet --disable-pip-version-check cmake ninja
mkdir -p .peer/src
if [ ! -d .peer/src/llama_cpp_python-$PEER_VERSION ]; then
  .peer/bin/pip download --quiet --disable-pip-version-check --no-deps --no-binary llama-cpp-python \
    -d .peer/src "llama-cpp-python==$PEER_VERSION"
  tar -xzf .peer/src/llama_cpp_python-$PEER_VERSION.tar.gz -C .peer/src
fi
cd .peer/src/llama_cpp_python-$PEER_VERSION/vendor/llama.cpp
PATH="$(cd ../../../../bin && pwd):$PATH"
cmake -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF >/dev/null
cmake --build build --target llama-server -j "${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
cp build/bin/llama-server ../../../../llama-server
cd ../../../..
echo "peer ready: bench/$SERVER"
