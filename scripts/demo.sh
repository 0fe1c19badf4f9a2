#!/usr/bin/env bash
# The main job: install if needed, then run the end-to-end demo (see scripts/demo.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python scripts/demo.py "$@"
