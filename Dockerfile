# The tuco image: a virtualenv with the hash-pinned runtime lock (tuco[server]: the client plus the server extra) and the tuco wheel, on the official Python image.
#   docker build -t tuco .        (scripts/build-image tuco passes this machine's pip settings and CA certificates)
#   docker run -d --init -p 127.0.0.1:8080:8080 -v tuco-data:/data -e TUCO_AUTH=token \
#     -e TUCO_BOOTSTRAP_TOKEN_FILE=/run/secrets/tuco_bootstrap_token \
#     -v "$PWD/admin.token:/run/secrets/tuco_bootstrap_token:ro" tuco
# (README, "Deploy", has the recipes the tests run.)
# BASE may name any image with python3 (3.11+) and python3 -m venv (CI builds a Debian stand-in: scripts/standins).
# BUILD_BASE is the build stage's: the same Python at the same path, plus a C compiler and Python's headers, as the
# full official image has. The request path is compiled there with mypyc (hatch_build.py), for the build's CPU.
ARG BASE=python:3.11-slim
ARG BUILD_BASE=python:3.11

FROM ${BUILD_BASE} AS build
# The build machine's package index settings and extra CA certificates (PEM), for this stage only: the final stage
# copies the virtualenv alone, so neither is in the published image or its history.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ARG PIP_DEFAULT_TIMEOUT=60
ARG BUILD_CA_PEM=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_NO_INPUT=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python3 -m venv /opt/build && python3 -m venv /opt/tuco
COPY requirements/runtime.lock requirements/build.lock requirements/
RUN set -e; \
    if [ -n "$BUILD_CA_PEM" ]; then \
      cat /etc/ssl/certs/ca-certificates.crt > /tmp/build-ca.pem; printf '%s\n' "$BUILD_CA_PEM" >> /tmp/build-ca.pem; \
      export PIP_CERT=/tmp/build-ca.pem; \
    fi; \
    /opt/build/bin/pip install --require-hashes --only-binary=:all: -r requirements/build.lock; \
    /opt/tuco/bin/pip install --require-hashes --only-binary=:all: -r requirements/runtime.lock; \
    rm -f /tmp/build-ca.pem
COPY pyproject.toml README.md hatch_build.py ./
COPY src ./src
# The wheel is built offline by the hash-pinned hatchling and mypyc above (TUCO_BUILD=compiled: a failed compile
# fails the build rather than shipping pure Python), then the venv loses its installers.
RUN TUCO_BUILD=compiled /opt/build/bin/pip wheel --no-build-isolation --no-deps --no-index -w /tmp/wheel . \
 && /opt/tuco/bin/pip install --no-deps --no-index /tmp/wheel/tuco-*.whl \
 && /opt/tuco/bin/pip uninstall -y -q pip setuptools \
 && rm -rf /opt/tuco/bin/activate* /opt/tuco/bin/Activate.ps1 /opt/tuco/bin/pip* \
 && /opt/tuco/bin/python -c 'import tuco.cli, tuco.runtime; from tuco._build import build; assert build() == "compiled", build()'

FROM ${BASE}
RUN useradd --system --uid 10001 --gid 0 --home-dir /data --no-create-home --shell /usr/sbin/nologin tuco \
 && mkdir /data && chown 10001:0 /data && chmod 0770 /data
COPY --from=build /opt/tuco /opt/tuco
USER 10001:0
# The image listens on every interface (the published port is the boundary), so `tuco serve` refuses to start
# until the operator chooses TUCO_AUTH (token, with TUCO_BOOTSTRAP_TOKEN_FILE, or none).
ENV PATH=/opt/tuco/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    TUCO_HOST=0.0.0.0 TUCO_PORT=8080 TUCO_DATA_DIR=/data
WORKDIR /data
VOLUME /data
EXPOSE 8080
STOPSIGNAL SIGTERM
# Last, so that a new revision changes only the labels, not the cached layers above.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=""
LABEL org.opencontainers.image.title="tuco" \
      org.opencontainers.image.description="A dependable key-value store service" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="MIT"
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 CMD ["tuco", "health"]
ENTRYPOINT ["tuco"]
CMD ["serve"]
