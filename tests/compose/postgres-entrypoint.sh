#!/bin/sh
# A first start makes the cluster (user, password, database), as the upstream image does; then
# the server runs in the foreground as the postgres user.
set -eu
data=/var/lib/postgresql/data
chown postgres:postgres "$data"
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
if [ ! -s "$data/PG_VERSION" ]; then
  printf '%s\n' "$POSTGRES_PASSWORD" > /tmp/pw && chown postgres /tmp/pw
  as_postgres initdb -D "$data" -U "$POSTGRES_USER" -E UTF8 --locale=C.UTF-8 --pwfile=/tmp/pw --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f /tmp/pw
  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$data/pg_hba.conf"
  as_postgres pg_ctl -D "$data" -o "-c listen_addresses= -c unix_socket_directories=/tmp" -w start >/dev/null
  as_postgres createdb -h /tmp -U "$POSTGRES_USER" "$POSTGRES_DB"
  as_postgres pg_ctl -D "$data" -w stop >/dev/null
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups \
  postgres -D "$data" -c listen_addresses='*' -c unix_socket_directories=/tmp
