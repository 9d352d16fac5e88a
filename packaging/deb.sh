#!/usr/bin/env bash
# Builds target/debian/ringmail_<version>_<arch>.deb with cargo-deb (the
# package's contents are [package.metadata.deb] in Cargo.toml). Installs
# cargo-deb if missing.
#
#   packaging/deb.sh            release build
#   packaging/deb.sh --debug    the debug build (tests: faster to build)
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-deb >/dev/null 2>&1 || cargo install --locked --quiet cargo-deb@3.8.0
profile=release
if [ "${1:-}" = "--debug" ]; then profile=dev; shift; fi
cargo build -q -p ringmail --profile "$profile"

# The packaged unit: the canonical one (kernel-tuning/) with Debian's paths.
mkdir -p target/debian-staging
sed -e 's|/usr/local/bin/ringmail|/usr/bin/ringmail|' \
    -e 's|file:///usr/local/share/doc/ringmail/README.md|file:///usr/share/doc/ringmail/README.md|' \
    -e 's|^# systemd unit for ringmail. Install as .*|# systemd unit for ringmail (Debian package).|' \
    -e 's|^# (see the install section of the top-level README), then|# Review /etc/ringmail/ringmail.toml, then|' \
    kernel-tuning/ringmail.service > target/debian-staging/ringmail.service

rm -f target/debian/ringmail_*.deb
cargo deb -p ringmail --no-build --profile "$profile" "$@"
ls target/debian/ringmail_*.deb
