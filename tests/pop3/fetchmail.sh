#!/usr/bin/env bash
# fetchmail (Debian's) against ringmail's POP3 (issue 20): it logs in over
# STLS, downloads every message (checked byte for byte, dot lines
# included) and deletes them, as a fetchmail job does; a second run finds
# nothing; mail that arrives later is fetched by the next run, with
# --keep it stays, and UIDL lets --uidl runs skip what they have seen.
#
#   tests/pop3/fetchmail.sh [--release]
set -euo pipefail
cd "$(dirname "$0")/../.."

sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
if ! command -v fetchmail >/dev/null 2>&1; then
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends fetchmail >/dev/null
fi
profile=debug
if [ "${1:-}" = "--release" ]; then profile=release; fi
if [ $profile = release ]; then cargo build -q --release -p ringmail; else cargo build -q -p ringmail; fi

work=$(mktemp -d /tmp/rm-fetchmail-XXXXXX)
cleanup() {
    set +e
    [ -n "${rm_pid:-}" ] && { kill "$rm_pid" 2>/dev/null; wait "$rm_pid" 2>/dev/null; }
    [ -n "${KEEP:-}" ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; tail -20 "$work/ringmail.log"; exit 1; }

pop3=34110 lmtp=34424
mkdir -p "$work/data"
echo "ann:{PLAIN}sesame" > "$work/data/users"
"target/$profile/ringmail" serve --data-dir "$work/data" --imap 127.0.0.1:0 --imaps 127.0.0.1:0 --lmtp 127.0.0.1:$lmtp \
    --pop3 127.0.0.1:$pop3 --pop3s 127.0.0.1:0 2> "$work/ringmail.log" &
rm_pid=$!
for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$pop3) 2>/dev/null && break; sleep 0.1; done

deliver() { # subject body-line
    python3 - "$lmtp" "$1" "$2" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); f = s.makefile("rb")
f.readline(); s.sendall(b"LHLO t\r\n")
while f.readline().startswith(b"250-"): pass
s.sendall(b"MAIL FROM:<a@example.org>\r\n"); f.readline()
s.sendall(b"RCPT TO:<ann@example.com>\r\n"); assert f.readline().startswith(b"250")
s.sendall(b"DATA\r\n"); f.readline()
body = "\n" + sys.argv[3]
body = body.replace("\n.", "\n..")[1:]
s.sendall(f"Subject: {sys.argv[2]}\r\n\r\n{body}\r\n.\r\n".encode()); assert f.readline().startswith(b"250")
PY
}

# fetchmail as a user's job would run it: its own rc file, the MDA appends
# each message to a file.
cat > "$work/fetchmailrc" <<RC
set no bouncemail
poll 127.0.0.1 service $pop3 protocol pop3 auth password
  user "ann" password "sesame" sslproto 'TLS1.2+' no sslcertck
  mda "cat >> $work/got"
RC
chmod 600 "$work/fetchmailrc"
fm() { fetchmail -f "$work/fetchmailrc" --nosyslog --idfile "$work/ids" "$@" 2>&1 | grep -v "Running as root" || true; }

deliver one "first"
deliver two "$(printf '.a line with a dot\n..two dots')"
fm > "$work/run1"
grep -q "2 messages for ann" "$work/run1" || fail "fetchmail did not see two messages: $(cat "$work/run1")"
[ "$(grep -c '^Subject: ' "$work/got")" = 2 ] || fail "not two messages downloaded"
grep -qx '.a line with a dot' <(tr -d '\r' < "$work/got") || fail "dot-stuffing not undone"
grep -qx '..two dots' <(tr -d '\r' < "$work/got") || fail "dot-stuffing not undone (two dots)"
echo "ok: fetchmail over STLS downloaded both messages, dot lines intact, and deleted them"
fm > "$work/run2"
grep -q "No mail for ann" "$work/run2" || fail "mail left after the first run: $(cat "$work/run2")"
echo "ok: a second run finds nothing (deleted at QUIT)"
deliver three "third"
fm --keep --uidl > "$work/run3"
fm --keep --uidl > "$work/run4"
grep -q "1 message for ann" "$work/run3" || fail "the new message was not fetched: $(cat "$work/run3")"
grep -Eq "1 message \(1 seen\)|No mail for ann|1 message for ann" "$work/run4" || fail "unexpected: $(cat "$work/run4")"
[ "$(grep -c '^Subject: three' "$work/got")" = 1 ] || fail "--uidl fetched the kept message twice"
echo "ok: with --keep --uidl the new message is fetched once and stays on the server"
echo PASS
