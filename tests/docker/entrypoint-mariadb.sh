#!/bin/sh
# Like the official mariadb image's entrypoint, for what torpor's tests use: on an empty
# datadir, the system tables, then MARIADB_ROOT_PASSWORD for root@'%', MARIADB_DATABASE, and
# MARIADB_USER / MARIADB_PASSWORD with every right on that database, then
# /docker-entrypoint-initdb.d/*.sql; the setup never listens on TCP.
set -eu
DATA=/var/lib/mysql
mkdir -p "$DATA" /run/mysqld
chown mysql:mysql "$DATA" /run/mysqld
if [ ! -d "$DATA/mysql" ]; then
    if [ -z "${MARIADB_ROOT_PASSWORD:-}" ]; then
        echo "MARIADB_ROOT_PASSWORD is not set" >&2
        exit 1
    fi
    mariadb-install-db --no-defaults --datadir="$DATA" --user=mysql --skip-test-db \
        --auth-root-authentication-method=normal --skip-name-resolve >/dev/null
    q() { printf '%s' "$1" | sed "s/'/''/g"; }
    {
        echo "FLUSH PRIVILEGES;"
        echo "CREATE USER 'root'@'%' IDENTIFIED BY '$(q "$MARIADB_ROOT_PASSWORD")';"
        echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
        echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '$(q "$MARIADB_ROOT_PASSWORD")';"
        if [ -n "${MARIADB_DATABASE:-}" ]; then
            echo "CREATE DATABASE \`$MARIADB_DATABASE\`;"
        fi
        if [ -n "${MARIADB_USER:-}" ]; then
            echo "CREATE USER '$MARIADB_USER'@'%' IDENTIFIED BY '$(q "${MARIADB_PASSWORD:-}")';"
            if [ -n "${MARIADB_DATABASE:-}" ]; then
                echo "GRANT ALL ON \`$MARIADB_DATABASE\`.* TO '$MARIADB_USER'@'%';"
            fi
        fi
        for f in /docker-entrypoint-initdb.d/*.sql; do
            [ -e "$f" ] && cat "$f"
        done
    } | mariadbd --no-defaults --bootstrap --datadir="$DATA" --user=mysql --log-warnings=0 >/dev/null
fi
exec mariadbd --no-defaults --datadir="$DATA" --user=mysql --bind-address=0.0.0.0 --port=3306 \
    --socket=/run/mysqld/mysqld.sock --skip-name-resolve "$@"
