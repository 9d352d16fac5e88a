#!/usr/bin/env python3
"""Roundcube against ringmail and against Dovecot: the same mail, the same
clicks, the same lists.

Debian's Roundcube 1.6 (SQLite) is served by `php -S` on loopback and driven
in headless Debian Chromium through Selenium. For each server, a user with
the same messages (tricky subjects: encoded words, Re:/Fwd:, [blobs]; a reply
chain) logs in; the message list is sorted by subject, from, date and size,
each both ways, and switched to the threaded view. The order of the rows must
be the same on both servers, and the threaded view must nest the replies.

    tests/webmail/roundcube.sh      # installs what it needs, builds, runs this

Needs: roundcube-core roundcube-sqlite3 php-cli php-sqlite3 chromium
chromium-driver dovecot-imapd (Debian), python3-selenium or `pip install
selenium`, and target/release/ringmail (or the binary RINGMAIL_BIN names).
"""

import imaplib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
USER, PASSWORD = "rc", "webmail-pw"
RM_IMAP, DV_IMAP, DV_LMTP, DV_IMAPS, WEB = 31443, 31543, 31524, 31593, 31480


def message(i, subject, sender, date, extra="", body_lines=1):
    body = "".join(f"line {n} of message {i}\r\n" for n in range(body_lines))
    return (
        f"From: {sender}\r\nTo: team@example.org\r\nSubject: {subject}\r\nDate: {date}\r\n"
        f"Message-ID: <m{i}@example.org>\r\n{extra}MIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    ).encode()


MESSAGES = [
    message(1, "Quarterly report", "Zoe Adams <zoe@example.org>", "Mon, 1 Jan 2024 09:00:00 +0000", body_lines=3),
    message(2, "=?utf-8?b?w4ljbGFpcnMgZm9yIHRoZSB0ZWFt?=", "=?utf-8?q?Andr=C3=A9?= <andre@example.org>", "Tue, 2 Jan 2024 09:00:00 +0000", body_lines=9),
    message(3, "Re: Quarterly report", "Bob <bob@example.org>", "Wed, 3 Jan 2024 09:00:00 +0000", "In-Reply-To: <m1@example.org>\r\nReferences: <m1@example.org>\r\n", body_lines=5),
    message(4, "[build] Nightly failed", "ci@example.org", "Thu, 4 Jan 2024 09:00:00 +0000", body_lines=20),
    message(5, "apples and oranges", "carol <carol@example.org>", "Fri, 5 Jan 2024 09:00:00 +0000", body_lines=2),
    message(6, "Re: Re: Quarterly report", "Zoe Adams <zoe@example.org>", "Sat, 6 Jan 2024 09:00:00 +0000",
            "In-Reply-To: <m3@example.org>\r\nReferences: <m1@example.org> <m3@example.org>\r\n", body_lines=7),
    message(7, "Fwd: Budget", "dave@example.org", "Sun, 7 Jan 2024 09:00:00 -0800", body_lines=12),
    message(8, "budget (fwd)", "Eve <eve@example.org>", "Sun, 7 Jan 2024 12:00:00 +0000", body_lines=4),
    message(9, "Zebra crossing", "frank@example.org", "Mon, 8 Jan 2024 09:00:00 +0000", body_lines=1),
    message(10, "Re: apples and oranges", "Bob <bob@example.org>", "Tue, 9 Jan 2024 09:00:00 +0000",
            "In-Reply-To: <m5@example.org>\r\nReferences: <m5@example.org>\r\n", body_lines=6),
]


def wait_port(port, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} did not open")


def fill(port):
    m = imaplib.IMAP4("127.0.0.1", port)
    m.login(USER, PASSWORD)
    for i, raw in enumerate(MESSAGES):
        m.append("INBOX", None, imaplib.Time2Internaldate(1_700_000_000 + 3600 * i), raw)
    m.logout()


def start_ringmail(work):
    data = os.path.join(work, "ringmail")
    binary = os.environ.get("RINGMAIL_BIN", os.path.join(ROOT, "target/release/ringmail"))
    subprocess.run([binary, "user", "add", "--data-dir", data, "--password-stdin", USER], input=PASSWORD.encode(), check=True, capture_output=True)
    p = subprocess.Popen([binary, "serve", "--data-dir", data, "--imap", f"127.0.0.1:{RM_IMAP}", "--imaps", "127.0.0.1:31444", "--lmtp", "127.0.0.1:31445",
                          "--pop3", "127.0.0.1:0", "--pop3s", "127.0.0.1:0"],
                         stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "ringmail.log"), "w"))
    wait_port(RM_IMAP)
    return p


