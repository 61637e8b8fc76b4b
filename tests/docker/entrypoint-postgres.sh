#!/bin/sh
# Like the official postgres image's entrypoint, for what torpor's tests use: on an empty
# PGDATA, initdb with POSTGRES_USER / POSTGRES_PASSWORD (scram-sha-256 for every TCP client,
# as the official image sets), POSTGRES_DB, then /docker-entrypoint-initdb.d/*.sql; the setup
# never listens on TCP, so a client only ever reaches the finished server.
set -eu
PGDATA=${PGDATA:-/var/lib/postgresql/data}
BIN=/usr/lib/postgresql/15/bin
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
as_pg() { /usr/bin/setpriv --reuid=postgres --regid=postgres --clear-groups "$@"; }
mkdir -p "$PGDATA" /var/run/postgresql
chown postgres:postgres "$PGDATA" /var/run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "POSTGRES_PASSWORD is not set" >&2
        exit 1
    fi
    printf '%s\n' "$POSTGRES_PASSWORD" > /tmp/pwfile
    chown postgres /tmp/pwfile
    as_pg "$BIN/initdb" -D "$PGDATA" -U "$user" --pwfile=/tmp/pwfile -E UTF8 --no-locale \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f /tmp/pwfile
    printf 'host all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
    if [ "$db" != postgres ]; then
        echo "CREATE DATABASE \"$db\" OWNER \"$user\"" | as_pg "$BIN/postgres" --single -D "$PGDATA" postgres >/dev/null
    fi
    for f in /docker-entrypoint-initdb.d/*.sql; do
        [ -e "$f" ] || continue
        as_pg "$BIN/postgres" --single -j -D "$PGDATA" "$db" < "$f" >/dev/null
    done
fi
exec /usr/bin/setpriv --reuid=postgres --regid=postgres --clear-groups "$BIN/postgres" -D "$PGDATA" \
    -c listen_addresses='*' -c unix_socket_directories=/var/run/postgresql "$@"
