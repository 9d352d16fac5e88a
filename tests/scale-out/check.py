"""Three ringmail backends behind nginx's mail proxy (issue 18), each host
in its own network namespace (tests/scale-out/netns.sh builds them):

- backends b1 b2 b3 (10.77.0.11-13) share the users and the cluster map;
  b1 also answers nginx's auth_http and Postfix's socketmap;
- nginx (10.77.0.10) terminates TLS (993, and STARTTLS on 143), asks
  auth_http where each user lives, and opens the backend connection with a
  PROXY header (`proxy_protocol on;`), which the backends require from it;
- the client is outside (10.77.0.1).

Checked: 1,000 users log in through nginx and each lands on the backend
the map gives (its mail appears there and nowhere else); Postfix's socketmap
client (postmap -q) gets each recipient's owner; STARTTLS works;
mail delivered by LMTP to any backend reaches the owner; `ringmail-load
session` through nginx runs without errors (sessions/s through the proxy
against direct); `ringmail user move` moves a user from b1 to b2 while
the load runs, LMTP delivers to them through b3 and a client of theirs
keeps reconnecting through nginx: every acknowledged message arrives once,
the client lands on b2; with one backend stopped its users get a temporary
error and everyone else works.
"""

import concurrent.futures
import imaplib
import threading
import json
import os
import socket
import ssl
import subprocess
import sys
import time

WORK = os.environ["WORK"]
RINGMAIL = os.environ["RINGMAIL_BIN"]
LOAD = os.environ["RINGMAIL_LOAD_BIN"]
USERS = 1000
ADDR = {"px": "10.77.0.10", "b1": "10.77.0.11", "b2": "10.77.0.12", "b3": "10.77.0.13"}
procs = {}


def ns(host, args, **kw):
    return ["ip", "netns", "exec", f"rm-{host}", *args]


def wait_port(host, port, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"FAIL: {what} did not open {host}:{port}")


def start_backends():
    users = "".join(f"user{i}:{{PLAIN}}pass\n" for i in range(USERS))
    cmap = "".join(f'[[backend]]\nname = "{b}"\nimap = "{ADDR[b]}:143"\nlmtp = "{ADDR[b]}:24"\ncontrol = "{ADDR[b]}:4190"\n'
                   for b in ("b1", "b2", "b3"))
    with open(f"{WORK}/cluster.toml", "w") as f:
        f.write(cmap)
    with open(f"{WORK}/cluster.secret", "w") as f:
        f.write("netns-test-secret-" + os.urandom(8).hex())
    for b in ("b1", "b2", "b3"):
        d = f"{WORK}/{b}"
        os.makedirs(d, mode=0o700)
        with open(f"{d}/users", "w") as f:
            f.write(users)
        extra = f'auth_http = "{ADDR[b]}:9180"\nsocketmap = "{ADDR[b]}:9181"\n' if b == "b1" else ""
        with open(f"{d}/ringmail.toml", "w") as f:
            f.write(f"""data_dir = "{d}"
[imap]
listen = ["{ADDR[b]}:143"]
imaps = []
# nginx logs in for its clients over cleartext: its address may; the
# client's own (10.77.0.1) for the direct load comparison.
cleartext_networks = ["10.77.0.10/32", "10.77.0.1/32"]
[lmtp]
listen = ["{ADDR[b]}:24"]
[pop3]
listen = []
pop3s = []
[limits]
max_connections_per_ip = 100000
[proxy]
trusted = ["10.77.0.10/32"]
[cluster]
file = "{WORK}/cluster.toml"
self = "{b}"
secret_file = "{WORK}/cluster.secret"
{extra}""")
        log = open(f"{d}/serve.log", "w")
        procs[b] = subprocess.Popen(ns(b, [RINGMAIL, "serve", "--config", f"{d}/ringmail.toml"]), stdout=log, stderr=log)
    for b in ("b1", "b2", "b3"):
        wait_port(ADDR[b], 143, f"backend {b}")
    wait_port(ADDR["b1"], 9180, "auth_http")
    # A server outside the cluster with the same users, for the direct
    # comparison (a backend refuses the users of the others).
    d = f"{WORK}/solo"
    os.makedirs(d, mode=0o700)
    with open(f"{d}/users", "w") as f:
        f.write(users)
    with open(f"{d}/ringmail.toml", "w") as f:
        f.write(f'data_dir = "{d}"\n[imap]\nlisten = ["{ADDR["b1"]}:1143"]\nimaps = []\ncleartext_networks = ["10.77.0.1/32"]\n'
                f'[lmtp]\nlisten = []\n[pop3]\nlisten = []\npop3s = []\n[limits]\nmax_connections_per_ip = 100000\n')
    log = open(f"{d}/serve.log", "w")
    procs["solo"] = subprocess.Popen(ns("b1", [RINGMAIL, "serve", "--config", f"{d}/ringmail.toml"]), stdout=log, stderr=log)
    wait_port(ADDR["b1"], 1143, "the solo server")


