"""Postfix's submission service authenticating against ringmail
(tests/submission/postfix.sh sets it up):

- a message sent with smtplib (STARTTLS, then AUTH PLAIN, and again with
  AUTH LOGIN) with the user's ringmail password is accepted and relayed
  (it reaches the SMTP sink behind Postfix);
- a wrong password is refused (535) and nothing is relayed;
- before STARTTLS no AUTH is offered (smtpd_tls_auth_only);
- the client saves its copy to the Sent folder over IMAP, logged in with
  the same password.
"""

import imaplib
import os
import smtplib
import socket
import ssl
import threading
import time

IMAP, SUBMISSION, SINK = int(os.environ["IMAP"]), int(os.environ["SUBMISSION"]), int(os.environ["SINK"])
received = []


def sink():
    """A minimal SMTP server that keeps what Postfix relays."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", SINK))
    srv.listen(8)
    while True:
        c, _ = srv.accept()
        f = c.makefile("rb")
        c.sendall(b"220 sink ESMTP\r\n")
        data = None
        while True:
            line = f.readline()
            if not line:
                break
            cmd = line.strip().upper()
            if data is not None:
                if line in (b".\r\n", b".\n"):
                    received.append(b"".join(data))
                    data = None
                    c.sendall(b"250 2.0.0 kept\r\n")
                else:
                    data.append(line)
            elif cmd.startswith(b"EHLO"):
                c.sendall(b"250-sink\r\n250 8BITMIME\r\n")
            elif cmd == b"DATA":
                data = []
                c.sendall(b"354 go on\r\n")
            elif cmd == b"QUIT":
                c.sendall(b"221 bye\r\n")
                break
            else:
                c.sendall(b"250 ok\r\n")
        c.close()


def wait_port(port):
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"FAIL: port {port} did not open")


def tls():
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    return c


def message(subject):
    return f"From: ann@example.com\r\nTo: bob@example.org\r\nSubject: {subject}\r\n\r\nsent through Postfix\r\n"


def submit(password, mechanism, subject):
    s = smtplib.SMTP("127.0.0.1", SUBMISSION, timeout=30)
    s.ehlo("client.test")
    assert not s.has_extn("auth"), "AUTH offered before STARTTLS"
    s.starttls(context=tls())
    s.ehlo("client.test")
    assert "PLAIN" in s.esmtp_features.get("auth", "") and "LOGIN" in s.esmtp_features["auth"], s.esmtp_features
    try:
        s.user, s.password = "ann", password
        code, resp = s.auth(mechanism, getattr(s, f"auth_{mechanism.lower()}"), initial_response_ok=True)
        s.sendmail("ann@example.com", ["bob@example.org"], message(subject))
        return code
    finally:
        try:
            s.quit()
        except smtplib.SMTPServerDisconnected:
            pass


def main():
    threading.Thread(target=sink, daemon=True).start()
    wait_port(IMAP)
    wait_port(SUBMISSION)
    assert submit("sesame", "PLAIN", "plain") == 235
    print("ok: AUTH PLAIN after STARTTLS with ringmail's password: accepted (235)")
    assert submit("sesame", "LOGIN", "login") == 235
    print("ok: AUTH LOGIN likewise")
    try:
        submit("wrong", "PLAIN", "refused")
        raise SystemExit("FAIL: a wrong password was accepted")
    except smtplib.SMTPAuthenticationError as e:
        assert e.smtp_code == 535, e
    print("ok: a wrong password is refused (535)")
    deadline = time.time() + 30
    while time.time() < deadline and len(received) < 2:
        time.sleep(0.2)
    subjects = sorted(l.decode().strip() for m in received for l in m.splitlines(True) if l.startswith(b"Subject:"))
    assert subjects == ["Subject: login", "Subject: plain"], subjects
    print("ok: Postfix relayed exactly the two authenticated messages")
    m = imaplib.IMAP4("127.0.0.1", IMAP, timeout=30)
    m.login("ann", "sesame")
    typ, _ = m.append("Sent", "(\\Seen)", None, message("plain").encode())
    assert typ == "OK", typ
    typ, data = m.status("Sent", "(MESSAGES)")
    assert b"MESSAGES 1" in data[0], data
    m.logout()
    print("ok: the client saved its copy to Sent over IMAP with the same password")
    print("PASS")


if __name__ == "__main__":
    main()
