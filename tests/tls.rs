//! TLS: implicit TLS and STARTTLS with real clients (Python's imaplib,
//! smtplib and ssl, `openssl s_client`), hostile handshakes, the cleartext
//! password policy, and certificate reload.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{python, TestServer};
use ringmail::config::{Config, Driver};

fn server(tweak: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start(Driver::Auto, |c| {
        c.imap.imaps = vec!["127.0.0.1:0".parse().unwrap()];
        c.tls.handshake_timeout = Duration::from_millis(800);
        tweak(c);
    })
}

/// Python with an ssl context that accepts the server's self-signed certificate.
const PY_TLS: &str = "import imaplib, smtplib, ssl, hashlib\n\
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE\n";

fn py(script: &str, addrs: &[SocketAddr]) -> String {
    python(&format!("{PY_TLS}{script}"), &addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>())
}

#[test]
fn imaplib_over_implicit_tls_and_starttls_logs_in_and_fetches() {
    let ts = server(|_| {});
    let out = py(
        "m = imaplib.IMAP4_SSL(host, port, ssl_context=ctx)\n\
         print('alpn', m.sock.selected_alpn_protocol(), m.sock.version())\n\
         print('caps-tls', ' '.join(m.capabilities))\n\
         m.login('joe', 'secret')\n\
         print(m.append('INBOX', None, None, b'Subject: over tls\\r\\n\\r\\n' + b'x' * 100000 + b'\\r\\n')[0])\n\
         m.select('INBOX')\n\
         typ, data = m.fetch('1', '(BODY.PEEK[])')\n\
         print('fetched', len(data[0][1]))\n\
         m.logout()\n\
         h, p = sys.argv[2].rsplit(':', 1)\n\
         m = imaplib.IMAP4(h, int(p))\n\
         print('caps-plain', ' '.join(m.capabilities))\n\
         m.starttls(ssl_context=ctx)\n\
         print('caps-after', ' '.join(m.capabilities))\n\
         m.login('joe', 'secret')\n\
         m.select('INBOX')\n\
         typ, data = m.fetch('1', '(BODY.PEEK[HEADER.FIELDS (SUBJECT)])')\n\
         print('header', data[0][1])\n\
         m.logout()\n",
        &[ts.imaps.unwrap(), ts.addr],
    );
    assert!(out.contains("alpn None TLSv1.3"), "{out}");
    let line = |p: &str| out.lines().find(|l| l.starts_with(p)).unwrap_or_else(|| panic!("no {p} in {out}")).to_string();
    assert!(!line("caps-tls").contains("STARTTLS"), "{out}");
    assert!(line("caps-plain").contains(" STARTTLS"), "loopback cleartext offers STARTTLS: {out}");
    assert!(!line("caps-after").contains("STARTTLS"), "RFC 9051 6.2.1: not offered once active: {out}");
    assert!(out.contains("OK\nfetched 100023\n"), "{out}");
    assert!(out.contains("header b'Subject: over tls\\r\\n\\r\\n'"), "{out}");
}

#[test]
fn alpn_imap_is_selected_when_offered() {
    let ts = server(|_| {});
    let out = py(
        "ctx.set_alpn_protocols(['imap'])\n\
         s = ctx.wrap_socket(socket.create_connection((host, port)))\n\
         print(s.selected_alpn_protocol(), s.recv(100))\n",
        &[ts.imaps.unwrap()],
    );
    assert!(out.starts_with("imap b'* OK "), "{out}");
}

#[test]
fn openssl_s_client_starttls_imap() {
    let ts = server(|_| {});
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &ts.addr.to_string(), "-starttls", "imap", "-quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl is needed for this test (.ci/run installs it)");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"a LOGIN joe secret\r\nb SELECT INBOX\r\nc LOGOUT\r\n").unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut out = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    while !out.contains("c OK") && Instant::now() < deadline {
        match stdout.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    assert!(out.contains("a OK [CAPABILITY"), "{out}");
    assert!(out.contains("b OK [READ-WRITE]"), "{out}");
    assert!(out.contains("c OK"), "{out}");
}

