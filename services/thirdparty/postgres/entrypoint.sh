#!/bin/sh
# Initialise $PGDATA on first start (the user, password and database from
# POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB) from the cluster the image
# made with initdb, then run postgres in the foreground so the stop signal
# reaches it (SIGINT, the image's STOPSIGNAL: a fast shutdown that ends
# client sessions and keeps every committed row).
set -eu
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD (the manifests take it from a Secret)}"
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
mkdir -p "$PGDATA"
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    # a tar pipe: half the time of cp -a on a thousand small files
    tar -C /var/lib/postgresql/template -cf - . | tar -C "$PGDATA" -xf -
    # SQL literals and identifiers: double the quote character
    pw=$(printf '%s' "$POSTGRES_PASSWORD" | sed "s/'/''/g")
    role=$(printf '%s' "$user" | sed 's/"/""/g')
    dbname=$(printf '%s' "$db" | sed 's/"/""/g')
    # fsync=off: the fresh cluster is left to the kernel's writeback (a sync per
    # file cost more than the rest); a host that crashes first ends this run anyway
    {
        if [ "$user" = postgres ]; then
            echo "ALTER ROLE postgres PASSWORD '$pw'"
        else
            echo "CREATE ROLE \"$role\" SUPERUSER LOGIN PASSWORD '$pw'"
        fi
        if [ "$db" != postgres ]; then
            echo "CREATE DATABASE \"$dbname\" OWNER \"$role\""
        fi
    } | postgres --single -D "$PGDATA" -c jit=off -c fsync=off -c log_min_messages=warning postgres >/dev/null
    echo "postgres-entrypoint: initialised $PGDATA (user $user, database $db)"
fi
exec postgres -c listen_addresses='*' -c unix_socket_directories=/tmp -c jit=off "$@"
