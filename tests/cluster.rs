//! A server as one backend of a cluster, over loopback: the PROXY protocol
//! from a trusted proxy, nginx's auth_http answers, Postfix's socketmap.
//! (tests/scale-out/ runs the real nginx and several hosts.)

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{Client, TestServer};
use ringmail::cluster::proxy_header;
use ringmail::config::Driver;

const MAP: &str = "[[backend]]\nname = \"b1\"\nimap = \"127.0.0.1:1\"\nlmtp = \"127.0.0.1:2\"\n\
                   [[backend]]\nname = \"b2\"\nimap = \"127.0.0.2:143\"\nlmtp = \"127.0.0.2:24\"\n\
                   [[backend]]\nname = \"down\"\nimap = \"127.0.0.1:9\"\nlmtp = \"127.0.0.1:9\"\n\
                   [overrides]\nann = \"b1\"\nbob = \"b2\"\njoe = \"down\"\n";

/// A stand-in for backend b2: it greets as IMAP servers do (the health
/// check asks for that) and says nothing more.
fn greeting_backend() -> std::net::TcpListener {
    let l = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let accepting = l.try_clone().unwrap();
    std::thread::spawn(move || {
        for s in accepting.incoming().flatten() {
            let _ = (&s).write_all(b"* OK stand-in\r\n");
        }
    });
    l
}

/// A server that is backend b1 of MAP, with b2 answering on `b2`.
fn cluster_server(b2: &std::net::TcpListener) -> TestServer {
    let b2 = b2.local_addr().unwrap().to_string();
    TestServer::start(Driver::Auto, |c| {
        // The map lives in the data directory (removed with it).
        let map = c.data_dir.join("cluster.toml");
        std::fs::write(&map, MAP.replace("127.0.0.2:143", &b2)).unwrap();
        c.cluster.file = Some(map);
        c.cluster.self_name = Some("b1".into());
        c.cluster.auth_http = Some("127.0.0.1:0".parse().unwrap());
        c.cluster.socketmap = Some("127.0.0.1:0".parse().unwrap());
        c.delivery.local_domains = vec!["example.com".into()];
    })
}

fn auth_http(addr: SocketAddr, user: &str, pass: &str, attempt: u32) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /auth HTTP/1.0\r\nHost: localhost\r\nAuth-Method: plain\r\nAuth-User: {user}\r\nAuth-Pass: {pass}\r\n\
         Auth-Protocol: imap\r\nAuth-Login-Attempt: {attempt}\r\nClient-IP: 192.0.2.77\r\nClient-Host: [UNAVAILABLE]\r\n\r\n"
    )
    .unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    r
}

