"""`ringmail import` and `ringmail export` against a real Dovecot (issue 17).

Dovecot (Debian's 2.3, Maildir) is filled over IMAP: folders (nested and
non-ASCII), flags, keywords, a deleted-but-not-expunged message, expunged
messages (so UIDNEXT runs past the last message), subscriptions. mbsync
syncs it once into a local Maildir. Then:

1. `ringmail import maildir` of Dovecot's Maildir, server stopped (--verify);
2. `ringmail import imap` from the running Dovecot into another user, with
   the ringmail server running (through its control socket);
3. both users, over IMAP on both servers: same folders, subscriptions,
   UIDVALIDITY, UIDNEXT, UIDs, flags, keywords, INTERNALDATE, RFC822.SIZE
   and bytes;
4. mbsync pointed at ringmail with its old state downloads nothing;
5. a change on Dovecot (new message, flag change, expunge) and a second
   IMAP import: only that is carried over;
6. `ringmail export` read by Dovecot as its own Maildir: the same again;
   and imported back into ringmail: the same UIDs, flags and bytes.

Run by tests/import/dovecot.sh (which installs Dovecot and mbsync).
"""

import imaplib
import mailbox
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RINGMAIL = os.environ.get("RINGMAIL_BIN", os.path.join(ROOT, "target/debug/ringmail"))
MAIL_USER = "rmbench"
PASSWORD = "secret pw"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, what, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not open port {port}")


def run(args, stdin=None, check=True):
    p = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=300)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


def ringmail(data, *args, stdin=None, check=True):
    return run([RINGMAIL, *args, "--data-dir", data], stdin=stdin, check=check)


