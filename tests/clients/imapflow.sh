#!/usr/bin/env bash
# Three devices on one INBOX through ImapFlow (npm `imapflow`, a client
# library that speaks QRESYNC): one syncs and goes offline, one changes
# the mailbox (APPEND, STORE, EXPUNGE), one idles; the offline one comes
# back with SELECT (QRESYNC ...). All three must end with the server's
# state (tests/clients/imapflow_devices.mjs). Needs node and npm; builds
# ringmail and runs it on a fresh data directory. About ten seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
(cd "$work" && npm init -y >/dev/null && npm install --silent imapflow@1 >/dev/null)
cp tests/clients/imapflow_devices.mjs "$work/"
cargo build --release -q -p ringmail
printf 'p\n' | target/release/ringmail user add u --data-dir "$work/data" --password-stdin >/dev/null
target/release/ringmail serve --data-dir "$work/data" --imap 127.0.0.1:0 --imaps 127.0.0.1:0 --lmtp 127.0.0.1:0 --pop3 127.0.0.1:0 --pop3s 127.0.0.1:0 2> "$work/log" &
pid=$!
for _ in $(seq 50); do grep -q "IMAP: \[" "$work/log" && break; sleep 0.2; done
port=$(grep -o "IMAP: \[[0-9.]*:[0-9]*" "$work/log" | head -1 | sed 's/.*://')
# Something in the mailbox before the first device syncs.
for i in 1 2 3 4; do
    m="Subject: before $i\r\n\r\nbody $i\r\n"
    printf "a LOGIN u p\r\nb APPEND INBOX {%d+}\r\n$m\r\nc LOGOUT\r\n" "$(printf "$m" | wc -c)" | timeout 5 python3 -c "
import socket,sys
s=socket.create_connection(('127.0.0.1',$port)); s.sendall(sys.stdin.buffer.read())
while s.recv(65536): pass" || true
done
cd "$work" && node imapflow_devices.mjs "$port"