def start_dovecot(work):
    d = os.path.join(work, "dovecot")
    os.makedirs(os.path.join(d, "mail"))
    shutil.chown(os.path.join(d, "mail"), "rmbench", "rmbench")
    with open(os.path.join(d, "users"), "w") as f:
        f.write(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", os.path.join(d, "key.pem"), "-out", os.path.join(d, "cert.pem")], check=True, capture_output=True)
    conf = open(os.path.join(ROOT, "loadtest/dovecot/dovecot.conf")).read()
    # The benchmark's configuration, without its POP3 (not used here, and
    # dovecot-pop3d need not be installed): the listeners stay, unused.
    conf = conf.replace("protocols = imap lmtp pop3", "protocols = imap lmtp")
    ports = {"@IMAP_PORT@": DV_IMAP, "@LMTP_PORT@": DV_LMTP, "@IMAPS_PORT@": DV_IMAPS, "@POP3_PORT@": DV_IMAP + 7, "@POP3S_PORT@": DV_IMAP + 8}
    for k, v in {"@WORK@": d, "@MAIL_USER@": "rmbench", **{k: str(v) for k, v in ports.items()}}.items():
        conf = conf.replace(k, v)
    with open(os.path.join(d, "dovecot.conf"), "w") as f:
        f.write(conf)
    shutil.copy(os.path.join(ROOT, "loadtest/dovecot/stock.conf"), os.path.join(d, "mode.conf"))
    # Not captured: the daemon's children would hold the pipes open.
    with open(os.path.join(d, "start.log"), "w") as log:
        if subprocess.run(["dovecot", "-c", os.path.join(d, "dovecot.conf")], stdout=log, stderr=log).returncode != 0:
            raise RuntimeError("dovecot did not start: " + open(os.path.join(d, "start.log")).read())
    wait_port(DV_IMAP)
    return os.path.join(d, "dovecot.conf")


def start_roundcube(work, imap_port):
    """Roundcube with its own configuration directory and SQLite database."""
    rc = os.path.join(work, f"roundcube-{imap_port}")
    conf = os.path.join(rc, "config")
    os.makedirs(conf)
    for f in ("defaults.inc.php", "mimetypes.php"):
        shutil.copy(os.path.join("/etc/roundcube", f), conf)
    db = os.path.join(rc, "roundcube.db")
    con = sqlite3.connect(db)
    con.executescript(open("/usr/share/roundcube/SQL/sqlite.initial.sql").read())
    con.close()
    with open(os.path.join(conf, "config.inc.php"), "w") as f:
        f.write(f"""<?php
$config = [];
$config['db_dsnw'] = 'sqlite:///{db}?mode=0600';
$config['imap_host'] = '127.0.0.1:{imap_port}';
$config['imap_auth_type'] = 'PLAIN';
$config['smtp_host'] = '';
$config['des_key'] = 'ringmail-webmail-test-key-24';
$config['plugins'] = [];
$config['skin'] = 'elastic';
$config['log_dir'] = '{rc}/';
$config['temp_dir'] = '{rc}/';
$config['imap_cache'] = null;
$config['messages_cache'] = false;
$config['mail_pagesize'] = 50;
$config['enable_installer'] = false;
""")
    env = dict(os.environ, ROUNDCUBE_CONFIG_DIR=conf)
    p = subprocess.Popen(["php", "-S", f"127.0.0.1:{WEB}", "-t", "/var/lib/roundcube"], env=env, cwd="/var/lib/roundcube",
                         stdout=subprocess.DEVNULL, stderr=open(os.path.join(rc, "php.log"), "w"))
    wait_port(WEB)
    return p


def browser():
    o = Options()
    o.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        o.add_argument(a)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)


