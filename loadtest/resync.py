#!/usr/bin/env python3
"""QRESYNC resynchronization against any IMAP servers (RFC 7162 3.2.5, 3.2.6).

For each server: fill a fresh mailbox with N small messages, note its
HIGHESTMODSEQ, flag 10 messages and expunge 10 more, then time what a
client that synced before those changes sends when it comes back, each on
a fresh connection: SELECT (QRESYNC (uidvalidity modseq)) and UID FETCH
1:* (FLAGS) (CHANGEDSINCE modseq VANISHED). Reports the median of seven.

    loadtest/resync.py --messages 20000 ringmail=127.0.0.1:41143 dovecot=127.0.0.1:20143

The user (default user98, password pass) must exist on every server; the
mailbox (default Resync) is deleted and made again.
"""
import argparse
import re
import socket
import statistics
import time


def connect(addr):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    s.settimeout(120)
    f = s.makefile("rb")
    f.readline()
    return s, f


def command(s, f, tag, text):
    s.sendall(f"{tag} {text}\r\n".encode())
    lines = []
    while True:
        line = f.readline()
        if not line:
            raise SystemExit(f"connection closed during {text!r}")
        lines.append(line)
        if line.startswith(tag.encode() + b" "):
            return lines


def populate(s, f, box, n):
    batch = []
    for i in range(n):
        m = f"Subject: m{i}\r\nMessage-ID: <{i}@resync>\r\n\r\nbody {i}\r\n".encode()
        batch.append(b"a APPEND " + box.encode() + b" {%d+}\r\n" % len(m) + m + b"\r\n")
        if len(batch) == 200 or i == n - 1:
            s.sendall(b"".join(batch))
            for _ in batch:
                while not f.readline().startswith(b"a "):
                    pass
            batch = []


def measure(addr, user, password, box, n):
    s, f = connect(addr)
    command(s, f, "l", f"LOGIN {user} {password}")
    command(s, f, "d", f"DELETE {box}")
    command(s, f, "c", f"CREATE {box}")
    start = time.time()
    populate(s, f, box, n)
    filled = time.time() - start
    command(s, f, "e", "ENABLE QRESYNC")
    selected = b"".join(command(s, f, "s", f"SELECT {box}")).decode()
    uidvalidity = re.search(r"UIDVALIDITY (\d+)", selected).group(1)
    modseq = re.search(r"HIGHESTMODSEQ (\d+)", selected).group(1)
    uids = lambda k: ",".join(str(j * (n // 11) + k) for j in range(1, 11))
    command(s, f, "f", f"UID STORE {uids(0)} +FLAGS.SILENT (\\Seen)")
    command(s, f, "x", f"UID STORE {uids(7)} +FLAGS.SILENT (\\Deleted)")
    command(s, f, "y", f"UID EXPUNGE {uids(7)}")
    command(s, f, "o", "LOGOUT")
    results = {}
    for name, text, select_first in [
        ("SELECT (QRESYNC)", f"SELECT {box} (QRESYNC ({uidvalidity} {modseq}))", False),
        ("UID FETCH (CHANGEDSINCE VANISHED)", f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)", True),
    ]:
        times = []
        for _ in range(7):
            s, f = connect(addr)
            command(s, f, "l", f"LOGIN {user} {password}")
            command(s, f, "e", "ENABLE QRESYNC")
            if select_first:
                command(s, f, "s", f"SELECT {box}")
            t = time.perf_counter()
            answer = command(s, f, "q", text)
            times.append(time.perf_counter() - t)
            fetches = sum(1 for line in answer if b" FETCH (" in line)
            vanished = sum(1 for line in answer if line.startswith(b"* VANISHED"))
            command(s, f, "o", "LOGOUT")
        results[name] = (statistics.median(times) * 1000, fetches, vanished)
    return filled, results


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("servers", nargs="+", help="label=host:port")
    p.add_argument("--messages", type=int, default=20000)
    p.add_argument("--user", default="user98")
    p.add_argument("--password", default="pass")
    p.add_argument("--mailbox", default="Resync")
    a = p.parse_args()
    for server in a.servers:
        label, addr = server.split("=", 1)
        filled, results = measure(addr, a.user, a.password, a.mailbox, a.messages)
        parts = [f"{k}: median {ms:.2f} ms ({fetches} FETCH, {vanished} VANISHED)" for k, (ms, fetches, vanished) in results.items()]
        print(f"{label}: {a.messages} messages filled in {filled:.1f} s; " + "; ".join(parts))


if __name__ == "__main__":
    main()
