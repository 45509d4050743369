# syntax=docker/dockerfile:1
# Orchestrator image. Build from the repository root:
#   docker build -f deploy/docker/orchestrator.Dockerfile -t provisioning/orchestrator .
# The default (last) stage is the production image; it does not contain the CLI
# simulator. `--target dev` adds it for local runs only.
# The base is pinned to a patch release; pin its digest too in your registry mirror
# (python:3.11.14-slim-bookworm@sha256:...) for byte-for-byte rebuilds.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
# Builds the operator console only; nothing of Node.js reaches the runtime image.
ARG NODE_IMAGE=node:20.19.0-bookworm-slim

# ---------------------------------------------------------------- build
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
# Only the shared library and this service: never the other service or the test tree.
COPY libs/common /src/libs/common
COPY services/orchestrator /src/services/orchestrator
# Non-editable install; pip byte-compiles, so the read-only runtime never writes .pyc files.
RUN /opt/venv/bin/pip install /src/libs/common /src/services/orchestrator \
 && /opt/venv/bin/pip uninstall -y pip

# -------------------------------------------------------------- console
# The operator console (served under /ui/), built from its lockfile.
FROM ${NODE_IMAGE} AS console
WORKDIR /console
COPY console/package.json console/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY console/ ./
RUN npm run build

# -------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime
# tini as PID 1: forwards SIGTERM to the service and reaps the CLI's orphaned children.
# Unpinned on purpose: the base tag fixes the Debian release, apt brings its security fixes.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 provisioning \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin provisioning \
 && install -d -o 10001 -g 10001 -m 0755 /opt/provisioning-cli
# /opt/provisioning-cli: where compose mounts a CLI (a volume inherits this owner).
COPY --from=build /opt/venv /opt/venv
COPY --from=console /console/dist /opt/console
# Read-only root filesystem: nothing is written outside /tmp (mount a tmpfs/emptyDir there).
# Production mode: the service refuses to start without its secrets (keys, storage URLs)
# instead of generating or defaulting them; PROVISIONING_ENV=development opts out.
ENV PATH=/opt/venv/bin:$PATH \
    PROVISIONING_ENV=production \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    HOST=0.0.0.0 \
    PORT=9090 \
    SHUTDOWN_GRACE_SECONDS=20 \
    PROVISIONING_CLI=/usr/local/provisioning \
    CONSOLE_DIST_DIR=/opt/console
USER 10001:10001
WORKDIR /tmp
EXPOSE 9090
# aiohttp drains in-flight requests on SIGTERM within SHUTDOWN_GRACE_SECONDS.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os,sys,urllib.request as u; p=os.environ.get('PATH_PREFIX','').rstrip('/'); sys.exit(0 if u.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT','9090')}{p}/health\", timeout=2).status == 200 else 1)"]
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/venv/bin/provisioning-orchestrator"]

# ------------------------------------------------------------------ dev
# Local development only: the CLI simulator stands in for the real provisioning CLI.
FROM runtime AS dev
COPY --chmod=0555 deploy/local/provisioning_simulator.py /opt/provisioning-dev/provisioning
ENV PROVISIONING_CLI=/opt/provisioning-dev/provisioning

# ----------------------------------------------------------- production
# The default target. The real CLI is not part of this repository: build a derived image
# that installs it at $PROVISIONING_CLI (FROM this image, COPY it, USER 10001:10001).
FROM runtime AS production
USER 10001:10001
