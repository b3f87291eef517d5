#!/usr/bin/env bash
# The full test suite: fetches the default model if the cache lacks it, prepares a Python venv
# with the official OpenAI, Anthropic and Google Gen AI SDKs for the SDK tests, installs Claude Code
# (npm) for the coding-agent test and Debian's redis-server and postgresql for the several-node
# tests, then runs every Rust test.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo run --quiet -p switchboard -- pull

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import openai, anthropic, google.genai" 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "openai>=1.40,<3" "anthropic>=0.40,<1" "google-genai>=1.0,<2"
fi
export SWITCHBOARD_TEST_PYTHON="$PWD/.venv/bin/python"

# A real Anthropic-speaking coding agent for the Messages surface (its 1.x line is plain JavaScript).
CLAUDE_CODE=.tools/claude-code/node_modules/@anthropic-ai/claude-code/cli.js
if [ ! -f "$CLAUDE_CODE" ]; then
  npm install --silent --no-audit --no-fund --prefix .tools/claude-code @anthropic-ai/claude-code@1.0.128
fi
export SWITCHBOARD_TEST_CLAUDE_CODE="$PWD/$CLAUDE_CODE"

# Redis and Postgres for the several-node tests (each test starts its own servers on loopback
# with throwaway data directories): Debian's packages, when missing.
apt_install() {
  command -v apt-get >/dev/null 2>&1 || return 1
  local sudo=""
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo=sudo; fi
  $sudo apt-get install -y -q "$@" >/dev/null 2>&1 \
    || { $sudo apt-get update -q >/dev/null 2>&1 && $sudo apt-get install -y -q "$@" >/dev/null 2>&1; }
}
if ! command -v redis-server >/dev/null 2>&1; then
  apt_install redis-server || echo "could not install redis-server; the several-node tests will say so" >&2
fi
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  apt_install postgresql || echo "could not install postgresql; the several-node tests will say so" >&2
fi
# Debian's package starts a cluster of its own on port 5432; the tests do not use it.

cargo test --workspace "$@"