class Dovecot:
    def __init__(self, work):
        self.dir = os.path.join(work, "dovecot")
        os.makedirs(os.path.join(self.dir, "mail"))
        self.port = free_port()
        with open(os.path.join(self.dir, "users"), "w") as f:
            for u in ("ann", "exported"):
                f.write(f"{u}:{{PLAIN}}{PASSWORD}\n")
        with open(os.path.join(self.dir, "masters"), "w") as f:
            f.write("admin:{PLAIN}admin secret\n")
        conf = open(os.path.join(ROOT, "tests/import/dovecot.conf")).read()
        conf = conf.replace("@WORK@", self.dir).replace("@MAIL_USER@", MAIL_USER).replace("@IMAP_PORT@", str(self.port))
        self.conf = os.path.join(self.dir, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        shutil.chown(os.path.join(self.dir, "mail"), MAIL_USER, MAIL_USER)
        # Dovecot's master keeps the descriptors it was given: a file, not a pipe.
        with open(os.path.join(self.dir, "start.log"), "w") as log:
            if subprocess.run(["dovecot", "-c", self.conf], stdout=log, stderr=log).returncode != 0:
                raise RuntimeError("dovecot did not start: " + open(os.path.join(self.dir, "start.log")).read())
        wait_port(self.port, "Dovecot")

    def maildir(self, user):
        return os.path.join(self.dir, "mail", user, "Maildir")

    def stop(self):
        subprocess.run(["dovecot", "-c", self.conf, "stop"], capture_output=True)


class Ringmail:
    def __init__(self, data):
        self.data = data
        self.port, self.imaps = free_port(), free_port()
        self.log = open(os.path.join(data, "serve.log"), "w")
        self.proc = subprocess.Popen(
            [RINGMAIL, "serve", "--data-dir", data, "--imap", f"127.0.0.1:{self.port}", "--imaps", f"127.0.0.1:{self.imaps}", "--lmtp", "127.0.0.1:0",
             "--pop3", "127.0.0.1:0", "--pop3s", "127.0.0.1:0"],
            stdout=self.log,
            stderr=self.log,
        )
        wait_port(self.port, "ringmail")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def login(port, user):
    m = imaplib.IMAP4("127.0.0.1", port)
    m.login(user, PASSWORD)
    return m


def q(name):
    """imaplib sends mailbox names as they are given."""
    return '"' + name + '"'


def ok(r):
    typ, data = r
    assert typ == "OK", (typ, data)
    return data


def message(i, subject, lf=False):
    body = f"From: sender{i} <s{i}@example.com>\r\nTo: ann@example.com\r\nSubject: {subject}\r\nMessage-ID: <m{i}@example.com>\r\n" \
           f"Date: Mon, 2 Nov 2026 10:{i % 60:02d}:00 +0100\r\n\r\nBody of message {i}.\r\n" + ("x" * (i * 37 % 500)) + "\r\n"
    return body.encode()


def fill(port):
    """The mail the test moves, and what it expects to survive."""
    m = login(port, "ann")
    for name in ("Lists/rust", "Entw&APw-rfe", "Archive 2024", "Unsubscribed"):
        ok(m.create(q(name)))
    for name in ("Lists/rust", "Entw&APw-rfe", "Archive 2024"):
        ok(m.subscribe(q(name)))
    flags = ["(\\Seen)", "(\\Seen \\Flagged)", "(\\Answered $Work)", "()", "(\\Draft Todo $Work)", "(\\Seen \\Deleted)"]
    for i in range(1, 41):
        box = ["INBOX", "Lists/rust", "Entw&APw-rfe", "Archive 2024", "Unsubscribed"][i % 5]
        date = imaplib.Time2Internaldate(1_780_000_000 + i * 86_400 + i * 7)
        ok(m.append(q(box), flags[i % len(flags)], date, message(i, f"Message {i} in {box}")))
    # Expunged ones: a hole in the middle and the newest (UIDNEXT past the last).
    ok(m.select("INBOX"))
    ok(m.uid("STORE", "2,8", "+FLAGS.SILENT", "(\\Deleted)"))
    typ, data = m.uid("SEARCH", "ALL")
    last = data[0].split()[-1].decode()
    ok(m.uid("STORE", last, "+FLAGS.SILENT", "(\\Deleted)"))
    ok(m.expunge())
    # A deleted, not expunged message stays (with \Deleted).
    ok(m.uid("STORE", "3", "+FLAGS.SILENT", "(\\Deleted)"))
    m.logout()


FETCH_RE = re.compile(rb"UID (\d+)|FLAGS \(([^)]*)\)|INTERNALDATE \"([^\"]+)\"|RFC822\.SIZE (\d+)")


def snapshot(port, user):
    """Everything a client can see of a user's mail, for comparison."""
    m = login(port, user)
    out = {}
    boxes = []
    for line in ok(m.list('""', "*")):
        name = line.decode().rsplit(' "/" ', 1)[1].strip('"')
        if "\\Noselect" not in line.decode():
            boxes.append(name)
    out["subscribed"] = sorted(l.decode().rsplit(' "/" ', 1)[1].strip('"') for l in ok(m.lsub('""', "*")))
    for name in sorted(boxes):
        quoted = '"' + name + '"'
        typ, _ = m.select(quoted, readonly=True)
        assert typ == "OK", name
        st = ok(m.status(quoted, "(UIDVALIDITY UIDNEXT MESSAGES)"))[0].decode()
        status = dict(re.findall(r"(UIDVALIDITY|UIDNEXT|MESSAGES) (\d+)", st))
        msgs = []
        typ, data = m.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
        for item in data:
            if not isinstance(item, tuple):
                continue
            head, body = item
            fields = {}
            for g in FETCH_RE.finditer(head):
                if g.group(1):
                    fields["uid"] = int(g.group(1))
                if g.group(2) is not None:
                    fields["flags"] = sorted(f for f in g.group(2).decode().split() if f != "\\Recent")
                if g.group(3):
                    fields["date"] = g.group(3).decode()
                if g.group(4):
                    fields["size"] = int(g.group(4))
            fields["body"] = body
            msgs.append(fields)
        out[name] = {"status": status, "msgs": sorted(msgs, key=lambda x: x["uid"])}
    m.logout()
    return out


# Mailboxes ringmail makes for every user; and a parent level such as
# "Lists" is a mailbox of its own in ringmail, a \Noselect name in Dovecot.
EXTRA_OK = {"Drafts", "Sent", "Trash", "Junk", "Archive", "Lists"}


def compare(a, b, what):
    """b must hold a's mailboxes exactly; other mailboxes of b must be
    ringmail's empty defaults; a's subscriptions must be b's."""
    b = dict(b)
    for name in list(b):
        if name not in a and name != "subscribed":
            assert name in EXTRA_OK and not b[name]["msgs"], (what, name)
            del b[name]
    boxes = set(a) - {"subscribed"}
    b["subscribed"] = [s for s in b["subscribed"] if s in boxes or s in a["subscribed"]]
    a = dict(a)
    a["subscribed"] = [s for s in a["subscribed"] if s in boxes or s in b["subscribed"]]
    if a == b:
        print(f"ok: {what}")
        return
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            print(f"DIFFERENT {what}: {k}\n  {str(a.get(k))[:600]}\n  {str(b.get(k))[:600]}")
    raise SystemExit(f"FAIL: {what}")


def mbsync_config(work, port, store_dir, state_dir):
    path = os.path.join(work, f"mbsyncrc-{port}")
    with open(path, "w") as f:
        f.write(f"""IMAPAccount src
Host 127.0.0.1
Port {port}
User ann
Pass "{PASSWORD}"
SSLType None
AuthMechs LOGIN

IMAPStore far
Account src

MaildirStore near
Path {store_dir}/
Inbox {store_dir}/INBOX
SubFolders Verbatim

Channel all
Far :far:
Near :near:
Patterns *
Create Near
Expunge None
SyncState {state_dir}/
Sync Pull
""")
    return path


def count_files(d):
    """Messages in a Maildir tree (what mbsync downloaded)."""
    return sum(len(files) for path, _, files in os.walk(d) if os.path.basename(path) in ("cur", "new"))


def main():
    work = tempfile.mkdtemp(prefix="rm-import-")
    os.chmod(work, 0o755)
    dv = rm = None
    try:
        dv = Dovecot(work)
        fill(dv.port)
        source = snapshot(dv.port, "ann")
        assert len(source) >= 6 and source["INBOX"]["msgs"], source.keys()

        # mbsync copies Dovecot's mail once, keeping its state (UIDVALIDITY, UIDs).
        near, state = os.path.join(work, "near"), os.path.join(work, "mbsync-state")
        os.makedirs(near)
        os.makedirs(state)
        run(["mbsync", "-c", mbsync_config(work, dv.port, near, state), "-a"])
        near_files = count_files(near)
        print(f"ok: mbsync pulled {near_files} files from Dovecot")

        data = os.path.join(work, "ringmail")
        for u in ("ann", "bob", "cat", "dan", "eve", "fay"):
            ringmail(data, "user", "add", u, "--password-stdin", stdin=PASSWORD + "\n")

        # 1. Offline, from Dovecot's Maildir (Dovecot keeps running: it is a copy).
        r = ringmail(data, "import", "maildir", dv.maildir("ann"), "--user", "ann", "--verify")
        print(r.stderr.strip())
        assert "no server running" in r.stderr, r.stderr
        dry = ringmail(data, "import", "maildir", dv.maildir("ann"), "--user", "ann", "--dry-run")
        assert "would import 0 messages" in dry.stderr, dry.stderr

        rm = Ringmail(data)
        compare(source, snapshot(rm.port, "ann"), "Maildir import: ringmail's ann as Dovecot's ann")

        # 2. Online, over IMAP from the running Dovecot, into bob.
        r = ringmail(data, "import", "imap", "--host", f"127.0.0.1:{dv.port}", "--source-user", "ann", "--password-stdin",
                     "--user", "bob", "--jobs", "3", "--verify", stdin=PASSWORD + "\n")
        print(r.stderr.strip())
        assert "running server" in r.stderr, r.stderr
        compare(source, snapshot(rm.port, "bob"), "IMAP import (server running): ringmail's bob as Dovecot's ann")

        # A master user reads ann's mail on Dovecot: one admin password for every user.
        r = ringmail(data, "import", "imap", "--host", f"127.0.0.1:{dv.port}", "--source-user", "admin", "--source-authzid", "ann",
                     "--password-stdin", "--user", "fay", "--verify", stdin="admin secret\n")
        compare(source, snapshot(rm.port, "fay"), "IMAP import as Dovecot's master user (SASL PLAIN authzid)")

        # An IMAP source with TLS and with STARTTLS: ringmail itself, whose
        # certificate is self-signed (--insecure).
        for user, security in (("dan", "--tls"), ("eve", "--starttls")):
            port = rm.imaps if security == "--tls" else rm.port
            r = ringmail(data, "import", "imap", "--host", f"127.0.0.1:{port}", security, "--insecure", "--source-user", "ann",
                         "--password-stdin", "--user", user, "--verify", stdin=PASSWORD + "\n")
            compare(snapshot(rm.port, "ann"), snapshot(rm.port, user), f"IMAP import over {security[2:]}")
        r = ringmail(data, "import", "imap", "--host", f"127.0.0.1:{rm.imaps}", "--tls", "--source-user", "ann",
                     "--password-stdin", "--user", "dan", stdin=PASSWORD + "\n", check=False)
        assert r.returncode != 0 and "certificate" in r.stderr.lower(), r.stderr
        print("ok: a self-signed certificate is refused without --insecure")

        # 4. mbsync, its state from Dovecot, pointed at ringmail: nothing to download.
        p = run(["mbsync", "-V", "-c", mbsync_config(work, rm.port, near, state), "-a"])
        out = p.stdout + p.stderr
        assert "UIDVALIDITY changed" not in out and "Error" not in out, out
        assert count_files(near) == near_files, "mbsync downloaded mail again"
        print("ok: mbsync against ringmail with Dovecot's state: nothing new")

        # 5. Changes on Dovecot, a second import carries over just those.
        m = login(dv.port, "ann")
        ok(m.append("INBOX", "(\\Flagged)", imaplib.Time2Internaldate(1_790_000_000), message(99, "Late arrival")))
        ok(m.select("Lists/rust"))
        uids = ok(m.uid("SEARCH", "ALL"))[0].split()
        ok(m.uid("STORE", uids[0], "FLAGS.SILENT", "(\\Answered NewKeyword)"))
        ok(m.uid("STORE", uids[1], "+FLAGS.SILENT", "(\\Deleted)"))
        gone = [x for x in ok(m.expunge()) if x]  # with the ones fill() left \Deleted
        m.logout()
        source = snapshot(dv.port, "ann")
        # A session of bob's in IDLE on INBOX hears of the imported message at once.
        idler = login(rm.port, "bob")
        ok(idler.select("INBOX"))
        tag = idler._new_tag()
        idler.send(tag + b" IDLE\r\n")
        assert idler.readline().startswith(b"+"), "IDLE"
        r = ringmail(data, "import", "imap", "--host", f"127.0.0.1:{dv.port}", "--source-user", "ann", "--password-stdin",
                     "--user", "bob", stdin=PASSWORD + "\n")
        print(r.stderr.strip())
        idler.sock.settimeout(10)
        heard = idler.readline()
        assert re.match(rb"\* \d+ EXISTS", heard), heard
        idler.send(b"DONE\r\n")
        print("ok: a session in IDLE heard of the imported message")
        compare(source, snapshot(rm.port, "bob"), "second IMAP import: only the changes")
        assert "imported 1 messages" in r.stderr and "flags updated on 1" in r.stderr and f"{len(gone)} expunged" in r.stderr, r.stderr

        # 6. Export (server running: read-only), Dovecot reads it as its own.
        exported = os.path.join(dv.dir, "mail", "exported", "Maildir")
        os.makedirs(os.path.dirname(exported))
        r = ringmail(data, "export", "--user", "bob", exported)
        print(r.stderr.strip())
        subprocess.run(["chown", "-R", f"{MAIL_USER}:{MAIL_USER}", os.path.dirname(exported)], check=True)
        compare(snapshot(rm.port, "bob"), snapshot(dv.port, "exported"), "export read by Dovecot")
        # ...and back into ringmail (cat): the same UIDs, flags and bytes.
        r = ringmail(data, "import", "maildir", exported, "--user", "cat", "--verify")
        compare(snapshot(rm.port, "bob"), snapshot(rm.port, "cat"), "export imported back")

        # 7. An mbox (Python's mailbox module writes mboxo, LF line ends,
        # Status/X-Status for flags) into a new folder.
        mbox_path = os.path.join(work, "old.mbox")
        box = mailbox.mbox(mbox_path)
        originals = [message(200 + i, f"From the mbox {i}") for i in range(3)]
        originals[1] = originals[1].replace(b"Body of", b"From the start, body of")
        for i, raw in enumerate(originals):
            msg = mailbox.mboxMessage(raw.replace(b"\r\n", b"\n"))
            msg.set_flags("RO" if i == 0 else ("F" if i == 1 else ""))
            box.add(msg)
        box.close()
        # Python quotes the body's "From " line as ">From " (mboxo); --mboxrd undoes it.
        r = ringmail(data, "import", "mbox", mbox_path, "--user", "cat", "--mailbox", "Old mail", "--mboxrd", "--verify")
        m = login(rm.port, "cat")
        ok(m.select('"Old mail"', readonly=True))
        typ, data_ = m.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
        got = [(item[0], item[1]) for item in data_ if isinstance(item, tuple)]
        assert [b for _, b in got] == originals, got
        assert b"\\Seen" in got[0][0] and b"\\Flagged" in got[1][0] and b"\\Seen" not in got[2][0], got
        m.logout()
        print("ok: mbox import (bytes without the mbox's own headers, flags from Status/X-Status)")
        print("PASS")
    finally:
        if rm:
            rm.stop()
        if dv:
            dv.stop()
        if os.environ.get("KEEP") is None:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("kept", work)


if __name__ == "__main__":
    main()
