#!/usr/bin/env bash
# The test command: install if needed, then lint (ruff), type check (mypy, strict) and the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# The web UI's browser tests (tests/web) drive Debian's Chromium through Playwright (never
# `playwright install`, which downloads a browser of its own). The diarization tests read real speech from
# klettres-data and pocketsphinx-testdata (scripts/speech_corpus.py); the demo needs none of these.
test_apt=(chromium klettres-data pocketsphinx-testdata)
if ! command -v chromium >/dev/null || [ ! -d /usr/share/klettres/en ] \
  || [ ! -d /usr/share/pocketsphinx/test/data/librivox ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    { apt-get update -qq && apt-get install -y -qq "${test_apt[@]}"; } || {
      echo "test.sh: installing ${test_apt[*]} failed (exit status above)" >&2
      exit 1
    }
  else
    echo "test.sh: the tests need ${test_apt[*]}: apt-get install ${test_apt[*]}" >&2
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