#[test]
fn auth_http_checks_passwords_and_names_each_users_backend() {
    let b2 = greeting_backend();
    let t = cluster_server(&b2);
    let addr = t.server.as_ref().unwrap().auth_http_addr.unwrap();
    let r = auth_http(addr, "ann", "pw", 1);
    assert!(r.contains("Auth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: 1\r\n"), "{r}");
    let r = auth_http(addr, "BOB", "pw", 1);
    let port = b2.local_addr().unwrap().port();
    assert!(r.contains(&format!("Auth-Status: OK\r\nAuth-Server: 127.0.0.2\r\nAuth-Port: {port}\r\n")), "{r}");
    let r = auth_http(addr, "ann", "wrong", 1);
    assert!(r.contains("Auth-Status: Invalid login or password\r\nAuth-Wait: 1\r\n"), "{r}");
    let r = auth_http(addr, "ann", "wrong", 10);
    assert!(r.contains("Invalid login") && !r.contains("Auth-Wait"), "the tenth failure closes: {r}");
    // joe's backend does not answer (found by the health check).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = auth_http(addr, "joe", "secret", 1);
        if r.contains("Temporary server problem") {
            assert!(r.contains("Auth-Wait: 5\r\n"), "{r}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{r}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn socketmap(addr: SocketAddr, keys: &[&str]) -> Vec<String> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    for k in keys {
        let q = format!("transport {k}");
        write!(s, "{}:{q},", q.len()).unwrap();
        let mut b = Vec::new();
        let mut byte = [0u8];
        while !b.ends_with(b",") {
            s.read_exact(&mut byte).unwrap();
            b.push(byte[0]);
        }
        out.push(String::from_utf8(b).unwrap());
    }
    out
}

#[test]
fn socketmap_answers_the_lmtp_transport_of_each_recipients_backend() {
    let b2 = greeting_backend();
    let t = cluster_server(&b2);
    let addr = t.server.as_ref().unwrap().socketmap_addr.unwrap();
    let answers = socketmap(addr, &["bob@example.com", "ann@Example.COM", "nobody@example.com", "example.com", "bob@elsewhere.org"]);
    assert_eq!(answers, ["25:OK lmtp:inet:127.0.0.2:24,", "24:OK lmtp:inet:127.0.0.1:2,", "9:NOTFOUND ,", "9:NOTFOUND ,", "9:NOTFOUND ,"]);
}

#[test]
fn a_trusted_proxy_names_the_client_and_others_cannot() {
    let t = TestServer::start(Driver::Auto, |c| {
        c.proxy.trusted = vec!["127.0.0.1/32".parse().unwrap()];
        c.limits.max_connections_per_ip = 1;
    });
    let me = t.addr;
    let via = |client: &str| {
        let mut c = Client::connect(me);
        c.send_raw(proxy_header::v1(client.parse().unwrap(), me).as_bytes());
        c
    };
    // Two clients behind the proxy are two addresses for the limit...
    let mut a = via("192.0.2.1:4000");
    let mut b = via("192.0.2.2:4000");
    assert!(a.line().starts_with("* OK"));
    assert!(b.line().starts_with("* OK"));
    // ...and the same client twice is over its limit of one.
    let mut again = via("192.0.2.1:4001");
    assert_eq!(again.line(), "* BYE Too many connections from your IP\r\n");
    let r = a.cmd("L", "LOGIN joe secret");
    assert!(r.last().unwrap().starts_with("L OK"), "{r:?}");
    // From the trusted address without a header: closed, nothing said.
    let mut bare = TcpStream::connect(me).unwrap();
    bare.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    bare.write_all(b"x1 CAPABILITY\r\n").unwrap();
    let mut b = [0u8; 64];
    // Closed with bytes unread: a FIN or a reset, and no greeting either way.
    assert!(matches!(bare.read(&mut b), Ok(0) | Err(_)));
    // Version 2 works too.
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    v2.extend_from_slice(&[192, 0, 2, 3, 127, 0, 0, 1, 0x10, 0, 0, 143]);
    let mut c = Client::connect(me);
    c.send_raw(&v2);
    c.login("ann", "pw");
}

#[test]
fn a_proxy_header_from_an_untrusted_address_is_just_bad_input() {
    let t = TestServer::start(Driver::Auto, |c| c.proxy.trusted = vec!["192.0.2.0/24".parse().unwrap()]);
    let mut c = t.client();
    assert!(c.line().starts_with("* OK"));
    c.send_raw(proxy_header::v1("203.0.113.9:1".parse().unwrap(), t.addr).as_bytes());
    let l = c.line();
    assert!(l.starts_with("PROXY BAD") || l.starts_with("* BAD"), "{l}");
}

fn lmtp(addr: SocketAddr, rcpts: &[&str], body: &str) -> Vec<String> {
    let mut c = Client::connect(addr);
    assert!(c.line().starts_with("220"));
    c.send("LHLO test");
    while c.line().starts_with("250-") {}
    c.send("MAIL FROM:<sender@example.org>");
    assert!(c.line().starts_with("250"));
    let mut accepted = 0;
    let mut out = Vec::new();
    for r in rcpts {
        c.send(&format!("RCPT TO:<{r}>"));
        let l = c.line();
        accepted += usize::from(l.starts_with("250"));
        out.push(l);
    }
    if accepted > 0 {
        c.send("DATA");
        assert!(c.line().starts_with("354"));
        c.send_raw(body.as_bytes());
        c.send(".");
        out.extend((0..accepted).map(|_| c.line()));
    }
    out
}

fn messages(addr: SocketAddr, user: &str, pw: &str) -> usize {
    let mut c = Client::connect(addr);
    c.login(user, pw);
    let r = c.cmd("S", "STATUS INBOX (MESSAGES)");
    r[0].split("MESSAGES ").nth(1).unwrap().trim_end().trim_end_matches(')').parse().unwrap()
}

/// LMTP on one backend takes mail for every user and passes each copy to
/// its owner, answering with the owner's reply (given once it stored it).
#[test]
fn lmtp_passes_mail_to_the_owning_backend() {
    let b2 = TestServer::start(Driver::Auto, |_| {});
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("cluster.toml");
    std::fs::write(
        &map,
        format!(
            "[[backend]]\nname = \"b1\"\nimap = \"127.0.0.1:1\"\nlmtp = \"127.0.0.1:2\"\n\
             [[backend]]\nname = \"b2\"\nimap = \"{}\"\nlmtp = \"{}\"\n[overrides]\nann = \"b2\"\njoe = \"b1\"\n",
            b2.addr,
            b2.lmtp.unwrap()
        ),
    )
    .unwrap();
    let b1 = TestServer::start(Driver::Auto, |c| {
        c.cluster.file = Some(map.clone());
        c.cluster.self_name = Some("b1".into());
    });
    let r = lmtp(b1.lmtp.unwrap(), &["ann@example.com", "joe@example.com", "nobody@example.com"], "Subject: hi\r\n\r\nbody\r\n");
    assert!(r[0].starts_with("250") && r[1].starts_with("250") && r[2].starts_with("550"), "{r:?}");
    assert!(r[3].starts_with("250") && r[4].starts_with("250"), "one answer per recipient: {r:?}");
    assert_eq!(messages(b2.addr, "ann", "pw"), 1, "ann's copy is on b2");
    assert_eq!(messages(b1.addr, "joe", "secret"), 1, "joe's stays on b1");
    // ann's mail lives on b2: b1 does not serve her, even with her password.
    let mut c = Client::connect(b1.addr);
    c.line();
    let r = c.cmd("L", "LOGIN ann pw");
    assert!(r.last().unwrap().starts_with("L NO [UNAVAILABLE]"), "{r:?}");
    // Passed on once already but not ours by this map: deferred, not passed on again.
    let mut c = Client::connect(b1.lmtp.unwrap());
    c.line();
    c.send("LHLO test");
    while c.line().starts_with("250-") {}
    c.send("MAIL FROM:<x@example.org>");
    c.line();
    c.send("RCPT TO:<ann@example.com> X-RINGMAIL-HOP=1");
    assert!(c.line().starts_with("250"));
    c.send("DATA");
    c.line();
    c.send("Subject: loop\r\n\r\nx\r\n.");
    let l = c.line();
    assert!(l.starts_with("451") || l.starts_with("450"), "{l}");
    // Its owner down: a temporary failure the MTA retries.
    drop(b2);
    let r = lmtp(b1.lmtp.unwrap(), &["ann@example.com"], "Subject: later\r\n\r\nbody\r\n");
    assert!(r[1].starts_with("4"), "{r:?}");
}

/// SIGHUP re-reads the map: a new override takes effect, and a map that
/// does not load leaves the old one in place.
#[test]
fn a_reload_applies_a_changed_map_and_keeps_the_old_one_when_broken() {
    let b2 = greeting_backend();
    let t = cluster_server(&b2);
    let server = t.server.as_ref().unwrap();
    let addr = server.auth_http_addr.unwrap();
    assert!(auth_http(addr, "ann", "pw", 1).contains("Auth-Server: 127.0.0.1\r\n"));
    let map = t.data_dir().join("cluster.toml");
    let text = std::fs::read_to_string(&map).unwrap();
    std::fs::write(&map, text.replace("ann = \"b1\"", "ann = \"b2\"")).unwrap();
    server.reload_cluster();
    assert!(auth_http(addr, "ann", "pw", 1).contains("Auth-Server: 127.0.0.2\r\n"), "moved by the reload");
    std::fs::write(&map, "[[backend]]\nname = \"only\"\n").unwrap();
    server.reload_cluster();
    assert!(auth_http(addr, "ann", "pw", 1).contains("Auth-Server: 127.0.0.2\r\n"), "a broken map changes nothing");
}
