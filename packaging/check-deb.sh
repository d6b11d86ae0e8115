#!/bin/sh
# Checks what the maintainer scripts of the .deb do, on this machine:
#   packaging/check-deb.sh target/debian/icecast-balancer_<version>_<arch>.deb
# install (enabled, started), upgrade (restarted, data and settings kept),
# remove (stopped, data and settings kept), purge (both gone), then installs
# the package again so the machine ends as `dpkg -i` leaves it.
#
# Needs root and dpkg. It purges an installed icecast-balancer first: run it
# on a build or CI machine, never where the service carries listeners.
#
# Where systemd runs (PID 1), the service's real state is checked. Where it
# does not (a container), the package's scripts skip starting and stopping
# unless /run/systemd/system exists; the check then creates that directory
# for its duration and puts recording stand-ins for systemctl and
# deb-systemd-invoke first in PATH, and checks what the scripts asked for.
# The systemctl stand-in passes calls with --root= on to the real one:
# those work on files without a running systemd, and deb-systemd-helper
# enables a unit on its first install through one (`systemctl --root=/
# preset`). Swallowing it would leave the unit recorded as enabled by the
# package but without its link, which deb-systemd-helper then keeps as "the
# administrator disabled it" on every later install.
set -eu

deb=${1:?usage: packaging/check-deb.sh PACKAGE.deb}
unit=icecast-balancer.service
wants=/etc/systemd/system/multi-user.target.wants/$unit
state=/var/lib/private/icecast-balancer
settings=/etc/default/icecast-balancer

fail() {
    echo "check-deb: $*" >&2
    exit 1
}

work=$(mktemp -d)
made_marker=
cleanup() {
    [ -z "$made_marker" ] || rmdir /run/systemd/system 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
    real=1
else
    real=
    calls=$work/calls
    : > "$calls"
    mkdir "$work/bin"
    real_systemctl=$(command -v systemctl) || fail "systemctl is missing"
    for tool in systemctl deb-systemd-invoke; do
        printf '#!/bin/sh\necho "%s $*" >> "%s"\n' "$tool" "$calls" > "$work/bin/$tool"
        chmod 755 "$work/bin/$tool"
    done
    printf 'case "$*" in *--root=*) exec %s "$@" ;; esac\n' "$real_systemctl" >> "$work/bin/systemctl"
    PATH=$work/bin:$PATH
    export PATH
    if [ ! -d /run/systemd/system ]; then
        mkdir -p /run/systemd/system
        made_marker=1
    fi
fi

# `asked ACTION`: the scripts asked to ACTION the unit since the last check.
asked() {
    if [ -n "$real" ]; then
        case $1 in
        start | restart) systemctl is-active --quiet "$unit" || fail "$unit is not running after $2" ;;
        stop) ! systemctl is-active --quiet "$unit" || fail "$unit still runs after $2" ;;
        esac
        return
    fi
    grep -q "^deb-systemd-invoke $1 .*$unit" "$calls" ||
        fail "$2 did not $1 $unit (asked: $(tr '\n' ';' < "$calls"))"
    : > "$calls"
}

# deb-systemd-helper's records of the unit, which a purge must remove.
helper_state() {
    ls -d /var/lib/systemd/deb-systemd-helper-enabled/$unit.dsh-also \
        /var/lib/systemd/deb-systemd-helper-enabled/*/$unit \
        /var/lib/systemd/deb-systemd-helper-masked/$unit 2>/dev/null || true
}

dpkg -P icecast-balancer >/dev/null 2>&1 || true
rm -rf "$state" /var/lib/icecast-balancer
stale=$(helper_state)
if [ -n "$stale" ]; then
    # Left by an earlier run whose systemctl stand-in swallowed the
    # enabling: it would read as "disabled by the administrator".
    echo "check-deb: removing stale deb-systemd-helper state: $stale"
    rm -f $stale
fi

echo "check-deb: install"
dpkg -i "$deb" >/dev/null
[ -L "$wants" ] || fail "install did not enable $unit (no $wants)"
asked start install
# A database as the running service would have left it, and a setting.
if [ -z "$real" ]; then
    mkdir -p "$state"
    ln -sfn private/icecast-balancer /var/lib/icecast-balancer
    /usr/bin/icecast-balancer --database "$state/icecast-balancer.db" import - < /dev/null
fi
echo "ICECAST_BALANCER_LOG_FORMAT=json" >> "$settings"

echo "check-deb: upgrade"
dpkg -i --force-confold "$deb" >/dev/null
[ -L "$wants" ] || fail "upgrade disabled $unit"
asked restart upgrade
[ -s /var/lib/icecast-balancer/icecast-balancer.db ] || fail "upgrade lost the database"
grep -q LOG_FORMAT=json "$settings" || fail "upgrade replaced $settings"

echo "check-deb: remove"
dpkg -r icecast-balancer >/dev/null
asked stop remove
[ "$(readlink "/etc/systemd/system/$unit")" = /dev/null ] || fail "remove did not mask $unit"
[ ! -e /usr/bin/icecast-balancer ] || fail "remove left the binary"
[ -s /var/lib/icecast-balancer/icecast-balancer.db ] || fail "remove deleted the database"
grep -q LOG_FORMAT=json "$settings" || fail "remove deleted $settings"

echo "check-deb: purge"
dpkg -P icecast-balancer >/dev/null
[ ! -e "$state" ] && [ ! -e /var/lib/icecast-balancer ] || fail "purge left the database"
[ ! -e "$settings" ] || fail "purge left $settings"
[ ! -L "$wants" ] || fail "purge left $wants"
[ ! -e "/etc/systemd/system/$unit" ] || fail "purge left $unit masked"
[ -z "$(helper_state)" ] || fail "purge left deb-systemd-helper state: $(helper_state)"

echo "check-deb: install after purge"
dpkg -i "$deb" >/dev/null
[ -L "$wants" ] || fail "a new install after a purge did not enable $unit"
asked start "install after purge"
echo "check-deb: install, upgrade, remove, purge and a new install do what they should"
