#!/bin/sh
# Fills DIR with a small root filesystem for a test image of ENGINE (postgres or mariadb), made
# of this machine's own server binaries, the libraries they load, busybox for a shell, and an
# entrypoint that behaves like the official image's (see entrypoint-*.sh). No registry needed:
# tests/src/docker.rs imports DIR with `docker import`.
set -eu
engine=$1
dir=$2
here=$(cd "$(dirname "$0")" && pwd)

copy() { # copies each path given, with its parent directories, into $dir
    for p in "$@"; do
        mkdir -p "$dir$(dirname "$p")"
        cp -a "$p" "$dir$(dirname "$p")/"
    done
}

libs() { # copies the shared libraries each binary given loads, and the loader, as files
    for b in "$@"; do
        ldd "$b" 2>/dev/null | awk '/=> \//{print $3} /^\t\/.*ld-linux/{print $1}'
    done | sort -u | while read -r l; do
        mkdir -p "$dir$(dirname "$l")"
        cp -L "$l" "$dir$l"
    done
}

mkdir -p "$dir/bin" "$dir/tmp" "$dir/etc" "$dir/run"
chmod 1777 "$dir/tmp"
cp /bin/busybox "$dir/bin/busybox"
for applet in sh cat chown chmod mkdir rm ls sed awk grep id env sleep hostname head tr printf cut uname basename dirname mv ln; do
    ln -sf busybox "$dir/bin/$applet"
done
mkdir -p "$dir/usr/bin"
# util-linux's setpriv: busybox's can't change user (entrypoints call it by its path, since
# busybox's sh runs its own applets first).
copy /usr/bin/setpriv
libs /usr/bin/setpriv
for applet in env awk id basename dirname; do ln -sf ../../bin/busybox "$dir/usr/bin/$applet"; done

case $engine in
postgres)
    copy /usr/lib/postgresql/15 /usr/share/postgresql/15 /usr/share/zoneinfo
    rm -rf "$dir"/usr/lib/postgresql/15/lib/llvmjit* "$dir"/usr/lib/postgresql/15/lib/bitcode
    # initdb looks for the server's share files and binaries relative to itself; the Debian
    # build also reads its system-wide config from /etc/postgresql-common when present.
    # Not llvmjit: LLVM alone is 100 MB, and JIT is off unless asked for.
    libs /usr/lib/postgresql/15/bin/* $(ls /usr/lib/postgresql/15/lib/*.so | grep -v llvmjit)
    printf 'root:x:0:0::/root:/bin/sh\npostgres:x:999:999::/var/lib/postgresql:/bin/sh\n' > "$dir/etc/passwd"
    printf 'root:x:0:\npostgres:x:999:\n' > "$dir/etc/group"
    mkdir -p "$dir/var/lib/postgresql/data" "$dir/var/run/postgresql" "$dir/docker-entrypoint-initdb.d"
    cp "$here/entrypoint-postgres.sh" "$dir/docker-entrypoint.sh"
    ;;
mariadb)
    copy /usr/sbin/mariadbd /usr/share/mysql /usr/bin/my_print_defaults /usr/bin/resolveip /usr/bin/mariadb-install-db
    [ -d /usr/lib/mysql/plugin ] && copy /usr/lib/mysql/plugin
    libs /usr/sbin/mariadbd /usr/bin/my_print_defaults /usr/bin/resolveip
    printf 'root:x:0:0::/root:/bin/sh\nmysql:x:999:999::/var/lib/mysql:/bin/sh\n' > "$dir/etc/passwd"
    printf 'root:x:0:\nmysql:x:999:\n' > "$dir/etc/group"
    mkdir -p "$dir/var/lib/mysql" "$dir/run/mysqld" "$dir/docker-entrypoint-initdb.d"
    cp "$here/entrypoint-mariadb.sh" "$dir/docker-entrypoint.sh"
    ;;
*)
    echo "unknown engine $engine" >&2
    exit 2
    ;;
esac
chmod 755 "$dir/docker-entrypoint.sh"
