//! POP3 over loopback with real clients: Python's poplib (USER/PASS, AUTH,
//! POP3S, STLS) and curl's pop3://, beside IMAP sessions on the same
//! mailboxes.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::{python, Client, TestServer};
use ringmail::config::Driver;

fn pop3_server(tweak: impl FnOnce(&mut ringmail::config::Config)) -> (TestServer, SocketAddr, SocketAddr) {
    let t = TestServer::start(Driver::Auto, |c| {
        c.pop3.listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.pop3.pop3s = vec!["127.0.0.1:0".parse().unwrap()];
        tweak(c);
    });
    let s = t.server.as_ref().unwrap();
    let (pop3, pop3s) = (s.pop3_addrs[0], s.pop3s_addrs[0]);
    (t, pop3, pop3s)
}

/// LMTP deliveries to joe.
fn deliver(t: &TestServer, bodies: &[&str]) {
    for b in bodies {
        let mut c = Client::connect(t.lmtp.unwrap());
        c.line();
        c.send("LHLO test");
        while c.line().starts_with("250-") {}
        c.send("MAIL FROM:<a@example.org>");
        c.line();
        c.send("RCPT TO:<joe@example.com>");
        assert!(c.line().starts_with("250"));
        c.send("DATA");
        c.line();
        // LMTP's own dot-stuffing (RFC 5321 4.5.2).
        c.send(&format!("{}\r\n.", b.replace("\r\n.", "\r\n..")));
        assert!(c.line().starts_with("250"));
    }
}

#[test]
fn poplib_reads_and_deletes_and_imap_sees_it() {
    let (t, pop3, pop3s) = pop3_server(|_| {});
    deliver(&t, &["Subject: one\r\n\r\nfirst", "Subject: two\r\n\r\n.starts with a dot\r\nend", "Subject: three\r\n\r\nthird"]);
    // An IMAP session waiting in IDLE hears what POP3 does.
    let mut imap = t.client();
    imap.login("joe", "secret");
    imap.cmd("S", "SELECT INBOX");
    imap.send("I IDLE");
    assert!(imap.line().starts_with('+'));
    let out = python(
        r#"
import poplib, ssl
p = poplib.POP3(host, port, timeout=10)
caps = p.capa()
assert "UIDL" in caps and "TOP" in caps and "RESP-CODES" in caps and "STLS" in caps, caps
p.user("joe"); p.pass_("secret")
n, size = p.stat()
print("stat", n)
resp, lines, octets = p.retr(2)
assert lines[-2:] == [b".starts with a dot", b"end"], lines
uidls = [l.split()[1] for l in p.uidl()[1]]
print("uidl", len(set(uidls)))
print("top", p.top(1, 0)[1][-1] == b"")
p.dele(1); p.dele(3)
print(p.quit().decode())
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = poplib.POP3_SSL(host, int(sys.argv[2]), context=ctx, timeout=10)
s.user("joe"); s.pass_("secret")
print("pop3s", s.stat()[0], s.uidl()[1][0].split()[1] == uidls[1])
s.quit()
"#,
        &[pop3.to_string(), pop3s.port().to_string()],
    );
    assert!(out.contains("stat 3\n") && out.contains("uidl 3\n") && out.contains("top True\n"), "{out}");
    assert!(out.contains("+OK Logging out, messages deleted."), "{out}");
    assert!(out.contains("pop3s 1 True"), "the UIDL of a message stays the same across sessions: {out}");
    let heard = imap.unsolicited(Duration::from_millis(500)).join("");
    assert!(heard.contains("EXPUNGE") && heard.contains("\\Seen"), "{heard}");
    imap.send("DONE");
    imap.until("I");
    let r = imap.cmd("F", "FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])");
    assert_eq!(r.len(), 2, "{r:?}");
    assert!(r[0].contains("\\Seen") && r[0].contains("Subject: two"), "{r:?}");
}

#[test]
fn one_pop3_session_per_user_and_nothing_deleted_without_quit() {
    let (t, pop3, _) = pop3_server(|_| {});
    deliver(&t, &["Subject: a\r\n\r\nx"]);
    // Several connections, so that they land on different workers first.
    let mut holders = Vec::new();
    let mut first = Client::connect(pop3);
    first.line();
    first.send("USER joe");
    first.line();
    first.send("PASS secret");
    assert_eq!(first.line(), "+OK Logged in.\r\n");
    first.send("DELE 1");
    assert_eq!(first.line(), "+OK Marked to be deleted.\r\n");
    for _ in 0..4 {
        let mut c = Client::connect(pop3);
        c.line();
        c.send("USER joe");
        c.line();
        c.send("PASS secret");
        assert_eq!(c.line(), "-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n");
        holders.push(c);
    }
    // The first goes away without QUIT: nothing is deleted, the lock is free.
    drop(first);
    std::thread::sleep(Duration::from_millis(200));
    let mut c = Client::connect(pop3);
    c.line();
    c.send("USER joe");
    c.line();
    c.send("PASS secret");
    assert_eq!(c.line(), "+OK Logged in.\r\n");
    c.send("STAT");
    assert!(c.line().starts_with("+OK 1 "));
}

#[test]
fn curl_lists_and_retrieves() {
    let (t, pop3, pop3s) = pop3_server(|_| {});
    deliver(&t, &["Subject: via curl\r\n\r\nbody"]);
    let run = |url: String, extra: &[&str]| {
        let out = Command::new("curl").args(["-s", "-k", "--max-time", "10", "-u", "joe:secret"]).args(extra).arg(url).output().expect("curl");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(
        run(format!("pop3://{pop3}/"), &[]).trim_end(),
        format!("1 {}", "Subject: via curl\r\n\r\nbody\r\n".len() + "Return-Path: <a@example.org>\r\nDelivered-To: joe@example.com\r\n".len())
    );
    assert!(run(format!("pop3://{pop3}/1"), &["--ssl-reqd"]).contains("Subject: via curl"), "STLS");
    assert!(run(format!("pop3s://{pop3s}/1"), &[]).contains("body"), "implicit TLS");
}

#[test]
fn no_passwords_in_the_clear_off_trusted_networks_and_autologout() {
    let (_t, pop3, _) = pop3_server(|c| {
        c.imap.loopback_is_trusted = false;
        c.pop3.idle_timeout = Duration::from_millis(600);
    });
    let mut c = Client::connect(pop3);
    assert_eq!(c.line(), "+OK ringmail ready.\r\n");
    c.send("USER joe");
    assert_eq!(c.line(), "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.\r\n");
    // After STLS (RFC 2595) the same client may log in, and then idles out.
    let out = python(
        r#"
import poplib, ssl, time
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
p = poplib.POP3(host, port, timeout=10)
p.stls(context=ctx)
p.user("joe"); print(p.pass_("secret").decode())
time.sleep(1.5)
try:
    p.stat()
except Exception as e:
    print("after idling:", e)
"#,
        &[pop3.to_string()],
    );
    assert!(out.contains("+OK Logged in."), "{out}");
    assert!(out.contains("after idling: b'-ERR Disconnected for inactivity.'"), "{out}");
}

#[test]
fn the_connection_limit_per_address_holds_for_pop3() {
    let (_t, pop3, _) = pop3_server(|c| c.limits.max_connections_per_ip = 1);
    let mut a = Client::connect(pop3);
    assert_eq!(a.line(), "+OK ringmail ready.\r\n");
    let mut b = Client::connect(pop3);
    assert!(b.line().starts_with("-ERR [SYS/TEMP] Too many connections"), "RFC 3206");
}
