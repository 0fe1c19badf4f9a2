#!/usr/bin/env bash
# The test command: install if needed, then lint (ruff), type check (mypy, strict) and the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# The web UI's browser tests (tests/web) drive Debian's Chromium through Playwright (never
# `playwright install`, which downloads a browser of its own).
if ! command -v chromium >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    { apt-get update -qq && apt-get install -y -qq chromium; } || {
      echo "test.sh: installing chromium failed (exit status above)" >&2
      exit 1
    }
  else
    echo "test.sh: chromium is missing (the web UI tests need it): apt-get install chromium" >&2
    exit 1
  fi
fi
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
.venv/bin/pytest -q -p no:cacheprovider "$@"
