# Peerway's image: the package and its dependencies installed once, at build time, into /opt/peerway; no source
# tree, no compiler and no build files in the final image; runs as an unprivileged user.
#   docker build -t peerway .
#   docker run --rm -e PEERWAY_DATABASE_URL=... -e PEERWAY_JWT_SECRET=... -p 8000:8000 peerway serve --workers 2
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the package is built from (.dockerignore keeps tests, benches, docs and local state out).
COPY pyproject.toml README.md ./
COPY service ./service
COPY consent ./consent
COPY fhir_profiles ./fhir_profiles
# The wheel is built here, in the build stage's copy: nothing is written into anyone's source tree.
RUN python -m venv /opt/peerway \
 && /opt/peerway/bin/pip install --upgrade pip \
 && /opt/peerway/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/peerway/bin/pip install /wheels/*.whl

FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/peerway --create-home peerway
COPY --from=build /opt/peerway /opt/peerway
ENV PATH=/opt/peerway/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PEERWAY_HOST=0.0.0.0 \
    PEERWAY_PORT=8000 \
    PEERWAY_AUTH_KEYS_PATH=/var/lib/peerway/keys/auth-keys.json
USER 10001:10001
WORKDIR /var/lib/peerway
RUN mkdir -p /var/lib/peerway/keys
EXPOSE 8000
# Liveness only (the process answers); readiness (database and schema) is /readyz, for orchestrators.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["peerway"]
CMD ["serve"]
