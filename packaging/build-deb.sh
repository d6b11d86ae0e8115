#!/bin/sh
# Builds target/debian/icecast-balancer_<version>_<arch>.deb: the release
# binary, its man pages and shell completions (generated from the CLI
# definition), the systemd unit, load.xsl, README, docs/ and LICENSE.
#   packaging/build-deb.sh            build the .deb
#   packaging/build-deb.sh --install  and install it with dpkg -i, then check it
#                                     (packaging/check-deb.sh: the maintainer
#                                     scripts on install, upgrade, remove, purge)
# Needs cargo-deb (cargo install cargo-deb).
set -eu
cd "$(dirname "$0")/.."

command -v cargo-deb >/dev/null || {
    echo "cargo-deb is missing: cargo install cargo-deb" >&2
    exit 1
}
cargo build --release --locked
bin=${CARGO_TARGET_DIR:-target}/release/icecast-balancer
rm -rf target/assets
mkdir -p target/assets/completions
"$bin" man target/assets/man
"$bin" completions bash > target/assets/completions/icecast-balancer.bash
"$bin" completions zsh > target/assets/completions/_icecast-balancer
"$bin" completions fish > target/assets/completions/icecast-balancer.fish
deb=$(cargo deb --no-build --locked 2>&1 | tail -n 1)
case "$deb" in
*.deb) echo "built $deb" ;;
*) echo "cargo deb failed: $deb" >&2; exit 1 ;;
esac

if [ "${1:-}" = "--install" ]; then
    dpkg -i "$deb"
    # What the package must have put in place, and a binary that runs.
    for f in /usr/bin/icecast-balancer /usr/bin/icecast-balancer-ctl \
        /usr/lib/systemd/system/icecast-balancer.service \
        /usr/share/icecast-balancer/load.xsl \
        /usr/share/doc/icecast-balancer/README.md \
        /usr/share/doc/icecast-balancer/docs/interface.md \
        /usr/share/doc/icecast-balancer/copyright \
        /usr/share/bash-completion/completions/icecast-balancer \
        /etc/default/icecast-balancer; do
        [ -e "$f" ] || { echo "missing after install: $f" >&2; exit 1; }
    done
    ls /usr/share/man/man1/icecast-balancer.1* >/dev/null
    /usr/bin/icecast-balancer --version
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' EXIT
    /usr/bin/icecast-balancer --database "$dir/x.db" import - < /dev/null
    /usr/bin/icecast-balancer --database "$dir/x.db" export > /dev/null
    if command -v systemd-analyze >/dev/null; then
        systemd-analyze security --offline=true /usr/lib/systemd/system/icecast-balancer.service |
            tail -n 1
    fi
    # The maintainer scripts through install, upgrade, remove, purge and a
    # new install after the purge; it ends with the package installed.
    packaging/check-deb.sh "$deb"
    echo "installed and checked $deb"
fi
