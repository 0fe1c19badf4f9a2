# The orchestrator: the base dependencies only (no torch, no model code; the ML service has its own image,
# Dockerfile.ml). Build: docker build -t archivist-orchestrator .
# Run:   docker run -e API_KEY=... -e ML_SERVICE_URL=http://ml-host:8001 -p 8002:8002 \
#          -v /path/to/media:/media:ro -e ALLOWED_ROOTS=/media -v archivist-data:/data archivist-orchestrator
# Debian 12 like the development and CI machines (every wheel here was verified on it). A fixed Python
# release, not a moving tag: a rebuild gets the same interpreter the lock was resolved and tested for.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Every native library the base dependencies need (PyAV's FFmpeg, Pillow's codecs, Qdrant Edge) ships inside
# their wheels; the slim image's libc/libstdc++/zlib cover the rest, so no apt packages.

WORKDIR /src
# Exactly the locked versions of the base dependencies (requirements/orchestrator.txt: the lock's subset
# without the [ml] extra, since the orchestrator never imports torch or the models), every file checked
# against its hash; then the project itself, built with the locked setuptools, nothing else fetched.
COPY requirements/orchestrator.txt ./requirements/
RUN pip install --no-deps --require-hashes -r requirements/orchestrator.txt
COPY pyproject.toml ./
COPY orchestrator ./orchestrator
COPY ml_service ./ml_service
RUN pip install --no-deps --no-build-isolation . && pip check && rm -rf /src

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app --shell /usr/sbin/nologin app \
    && mkdir -p /data /media \
    && chown app:app /data
WORKDIR /home/app
USER app

# Settings (orchestrator/config.py; every one is in .env.example). A container is reached from outside, so it
# listens on all interfaces, and therefore refuses to start without API_KEY (or ALLOW_UNAUTHENTICATED=true
# behind an authenticating proxy). DATA_DIR is a volume in docker-compose.yml.
ENV HOST=0.0.0.0 \
    PORT=8002 \
    DATA_DIR=/data

EXPOSE 8002

# Liveness only (/health needs no key); docker-compose.yml checks /ready, which includes the dependencies.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8002'), timeout=3)"]

CMD ["python", "-m", "orchestrator"]
