#!/usr/bin/env bash
# `ringmail import` / `ringmail export` against Debian's Dovecot and mbsync
# (tests/import/dovecot.py says what is checked). Installs what it needs,
# builds ringmail (debug), runs in well under a minute. CI runs it.
#
#   tests/import/dovecot.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
need=""
for p in dovecot-imapd isync; do
    dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"
done
if [ -n "$need" ]; then
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
# Dovecot's mail processes run as this unprivileged user (as in loadtest/compare.sh).
id rmbench >/dev/null 2>&1 || $sudo useradd --system --no-create-home --shell /usr/sbin/nologin rmbench
cargo build -q -p ringmail
exec python3 -u tests/import/dovecot.py
