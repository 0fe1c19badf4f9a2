#!/usr/bin/env bash
# Idempotent install: a .venv holding exactly requirements/lock.txt (the orchestrator, the ML service's models,
# pyannote, insightface and the dev tools; exact versions, every file checked against its sha256), plus this
# project itself (editable). Nothing is downloaded at run time.
# A second run with unchanged inputs takes well under a second (stamp file); a changed lock is synced (uv adds,
# removes and upgrades what differs). A failed step names itself and exits non-zero.
# New versions come only through scripts/update_lock.sh (docs/dependencies.md).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/pkg_sources.sh
source scripts/pkg_sources.sh

step() {  # step NAME COMMAND...: run one install step; on failure say which one and stop.
  local name=$1
  shift
  if ! "$@"; then
    echo "install.sh: step '$name' failed (exit status above); nothing after it ran" >&2
    exit 1
  fi
}

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
  echo "install.sh: Python 3.11 is required: the lock is resolved for it (found $("$PY" --version 2>&1))" >&2
  exit 1
fi

# Fonts for the sample images with printed text, espeak-ng + sox for the speech in the sample and test videos
# (installed if missing; the standard image may lack them).
need=()
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf ] || need+=(fonts-dejavu-core)
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v sox >/dev/null || need+=(sox)
if [ ${#need[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    step "apt-get update" apt-get update -qq
    step "apt-get install ${need[*]}" apt-get install -y -qq "${need[@]}"
  else
    echo "install.sh: missing system packages: ${need[*]} (install them, e.g. with apt-get)" >&2
    exit 1
  fi
fi

[ -x .venv/bin/python ] || step "create .venv" "$PY" -m venv .venv
stamp=.venv/.archivist-install
want=$(cat requirements/lock.txt pyproject.toml scripts/install.sh scripts/pkg_sources.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  rm -f "$stamp"
  # uv installs the lock, and is itself in it: bootstrap it with pip, from its hashed entry alone.
  if [ ! -x .venv/bin/uv ]; then
    step "extract uv's locked entry" .venv/bin/python scripts/lock_tool.py only-package uv requirements/lock.txt \
      > .venv/uv-requirement.txt
    step "bootstrap uv (pip, hash-checked)" .venv/bin/python -m pip install -q --disable-pip-version-check \
      --no-deps --require-hashes -r .venv/uv-requirement.txt
  fi
  # Exactly the lock: installs what is missing, replaces other versions, removes what the lock does not name.
  # --compile-bytecode: the .pyc files are written once here. Where PYTHONDONTWRITEBYTECODE is set (these
  # machines), Python never writes them, and every process (ML services, workers, decoders) compiled the
  # sources it imports again: the orchestrator's imports 2.6 s of CPU instead of 1.1.
  step "sync .venv with requirements/lock.txt" .venv/bin/uv pip sync --python .venv/bin/python \
    --require-hashes --compile-bytecode "${pkg_sources[@]}" requirements/lock.txt
  # This project, editable, without dependencies (they are all locked above) and with the locked setuptools.
  step "install archivist (editable)" .venv/bin/uv pip install --python .venv/bin/python --no-deps \
    --no-build-isolation -e .
  # torchaudio (for pyannote) is a CUDA build on PyPI and cannot load its libraries beside the CPU torch;
  # without them it runs in pure Python, which is all pyannote uses (find_spec: importing it would fail).
  ta=$(.venv/bin/python -c "import importlib.util, os; print(os.path.dirname(importlib.util.find_spec('torchaudio').origin))")
  step "remove torchaudio's CUDA-linked libraries" rm -f "$ta"/lib/*.so
  # The lock leaves out insightface's opencv-python on purpose (requirements/overrides.txt): pip check must
  # report that one missing requirement and nothing else.
  if ! .venv/bin/python -m pip check --disable-pip-version-check > .venv/pip-check.txt \
    && grep -v '^insightface [^ ]* requires opencv-python, which is not installed\.$' .venv/pip-check.txt; then
    echo "install.sh: step 'pip check' failed: the requirements above are broken" >&2
    exit 1
  fi
  # resemblyzer's first import compiles librosa's numba kernels (~12 s, cached in site-packages): pay it here.
  step "import resemblyzer (compiles its numba kernels once)" .venv/bin/python -c "import resemblyzer"
  # senko's clustering imports umap (numba kernels, cached the same way): a first Diarizer ~30 s, later ~10 s.
  step "import senko's clustering (compiles umap's numba kernels once)" .venv/bin/python -W ignore -c \
    "import senko.cluster.cluster_cpu"
  echo "$want" > "$stamp"
fi
