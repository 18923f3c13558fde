# PostgreSQL from Debian's package, for the compose stack test (tests/test_compose_stack.py): the
# upstream postgres image cannot be pulled here. Takes the upstream image's POSTGRES_USER,
# POSTGRES_PASSWORD and POSTGRES_DB and its data directory, so compose.yaml's service works as
# it is.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/postgresql/data && chown postgres:postgres /var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH
ENTRYPOINT ["sh", "/usr/local/bin/postgres-entrypoint.sh"]
