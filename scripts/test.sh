#!/usr/bin/env bash
# The test command: install if needed, then lint (ruff), type check (mypy, strict) and the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# The web UI's browser tests (tests/web) drive Debian's Chromium through Playwright (never
# `playwright install`, which downloads a browser of its own). The diarization tests read real speech from
# klettres-data and pocketsphinx-testdata (scripts/speech_corpus.py); the live-stream tests serve RTSP with
# GStreamer's RTSP server under the system Python (tests/support/rtsp_server.py); the distributed tests run
# Debian's PostgreSQL server as a local process (tests/support/postgres.py); the demo needs none of these.
test_apt=(chromium klettres-data pocketsphinx-testdata python3-gi gir1.2-gst-rtsp-server-1.0
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
  gstreamer1.0-libav gstreamer1.0-tools postgresql)
if ! command -v chromium >/dev/null || [ ! -d /usr/share/klettres/en ] \
  || [ ! -d /usr/share/pocketsphinx/test/data/librivox ] || ! command -v gst-inspect-1.0 >/dev/null \
  || ! compgen -G "/usr/lib/*/girepository-1.0/GstRtspServer-1.0.typelib" >/dev/null \
  || ! compgen -G "/usr/lib/*/gstreamer-1.0/libgstvideoparsersbad.so" >/dev/null \
  || ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then
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
# The tests start dozens of Python processes; where PYTHONDONTWRITEBYTECODE is set none of them writes .pyc
# files, and each would compile the project's modules again (the venv's are compiled by install.sh).
.venv/bin/python -m compileall -q -j 0 orchestrator ml_service scripts tests >/dev/null
# The slowest tests are listed at the end: where the CI budget (30 min) goes.
.venv/bin/pytest -q -p no:cacheprovider --durations=30 "$@"