def wait_for(driver, script, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        v = driver.execute_script(script)
        if v:
            return v
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for: {script}")


ROWS = """
const rows = Array.from(document.querySelectorAll('#messagelist tbody tr'));
return rows.map(tr => {
  const r = rcmail.message_list.rows[tr.uid || tr.id.replace(/^rcmrow/, '')] || {};
  return [String(r.uid), r.depth || 0];
});
"""

IDLE = "return window.rcmail && rcmail.message_list && !rcmail.busy && document.querySelectorAll('#messagelist tbody tr').length > 0 && !rcmail.env.messagecount_loading;"


def lists(imap_port, work):
    """The message list in every order the test asks for, and the threads."""
    web = start_roundcube(work, imap_port)
    d = browser()
    try:
        d.get(f"http://127.0.0.1:{WEB}/?_task=mail")
        wait_for(d, "return document.getElementById('rcmloginuser') != null")
        d.find_element(By.ID, "rcmloginuser").send_keys(USER)
        d.find_element(By.ID, "rcmloginpwd").send_keys(PASSWORD)
        d.find_element(By.ID, "rcmloginsubmit").click()
        wait_for(d, IDLE)
        caps = d.execute_script("return [rcmail.env.threading !== undefined, rcmail.env.threads];")
        out = {}
        for col in ("subject", "from", "date", "size"):
            for order in ("ASC", "DESC"):
                d.execute_script(f"rcmail.set_list_options(null, '{col}', '{order}', 0);")
                time.sleep(0.3)
                wait_for(d, IDLE)
                out[f"{col} {order}"] = [u for u, _ in d.execute_script(ROWS)]
        d.execute_script("rcmail.set_list_options(null, 'date', 'ASC', 1);")
        time.sleep(0.3)
        wait_for(d, IDLE)
        wait_for(d, "return rcmail.env.threading == 1;")
        out["threads"] = d.execute_script(ROWS)
        out["caps"] = caps
        return out
    finally:
        d.quit()
        web.terminate()
        web.wait()


def main():
    socket.setdefaulttimeout(30)
    work = tempfile.mkdtemp(prefix="ringmail-webmail-")
    os.chmod(work, 0o755)  # Dovecot's mail processes run as rmbench
    rm = start_ringmail(work)
    dv_conf = None
    failures = []
    try:
        dv_conf = start_dovecot(work)
        print("== servers up; filling both", flush=True)
        fill(RM_IMAP)
        fill(DV_IMAP)
        print("== Roundcube against each", flush=True)
        ours = lists(RM_IMAP, work)
        theirs = lists(DV_IMAP, work)
        for k in [k for k in ours if k != "caps"]:
            status = "same" if ours[k] == theirs[k] else "DIFFERENT"
            print(f"{k:12} ringmail {ours[k]}\n{'':12} Dovecot  {theirs[k]}  {status}")
            if ours[k] != theirs[k]:
                failures.append(k)
        # Sorted by subject: "apples" (5, and its reply 10) first, "[build]"
        # by "Nightly", the encoded "Éclairs" after "budget", "Re:" replies
        # next to what they answer.
        if ours["subject ASC"][:2] != ["5", "10"]:
            failures.append("subject order")
        nested = {u: depth for u, depth in ours["threads"]}
        if not (nested.get("1") == 0 and nested.get("3") == 1 and nested.get("6") == 2 and nested.get("10") == 1):
            failures.append(f"reply chain not nested: {nested}")
    finally:
        rm.terminate()
        rm.wait()
        if dv_conf:
            subprocess.run(["dovecot", "-c", dv_conf, "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if failures:
        print("FAILED:", ", ".join(failures))
        sys.exit(1)
    print("Roundcube: the same lists on ringmail and Dovecot, threads nested")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