/// A plain client that logs in and out, to show others are unaffected.
fn others_still_served(ts: &TestServer) {
    let mut c = ts.client();
    c.login("ann", "pw");
    assert!(c.cmd("z", "NOOP").last().unwrap().starts_with("z OK"));
}

#[test]
fn garbage_instead_of_a_client_hello_is_dropped() {
    let ts = server(|_| {});
    let mut s = TcpStream::connect(ts.imaps.unwrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"a LOGIN joe secret\r\nGET / HTTP/1.0\r\n\r\n").unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(start.elapsed() < Duration::from_secs(4), "closed at once, not by the timeout");
    // At most a TLS alert record (type 21), never IMAP text.
    assert!(got.is_empty() || got[0] == 21, "{got:?}");
    others_still_served(&ts);
}

#[test]
fn a_handshake_that_stops_halfway_times_out_and_counts_toward_the_ip_limit() {
    let ts = server(|c| c.limits.max_connections_per_ip = 3);
    // The first bytes of a ClientHello, then nothing.
    let stalled: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = TcpStream::connect(ts.imaps.unwrap()).unwrap();
            s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01]).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    // The limit is full of half-done handshakes: a fourth connection is refused.
    let mut c = ts.client();
    let l = c.line();
    assert!(l.starts_with("* BYE"), "{l}");
    // The handshake timeout (800 ms here) frees them.
    let start = Instant::now();
    for mut s in stalled {
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    }
    let waited = start.elapsed();
    assert!(waited < Duration::from_secs(4), "cut off after the handshake timeout, not later: {waited:?}");
    std::thread::sleep(Duration::from_millis(100));
    others_still_served(&ts);
}

#[test]
fn commands_pipelined_after_starttls_are_not_obeyed_rfc9051_6_2_1() {
    let ts = server(|c| c.imap.loopback_is_trusted = false);
    let out = py(
        "s = socket.create_connection((host, port)); f = s.makefile('rb')\n\
         print(f.readline())\n\
         s.sendall(b'a STARTTLS\\r\\nb LOGIN joe secret\\r\\nc SELECT INBOX\\r\\n')\n\
         print(f.readline())\n\
         t = ctx.wrap_socket(s); g = t.makefile('rb')\n\
         t.sendall(b'd CAPABILITY\\r\\ne SELECT INBOX\\r\\n')\n\
         for _ in range(3): print(g.readline())\n",
        &[ts.addr],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[1].starts_with("b'a OK"), "{out}");
    assert!(lines[2].starts_with("b'* CAPABILITY") && lines[2].contains("AUTH=PLAIN"), "{out}");
    assert!(lines[3].starts_with("b'd OK"), "{out}");
    // Still not authenticated: the pipelined LOGIN was discarded.
    assert!(lines[4].starts_with("b'e BAD") || lines[4].starts_with("b'e NO"), "{out}");
    assert!(!out.contains("b OK") && !out.contains("c OK"), "{out}");
}

#[test]
fn cleartext_login_is_refused_off_trusted_networks() {
    // Loopback treated as untrusted stands in for a remote client.
    let ts = server(|c| c.imap.loopback_is_trusted = false);
    let mut c = ts.client();
    let greeting = c.line();
    assert!(greeting.contains("LOGINDISABLED") && greeting.contains("STARTTLS"), "{greeting}");
    assert!(!greeting.contains("AUTH="), "no mechanism offered in the clear: {greeting}");
    let r = c.cmd("a", "LOGIN joe secret");
    assert!(r.last().unwrap().starts_with("a NO [PRIVACYREQUIRED]"), "{r:?}");
    let r = c.cmd("b", "AUTHENTICATE PLAIN AGpvZQBzZWNyZXQ=");
    assert!(r.last().unwrap().starts_with("b NO [PRIVACYREQUIRED]"), "{r:?}");
    // The same user over TLS is fine.
    let out = py(
        "m = imaplib.IMAP4(host, port)\n\
         try:\n    m.login('joe', 'secret'); print('cleartext login accepted')\n\
         except imaplib.IMAP4.error as e: print('refused', e)\n\
         m.starttls(ssl_context=ctx)\n\
         print(m.login('joe', 'secret')[0])\n",
        &[ts.addr],
    );
    assert!(out.contains("refused") && out.contains("PRIVACYREQUIRED") && out.ends_with("OK\n"), "{out}");
}

