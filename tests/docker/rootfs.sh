#!/bin/sh
# Fills DIR with a small root filesystem for a test image of ENGINE, made of this machine's own
# binaries, the libraries they load and busybox for a shell: postgres or mariadb with an
# entrypoint that behaves like the official image's (see entrypoint-*.sh); base, the servers
# the Dockerfile's runtime stage installs, for the binary BIN; s3, the tests' S3 server BIN.
# No registry needed: tests/src/docker.rs imports DIR with `docker import`.
# Usage: rootfs.sh ENGINE DIR [BIN]
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

copy_as() { # copies file $1 to path $2 in $dir
    mkdir -p "$dir$(dirname "$2")"
    cp -L "$1" "$dir$2"
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
for applet in sh true false find cat chown chmod mkdir rm ls sed awk grep id env sleep hostname head tr printf cut uname basename dirname mv ln; do
    ln -sf busybox "$dir/bin/$applet"
done
mkdir -p "$dir/usr/bin"
# util-linux's setpriv: busybox's can't change user (entrypoints call it by its path, since
# busybox's sh runs its own applets first).
copy /usr/bin/setpriv
libs /usr/bin/setpriv
for applet in env awk id basename dirname; do ln -sf ../../bin/busybox "$dir/usr/bin/$applet"; done

postgres_files() {
    copy /usr/lib/postgresql/15 /usr/share/postgresql/15 /usr/share/zoneinfo
    rm -rf "$dir"/usr/lib/postgresql/15/lib/llvmjit* "$dir"/usr/lib/postgresql/15/lib/bitcode
    # Not llvmjit: LLVM alone is 100 MB, and JIT is off unless asked for.
    libs /usr/lib/postgresql/15/bin/* $(ls /usr/lib/postgresql/15/lib/*.so | grep -v llvmjit)
    mkdir -p "$dir/var/lib/postgresql" "$dir/var/run/postgresql"
}

mariadb_files() {
    copy /usr/sbin/mariadbd /usr/share/mysql /usr/bin/my_print_defaults /usr/bin/resolveip /usr/bin/mariadb-install-db
    [ -d /usr/lib/mysql/plugin ] && copy /usr/lib/mysql/plugin
    libs /usr/sbin/mariadbd /usr/bin/my_print_defaults /usr/bin/resolveip
    mkdir -p "$dir/var/lib/mysql" "$dir/run/mysqld"
}

users() { # /etc/passwd and /etc/group with root and the users given (uid = gid from 999 down)
    printf 'root:x:0:0::/root:/bin/sh\n' > "$dir/etc/passwd"
    printf 'root:x:0:\n' > "$dir/etc/group"
    id=999
    for u in "$@"; do
        printf '%s:x:%s:%s::/var/lib/%s:/bin/sh\n' "$u" $id $id "$u" >> "$dir/etc/passwd"
        printf '%s:x:%s:\n' "$u" $id >> "$dir/etc/group"
        id=$((id - 1))
    done
}

case $engine in
postgres)
    postgres_files
    users postgres
    mkdir -p "$dir/var/lib/postgresql/data" "$dir/docker-entrypoint-initdb.d"
    cp "$here/entrypoint-postgres.sh" "$dir/docker-entrypoint.sh"
    ;;
mariadb)
    mariadb_files
    users mysql
    mkdir -p "$dir/docker-entrypoint-initdb.d"
    cp "$here/entrypoint-mariadb.sh" "$dir/docker-entrypoint.sh"
    ;;
base)
    # What the Dockerfile's runtime stage starts from with the servers it would install
    # already there, for a binary ($3, torpor) that loads the libraries it finds.
    postgres_files
    mariadb_files
    libs "$3"
    # ca-certificates, as the runtime stage installs: TLS clients load the system's roots.
    copy_as /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
    users postgres mysql
    ;;
s3)
    # The tests' S3 server ($3), alone.
    copy_as "$3" /usr/local/bin/s3-server
    libs "$3"
    users
    ;;
*)
    echo "unknown engine $engine" >&2
    exit 2
    ;;
esac
[ -e "$here/entrypoint-$engine.sh" ] && chmod 755 "$dir/docker-entrypoint.sh"
exit 0
