#!/usr/bin/env bash
# The Debian package (issue 17), installed on this machine with dpkg: its
# files, owners and modes, the conffile, the unit, the system user and the
# private mail directory, `ringmail doctor` running from it, and mail that
# survives `remove`, `purge` and a reinstall. Cleans up after itself (the
# package, its user, the mail it made). Needs root (or sudo); CI runs it.
#
#   tests/package/deb.sh            release build
#   tests/package/deb.sh --debug    the debug build
set -euo pipefail
cd "$(dirname "$0")/../.."

sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
if dpkg -s ringmail >/dev/null 2>&1 || [ -e /var/lib/ringmail ]; then
    echo "ringmail is installed here, or /var/lib/ringmail exists: not touching them" >&2
    exit 1
fi
bash packaging/deb.sh "$@" >/dev/null
deb=$(ls target/debian/ringmail_*.deb)

fail() { echo "FAIL: $*" >&2; exit 1; }
cleanup() {
    $sudo dpkg --purge ringmail >/dev/null 2>&1 || true
    $sudo rm -rf /var/lib/ringmail
    $sudo userdel ringmail >/dev/null 2>&1 || true
    $sudo groupdel ringmail >/dev/null 2>&1 || true
}
trap cleanup EXIT
mode() { stat -c '%a %U:%G' "$1"; }

echo "== dpkg -i $deb"
$sudo dpkg -i "$deb" >/dev/null
[ "$(mode /usr/bin/ringmail)" = "755 root:root" ] || fail "/usr/bin/ringmail is $(mode /usr/bin/ringmail)"
[ "$(mode /etc/ringmail/ringmail.toml)" = "644 root:root" ] || fail "ringmail.toml is $(mode /etc/ringmail/ringmail.toml)"
dpkg-query -W -f='${Conffiles}\n' ringmail | grep -q '/etc/ringmail/ringmail.toml' || fail "ringmail.toml is not a conffile"
getent passwd ringmail | grep -q ':/var/lib/ringmail:/usr/sbin/nologin$' || fail "no ringmail system user"
[ "$(id -u ringmail)" -lt 1000 ] || fail "ringmail is not a system user"
[ "$(mode /var/lib/ringmail)" = "700 ringmail:ringmail" ] || fail "/var/lib/ringmail is $(mode /var/lib/ringmail)"
for f in /usr/lib/systemd/system/ringmail.service /usr/share/ringmail/grafana/ringmail.json \
         /usr/share/ringmail/kernel-tuning/sysctl.d/90-ringmail.conf /usr/share/ringmail/kernel-tuning/check.sh \
         /usr/share/doc/ringmail/README.md /usr/share/doc/ringmail/copyright; do
    [ -s "$f" ] || fail "$f missing"
done
grep -q '^ExecStart=/usr/bin/ringmail serve --config /etc/ringmail/ringmail.toml$' /usr/lib/systemd/system/ringmail.service || fail "the unit does not run /usr/bin/ringmail"
if command -v systemd-analyze >/dev/null; then systemd-analyze verify /usr/lib/systemd/system/ringmail.service; fi
python3 -c "import json; json.load(open('/usr/share/ringmail/grafana/ringmail.json'))"
echo "ok: files, owners, modes, conffile, unit, user, mail directory"

# The service is not started behind the admin's back.
if [ -d /run/systemd/system ]; then
    ! systemctl is-enabled --quiet ringmail || fail "installing enabled the service"
    ! systemctl is-active --quiet ringmail || fail "installing started the service"
fi

as_ringmail() { $sudo setpriv --reuid ringmail --regid ringmail --init-groups -- "$@"; }
echo "== ringmail doctor (as the ringmail user, the packaged configuration)"
set +e
as_ringmail /usr/bin/ringmail doctor --config /etc/ringmail/ringmail.toml > /tmp/ringmail-doctor.$$ 2>&1
rc=$?
set -e
# 1: this host is not tuned or ports below 1024 are closed to the user; a
# crash or a missing file would be something else.
[ "$rc" -le 1 ] && grep -q "^data directory .*/var/lib/ringmail .*OK" /tmp/ringmail-doctor.$$ || { cat /tmp/ringmail-doctor.$$; fail "doctor exited $rc"; }
rm -f /tmp/ringmail-doctor.$$
echo "ok: doctor runs (exit $rc)"

echo "== mail, then remove, purge and reinstall"
echo pw | as_ringmail /usr/bin/ringmail user add ann --password-stdin --config /etc/ringmail/ringmail.toml >/dev/null
printf 'Subject: kept\r\n\r\nthrough remove and purge\r\n' | as_ringmail /usr/bin/ringmail deliver --user ann --config /etc/ringmail/ringmail.toml
quota() { as_ringmail /usr/bin/ringmail user quota ann --config /etc/ringmail/ringmail.toml | awk '$3 == "MESSAGE" {print $4}'; }
[ "$(quota)" = 1 ] || fail "the delivered message is not there"

# The admin, as root, adds a user and imports and delivers mail: what that
# writes must still belong to the ringmail user, or the server cannot read it.
echo "== as root: user add, import, deliver"
echo pw | $sudo /usr/bin/ringmail user add bob --password-stdin --config /etc/ringmail/ringmail.toml >/dev/null
mbox=$(mktemp)
printf 'From a@example.com Fri Nov 27 12:00:00 2026\nSubject: one\nStatus: RO\n\nfirst\n\nFrom b@example.com Sat Nov 28 12:00:00 2026\nSubject: two\n\nsecond\n' > "$mbox"
$sudo /usr/bin/ringmail import mbox "$mbox" --user bob --config /etc/ringmail/ringmail.toml --quiet --verify 2>/dev/null
rm -f "$mbox"
printf 'Subject: three\r\n\r\nthird\r\n' | $sudo /usr/bin/ringmail deliver --user bob --config /etc/ringmail/ringmail.toml
not_ours=$($sudo find /var/lib/ringmail ! -user ringmail)
[ -z "$not_ours" ] || fail "left to root: $not_ours"
[ "$(as_ringmail /usr/bin/ringmail user quota bob --config /etc/ringmail/ringmail.toml | awk '$3 == "MESSAGE" {print $4}')" = 3 ] || fail "bob's mail"
echo "ok: what root wrote belongs to the ringmail user"

$sudo dpkg -r ringmail >/dev/null
[ ! -e /usr/bin/ringmail ] || fail "remove left the binary"
[ -f /etc/ringmail/ringmail.toml ] || fail "remove took the conffile (only purge should)"
[ -d /var/lib/ringmail/mail ] || fail "remove took the mail"
$sudo dpkg -P ringmail >/dev/null
[ ! -e /etc/ringmail/ringmail.toml ] || fail "purge left the conffile"
[ -d /var/lib/ringmail/mail ] || fail "purge took the mail"
$sudo dpkg -i "$deb" >/dev/null
[ "$(quota)" = 1 ] || fail "the mail is not back after a reinstall"
echo "ok: mail kept through remove, purge and reinstall"
echo PASS
