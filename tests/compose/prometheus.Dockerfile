# Prometheus from Debian's package, for the compose stack test (tests/test_compose_stack.py): the
# upstream prom/prometheus image cannot be pulled here. Same entrypoint and paths as upstream.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends prometheus \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /prometheus && chown nobody:nogroup /prometheus
USER nobody
ENTRYPOINT ["/usr/bin/prometheus"]