def start_nginx():
    d = f"{WORK}/px"
    os.makedirs(f"{d}/logs")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=mail.test", "-keyout", f"{d}/key.pem", "-out", f"{d}/cert.pem"], check=True, capture_output=True)
    with open(f"{d}/nginx.conf", "w") as f:
        f.write(f"""load_module /usr/lib/nginx/modules/ngx_mail_module.so;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/logs/error.log info;
events {{ worker_connections 8192; }}
mail {{
    server_name mail.test;
    auth_http {ADDR['b1']}:9180/auth;
    proxy_pass_error_message on;
    imap_auth plain login;
    ssl_certificate {d}/cert.pem;
    ssl_certificate_key {d}/key.pem;
    server {{
        listen {ADDR['px']}:143;
        protocol imap;
        starttls on;
        proxy_protocol on;
    }}
    server {{
        listen {ADDR['px']}:993 ssl;
        protocol imap;
        proxy_protocol on;
    }}
}}
""")
    r = subprocess.run(ns("px", ["nginx", "-c", f"{d}/nginx.conf", "-p", d]), capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("FAIL: nginx: " + r.stderr)
    wait_port(ADDR["px"], 993, "nginx")


def home_of(user):
    """The backend auth_http names for `user`, asked as nginx asks."""
    s = socket.create_connection((ADDR["b1"], 9180), timeout=10)
    s.sendall(f"GET /auth HTTP/1.0\r\nAuth-Method: plain\r\nAuth-User: {user}\r\nAuth-Pass: pass\r\nAuth-Protocol: imap\r\n"
              f"Auth-Login-Attempt: 1\r\nClient-IP: 10.77.0.1\r\n\r\n".encode())
    r = b""
    while chunk := s.recv(4096):
        r += chunk
    for line in r.decode().split("\r\n"):
        if line.startswith("Auth-Server: "):
            ip = line.split(": ")[1]
            return next(b for b, a in ADDR.items() if a == ip)
    raise SystemExit(f"FAIL: auth_http for {user}: {r!r}")


def tls():
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    return c


def login_and_mark(user):
    m = imaplib.IMAP4_SSL(ADDR["px"], 993, ssl_context=tls(), timeout=30)
    m.login(user, "pass")
    typ, _ = m.append("INBOX", None, None, f"Subject: marker for {user}\r\n\r\n{user}\r\n".encode())
    assert typ == "OK", typ
    m.logout()


def where_is(user):
    return [b for b in ("b1", "b2", "b3") if os.path.isdir(f"{WORK}/{b}/mail/{user}")]


def messages_via_proxy(user):
    m = imaplib.IMAP4(ADDR["px"], 143, timeout=30)
    m.starttls(ssl_context=tls())
    m.login(user, "pass")
    typ, data = m.status("INBOX", "(MESSAGES)")
    m.logout()
    return int(data[0].decode().split("MESSAGES ")[1].rstrip(")"))


def lmtp_deliver(host, users):
    s = socket.create_connection((host, 24), timeout=30)
    f = s.makefile("rb")
    def line():
        return f.readline().decode()
    assert line().startswith("220")
    s.sendall(b"LHLO test\r\n")
    while line().startswith("250-"):
        pass
    s.sendall(b"MAIL FROM:<sender@example.org>\r\n")
    assert line().startswith("250")
    for u in users:
        s.sendall(f"RCPT TO:<{u}@example.com>\r\n".encode())
        assert line().startswith("250")
    s.sendall(b"DATA\r\n")
    assert line().startswith("354")
    s.sendall(b"Subject: delivered\r\n\r\nto every backend's users\r\n.\r\n")
    answers = [line() for _ in users]
    assert all(a.startswith("250") for a in answers), answers
    s.sendall(b"QUIT\r\n")


def load(target, name, users=USERS, duration="5s"):
    out = f"{WORK}/load-{name}.json"
    r = subprocess.run([LOAD, "session", "--target", target, "--users", str(users), "--password", "pass",
                        "--connections", "16", "--duration", duration, "--quiet", "--json", out], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise SystemExit(f"FAIL: ringmail-load {name}: {r.stdout}\n{r.stderr}")
    return json.load(open(out))


def deliver_one(host, user, subject):
    """One LMTP transaction; the reply to DATA (or to RCPT if refused)."""
    s = socket.create_connection((host, 24), timeout=30)
    f = s.makefile("rb")
    line = lambda: f.readline().decode()
    line()
    s.sendall(b"LHLO test\r\n")
    while line().startswith("250-"):
        pass
    s.sendall(b"MAIL FROM:<sender@example.org>\r\n")
    line()
    s.sendall(f"RCPT TO:<{user}@example.com>\r\n".encode())
    r = line()
    if r.startswith("250"):
        s.sendall(b"DATA\r\n")
        line()
        s.sendall(f"Subject: {subject}\r\n\r\nbody\r\n.\r\n".encode())
        r = line()
    s.close()
    return r


def move_under_load(users, homes):
    """`ringmail user move` of one of b1's users to b2 while the load runs
    (for the other users), mail for them arrives through b3 (retried on a
    temporary failure, as Postfix would), and a client of theirs works
    through nginx, reconnecting when told to."""
    idx = max(i for i, u in enumerate(users) if homes[u] == "b1")
    user = users[idx]
    before = messages_via_proxy(user)
    stop = threading.Event()
    acked, deferred, sessions, byes = [], [0], [0], [0]

    def deliveries():
        i = 0
        while not stop.is_set():
            subject = f"live{i}"
            r = deliver_one(ADDR["b3"], user, subject)
            if r.startswith("250"):
                acked.append(subject)
                i += 1
            else:
                assert r.startswith("4"), r
                deferred[0] += 1
                time.sleep(0.05)

    def client():
        while not stop.is_set():
            try:
                m = imaplib.IMAP4_SSL(ADDR["px"], 993, ssl_context=tls(), timeout=30)
                m.login(user, "pass")
                m.select("INBOX")
                for _ in range(20):
                    m.noop()
                    time.sleep(0.01)
                m.logout()
                sessions[0] += 1
            except (imaplib.IMAP4.error, imaplib.IMAP4.abort, OSError):
                byes[0] += 1
                time.sleep(0.1)

    threads = [threading.Thread(target=deliveries), threading.Thread(target=client)]
    for t in threads:
        t.start()
    loaded = {}
    lt = threading.Thread(target=lambda: loaded.update(load(f"{ADDR['px']}:143", "during-move", users=idx, duration="8s")))
    lt.start()
    time.sleep(2)
    r = subprocess.run([RINGMAIL, "user", "move", user, "--to", "b2", "--cluster", f"{WORK}/cluster.toml",
                        "--cluster-secret", f"{WORK}/cluster.secret"], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise SystemExit(f"FAIL: ringmail user move: {r.stdout}{r.stderr}")
    time.sleep(2)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    lt.join(timeout=120)
    assert loaded.get("errors") == 0, loaded.get("error_kinds")
    assert where_is(user) == ["b2"], where_is(user)
    m = imaplib.IMAP4(ADDR["px"], 143, timeout=30)
    m.starttls(ssl_context=tls())
    m.login(user, "pass")
    m.select("INBOX", readonly=True)
    typ, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    subjects = [p[1].decode().strip() for p in data if isinstance(p, tuple)]
    m.logout()
    for s in acked:
        assert subjects.count(f"Subject: {s}") == 1, (s, subjects.count(f"Subject: {s}"))
    assert len(subjects) == before + len(acked), (len(subjects), before, len(acked))
    print(f"ok: {r.stdout.strip()}; meanwhile {len(acked)} deliveries through b3 acknowledged (each there once, "
          f"{deferred[0]} deferred and retried), {sessions[0]} sessions of theirs through nginx ({byes[0]} refused or ended "
          f"during the switch), and ringmail-load through nginx: {loaded['sessions_per_sec']:.0f} sessions/s, no errors")


def main():
    start_backends()
    start_nginx()
    # b1 checks the others every 2 s; until it has seen them up, their
    # users get a temporary error.
    deadline = time.time() + 20
    while True:
        try:
            [home_of(f"user{i}") for i in range(20)]
            break
        except SystemExit:
            if time.time() > deadline:
                raise
            time.sleep(0.5)
    print("ok: three backends and nginx up, each in its namespace")

    users = [f"user{i}" for i in range(USERS)]
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        homes = dict(zip(users, ex.map(home_of, users)))
        spread = {b: sum(1 for h in homes.values() if h == b) for b in ("b1", "b2", "b3")}
        print(f"ok: auth_http names a home for every user: {spread}")
        assert all(250 < n < 420 for n in spread.values()), spread
        list(ex.map(login_and_mark, users))
    wrong = [(u, homes[u], where_is(u)) for u in users if where_is(u) != [homes[u]]]
    assert not wrong, wrong[:10]
    print(f"ok: {USERS} logins through nginx (TLS on 993) each landed on the user's backend, and only there")

    # Postfix's own socketmap client asks b1 where mail goes.
    pf = f"{WORK}/postfix"
    os.makedirs(pf)
    with open(f"{pf}/main.cf", "w") as f:
        f.write("compatibility_level = 3.6\n")
    def postmap(key):
        r = subprocess.run(["postmap", "-c", pf, "-q", key, f"socketmap:inet:{ADDR['b1']}:9181:transport"], capture_output=True, text=True, timeout=30)
        return r.returncode, r.stdout.strip()
    for u in users[:50]:
        assert postmap(f"{u}@example.com") == (0, f"lmtp:inet:{ADDR[homes[u]]}:24"), (u, homes[u], postmap(f"{u}@example.com"))
    assert postmap("nobody@example.com")[0] == 1 and postmap("example.com")[0] == 1
    print("ok: Postfix's socketmap client (postmap -q) gets each recipient's owner, and nothing for strangers")

    # LMTP to one backend reaches every owner.
    sample = users[:30]
    lmtp_deliver(ADDR["b2"], sample)
    counts = [messages_via_proxy(u) for u in sample]
    assert counts == [2] * len(sample), counts
    print("ok: LMTP to b2 for users of all three backends: each copy on its owner (read through nginx with STARTTLS)")

    via = load(f"{ADDR['px']}:143", "proxy")
    direct = load(f"{ADDR['b1']}:1143", "direct")
    assert via["errors"] == 0 and direct["errors"] == 0, (via["error_kinds"], direct["error_kinds"])
    print(f"ok: ringmail-load session without errors: {via['sessions_per_sec']:.0f} sessions/s through nginx, "
          f"{direct['sessions_per_sec']:.0f} direct to one server")
    m = imaplib.IMAP4(ADDR["b2"], 143, timeout=30)
    other = next(u for u in users if homes[u] == "b1")
    try:
        m.login(other, "pass")
        raise SystemExit(f"FAIL: b2 served {other}, whose mail lives on b1")
    except imaplib.IMAP4.error as e:
        assert "UNAVAILABLE" in str(e), e
    print(f"ok: b2 refuses {other} (b1's) with NO [UNAVAILABLE]")

    move_under_load(users, homes)

    # One backend stops: its users get a temporary error, the others carry on.
    procs["b3"].terminate()
    procs["b3"].wait(timeout=30)
    time.sleep(5)  # two health checks
    down = next(u for u in users if homes[u] == "b3")
    up = next(u for u in users if homes[u] == "b1")
    m = imaplib.IMAP4_SSL(ADDR["px"], 993, ssl_context=tls(), timeout=30)
    try:
        m.login(down, "pass")
        raise SystemExit(f"FAIL: {down} logged in with b3 down")
    except imaplib.IMAP4.error as e:
        refused = str(e)
    assert "Temporary" in refused, refused
    login_and_mark(up)
    print(f"ok: b3 stopped: {down} gets \"{refused}\", {up} still works")
    print("PASS")


if __name__ == "__main__":
    try:
        main()
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
        for p in procs.values():
            try:
                p.wait(timeout=30)
            except Exception:
                p.kill()
