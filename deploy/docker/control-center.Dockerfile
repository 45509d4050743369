# syntax=docker/dockerfile:1
# Control center image. Build from the repository root:
#   docker build -f deploy/docker/control-center.Dockerfile -t provisioning/control-center .
# The base is pinned to a patch release; pin its digest too in your registry mirror
# (python:3.11.14-slim-bookworm@sha256:...) for byte-for-byte rebuilds.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---------------------------------------------------------------- build
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
# Only the shared library, the SDK (the audit chain's canonical rules) and this service:
# never the other service or the test tree.
COPY libs/common /src/libs/common
COPY libs/client /src/libs/client
COPY services/control_center /src/services/control_center
# Non-editable install; pip byte-compiles, so the read-only runtime never writes .pyc files.
RUN /opt/venv/bin/pip install /src/libs/common /src/libs/client /src/services/control_center \
 && /opt/venv/bin/pip uninstall -y pip

# -------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 provisioning \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin provisioning
COPY --from=build /opt/venv /opt/venv
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
    PORT=9080 \
    SHUTDOWN_GRACE_SECONDS=20
USER 10001:10001
WORKDIR /tmp
EXPOSE 9080
# aiohttp drains in-flight requests on SIGTERM within SHUTDOWN_GRACE_SECONDS.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os,sys,urllib.request as u; p=os.environ.get('PATH_PREFIX','').rstrip('/'); sys.exit(0 if u.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT','9080')}{p}/health\", timeout=2).status == 200 else 1)"]
ENTRYPOINT ["/opt/venv/bin/provisioning-control-center"]
