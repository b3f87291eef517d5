#!/usr/bin/env bash
# The full test suite: fetches the default model if the cache lacks it, prepares a Python venv
# with the official OpenAI, Anthropic and Google Gen AI SDKs for the SDK tests, installs Claude Code
# (npm) for the coding-agent test and Debian's redis-server for the several-node tests, then runs
# every Rust test.
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

# Redis for the several-node tests: Debian's package, when missing.
if ! command -v redis-server >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO=sudo; fi
  $SUDO apt-get install -y -q redis-server >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q redis-server >/dev/null 2>&1; } \
    || echo "could not install redis-server; the several-node tests will say so" >&2
fi

cargo test --workspace "$@"