#[test]
fn cleartext_networks_allow_login_without_tls() {
    let ts = server(|c| {
        c.imap.loopback_is_trusted = false;
        c.imap.cleartext_networks = vec!["127.0.0.0/8".parse().unwrap()];
    });
    let mut c = ts.client();
    c.login("joe", "secret");
}

#[test]
fn lmtp_and_smtp_starttls_rfc3207() {
    let ts = server(|c| {
        c.smtp.listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.delivery.local_domains = vec!["example.org".into()];
    });
    let out = py(
        "l = smtplib.LMTP(host, port)\n\
         print('lmtp', l.ehlo()[0], l.has_extn('starttls'), l.starttls(context=ctx)[0], l.ehlo()[0], l.has_extn('starttls'))\n\
         print(l.sendmail('a@b', ['joe'], b'Subject: lmtp tls\\r\\n\\r\\nx\\r\\n'))\n\
         h, p = sys.argv[2].rsplit(':', 1)\n\
         s = smtplib.SMTP(h, int(p))\n\
         s.ehlo(); print('smtp', s.starttls(context=ctx)[0])\n\
         print(s.sendmail('a@b', ['joe@example.org'], b'Subject: smtp tls\\r\\n\\r\\nx\\r\\n'))\n",
        &[ts.lmtp.unwrap(), ts.smtp.unwrap()],
    );
    assert!(out.contains("lmtp 250 True 220 250 False\n{}\n"), "{out}");
    assert!(out.contains("smtp 220\n{}\n"), "{out}");
    let mut c = ts.client();
    c.login("joe", "secret");
    c.cmd("s", "SELECT INBOX");
    let r = c.cmd("f", "FETCH 1:2 BODY.PEEK[HEADER]");
    let all = r.concat();
    assert!(all.contains("Subject: lmtp tls") && all.contains("Subject: smtp tls"), "{all}");
    assert!(all.contains("with ESMTPS"), "RFC 3848 trace: {all}");
}

/// The leaf certificate's SHA-256 as the server logs it (AB:CD:...), from
/// what a client receives.
fn served_fingerprint(addr: SocketAddr) -> String {
    let out = py(
        "s = ctx.wrap_socket(socket.create_connection((host, port)))\n\
         print(':'.join('%02X' % b for b in hashlib.sha256(s.getpeercert(True)).digest()))\n",
        &[addr],
    );
    out.trim().to_string()
}

#[test]
fn sighup_reloads_the_certificate_and_open_sessions_keep_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("users"), "joe:{PLAIN}secret\n").unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let write_cert = |name: &str| {
        let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        std::fs::write(&cert, c.cert.pem()).unwrap();
        std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
        ringmail::certs::fingerprint(c.cert.der())
    };
    let first = write_cert("one.example");
    let config = dir.path().join("ringmail.toml");
    std::fs::write(
        &config,
        format!(
            "[imap]\nlisten = [\"127.0.0.1:0\"]\nimaps = [\"127.0.0.1:0\"]\n[lmtp]\nlisten = []\n[pop3]\nlisten = []\npop3s = []\n[tls]\ncert = {:?}\nkey = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringmail"))
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .arg("--log-format")
        .arg("json")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let imaps = wait_for_imaps(&mut stderr);
    assert_eq!(served_fingerprint(imaps), first);

    // A session opened before the reload.
    let mut old = ssl_session(imaps);
    let second = write_cert("two.example");
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGHUP) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_fingerprint(imaps) != second {
        assert!(Instant::now() < deadline, "the new certificate was not served after SIGHUP");
        std::thread::sleep(Duration::from_millis(50));
    }
    old.stdin.as_mut().unwrap().write_all(b"a LOGIN joe secret\nq\n").unwrap();
    let out = old.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("a OK"), "the old session still works: {out:?}");

    // A broken certificate does not replace the working one.
    std::fs::write(&cert, "garbage").unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(served_fingerprint(imaps), second);

    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

