# Sourced by test.sh and bench.sh: installs the Debian packages given (nothing when none are).
apt_install() {
    [ $# -gt 0 ] || return 0
    echo "installing: $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # The packages' own service scripts must not start servers: the tools start their own.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
    fi
    apt-get install -y -qq "$@"
}
