#!/usr/bin/env bash
# Roundcube (Debian's roundcube-core 1.6, SQLite) in headless Chromium against
# ringmail and against Dovecot, with the same mail: the message list sorted by
# subject, from, date and size must come out the same, and the threaded view
# must nest the replies (tests/webmail/roundcube.py). Installs what it needs
# from Debian and PyPI, builds ringmail (a release build; `--debug` for the
# debug build CI already has), runs in about a minute. CI runs it.
#
#   tests/webmail/roundcube.sh [--debug]
set -euo pipefail
cd "$(dirname "$0")/../.."

sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
need=""
# dovecot-lmtpd: the Dovecot configuration shared with compare.sh speaks LMTP too.
for p in roundcube-core roundcube-sqlite3 php-cli php-sqlite3 chromium chromium-driver dovecot-imapd dovecot-lmtpd openssl; do
    dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"
done
if [ -n "$need" ]; then
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
python3 -c "import selenium" 2>/dev/null || python3 -m pip install -q selenium
# Dovecot's mail processes run as this unprivileged user (as in loadtest/compare.sh).
id rmbench >/dev/null 2>&1 || $sudo useradd --system --no-create-home --shell /usr/sbin/nologin rmbench

if [ "${1:-}" = "--debug" ]; then
    cargo build -q -p ringmail
    export RINGMAIL_BIN="$PWD/target/debug/ringmail"
else
    cargo build --release -q -p ringmail
fi
exec python3 -u tests/webmail/roundcube.py