/// Reads the server's JSON log until it says where IMAPS listens.
fn wait_for_imaps(stderr: &mut impl std::io::BufRead) -> SocketAddr {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "server exited");
        if let Some(rest) = line.split("IMAPS: [").nth(1) {
            return rest.split(']').next().unwrap().parse().unwrap();
        }
    }
}

/// A Python process holding one TLS session open; each stdin line is sent
/// as a command until `q`, and replies are printed.
fn ssl_session(addr: SocketAddr) -> std::process::Child {
    let mut child = Command::new("python3")
        .args(["-c", &format!(
            "{PY_TLS}import socket, sys\n\
             s = ctx.wrap_socket(socket.create_connection(('{}', {})))\n\
             f = s.makefile('rb'); sys.stdout.write(f.readline().decode()); sys.stdout.flush()\n\
             for line in sys.stdin:\n    line = line.strip()\n    if line == 'q': break\n    s.sendall(line.encode() + b'\\r\\n'); print(f.readline().decode().strip())\n",
            addr.ip(),
            addr.port()
        )])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the greeting, so the handshake is done before the reload.
    let mut b = [0u8; 4];
    child.stdout.as_mut().unwrap().read_exact(&mut b).unwrap();
    assert_eq!(&b, b"* OK");
    child
}

#[test]
fn many_tls_clients_at_once() {
    let ts = server(|_| {});
    let addr = ts.imaps.unwrap();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            std::thread::spawn(move || {
                for _ in 0..5 {
                    let out = py("m = imaplib.IMAP4_SSL(host, port, ssl_context=ctx)\nprint(m.login('joe', 'secret')[0]); m.logout()\n", &[addr]);
                    assert_eq!(out, "OK\n", "client {i}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// curl's IMAP client (RFC 5092 URLs): list, fetch by UID, and over
/// implicit TLS and STARTTLS; it is what many scripts and monitoring checks use.
#[test]
fn curl_imap_urls_list_fetch_and_use_tls() {
    let ts = server(|_| {});
    let mut c = common::Client::connect(ts.addr);
    c.login("joe", "secret");
    let r = c.cmd("a", "APPEND INBOX {31+}\r\nSubject: via curl\r\n\r\nhello curl");
    assert!(r.last().unwrap().starts_with("a OK"), "{r:?}");
    let curl = |url: String, extra: &[&str]| {
        let out = Command::new("curl")
            .args(["-s", "-S", "--max-time", "10", "-u", "joe:secret"])
            .args(extra)
            .arg(&url)
            .output()
            .expect("curl is needed (.ci/run installs it)");
        assert!(out.status.success(), "{url}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let list = curl(format!("imap://{}/", ts.addr), &[]);
    assert!(list.contains("INBOX") && list.contains("Sent"), "{list}");
    let msg = curl(format!("imap://{}/INBOX;UID=1", ts.addr), &[]);
    assert_eq!(msg, "Subject: via curl\r\n\r\nhello curl");
    let tls = curl(format!("imaps://{}/INBOX;UID=1", ts.imaps.unwrap()), &["-k"]);
    assert_eq!(tls, msg);
    let starttls = curl(format!("imap://{}/INBOX;UID=1", ts.addr), &["-k", "--ssl-reqd"]);
    assert_eq!(starttls, msg);
}
