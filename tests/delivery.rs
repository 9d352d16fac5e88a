//! Delivery over LMTP (RFC 2033) and SMTP (RFC 5321) with Python's smtplib
//! as the real client, checked through IMAP; and `ringmail deliver`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{serve_process, Client, ServeProcess, TestServer};
use ringmail::config::Driver;

fn server() -> TestServer {
    TestServer::start(Driver::Auto, |c| {
        c.smtp.listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.delivery.local_domains = vec!["example.org".into()];
        c.delivery.hostname = Some("mx.example.org".into());
        c.limits.max_message_size = 40 << 20;
    })
}

/// Runs a Python script with smtplib imported (`host`, `port` from `addr`).
fn python(script: &str, addr: SocketAddr) -> String {
    common::python(&format!("import smtplib\n{script}"), &[addr.to_string()])
}

/// Every message of a user's mailbox, byte for byte.
fn messages(ts: &TestServer, user: &str, mailbox: &str) -> Vec<Vec<u8>> {
    let mut c = Client::connect(ts.addr);
    c.login(user, if user == "joe" { "secret" } else { "pw" });
    let sel = c.cmd("s", &format!("EXAMINE {mailbox}"));
    let exists: usize = sel.iter().find_map(|l| l.strip_prefix("* ").and_then(|r| r.strip_suffix(" EXISTS\r\n")).and_then(|n| n.parse().ok())).unwrap();
    let mut out = Vec::new();
    for i in 1..=exists {
        c.send(&format!("f{i} FETCH {i} BODY.PEEK[]"));
        let head = c.line();
        let n: usize = head.trim_end().trim_end_matches('}').rsplit('{').next().unwrap().parse().unwrap();
        let mut body = vec![0; n];
        c.r.read_exact(&mut body).unwrap();
        c.until(&format!("f{i}"));
        out.push(body);
    }
    out
}

#[test]
fn lmtp_multi_recipient_replies_per_recipient_rfc2033_4_2() {
    let ts = server();
    let out = python(
        r#"
l = smtplib.LMTP(host, port)
print(l.ehlo('mta.example.net')[0])
print(l.mail('sender@example.net'))
print(l.rcpt('ann@example.org'))
print(l.rcpt('nobody@example.org'))
print(l.rcpt('bob'))
print(l.data(b'Subject: to two\r\n\r\nHello both\r\n'))
print(l.getreply())
l.quit()
"#,
        ts.lmtp.unwrap(),
    );
    assert_eq!(
        out,
        "250\n(250, b'2.1.0 Ok')\n(250, b'2.1.5 Ok')\n(550, b'5.1.1 User unknown')\n(250, b'2.1.5 Ok')\n\
         (250, b'2.0.0 Ok: delivered <ann@example.org>')\n(250, b'2.0.0 Ok: delivered <bob>')\n"
    );
    assert_eq!(
        messages(&ts, "ann", "INBOX"),
        [b"Return-Path: <sender@example.net>\r\nDelivered-To: ann@example.org\r\nSubject: to two\r\n\r\nHello both\r\n".to_vec()]
    );
    assert_eq!(messages(&ts, "bob", "INBOX"), [b"Return-Path: <sender@example.net>\r\nDelivered-To: bob\r\nSubject: to two\r\n\r\nHello both\r\n".to_vec()]);
}

#[test]
fn smtp_accepts_local_mail_and_refuses_to_relay() {
    let ts = server();
    let out = python(
        r#"
s = smtplib.SMTP(host, port)
print(s.ehlo('client.example.net')[0], s.has_extn('pipelining'), s.has_extn('8bitmime'), s.has_extn('size'))
try:
    s.sendmail('x@example.net', ['victim@gmail.com'], b'Subject: relay\r\n\r\nspam\r\n')
except smtplib.SMTPRecipientsRefused as e:
    print(e.recipients)
try:
    s.sendmail('x@example.net', ['nobody@example.org'], b'Subject: x\r\n\r\nx\r\n')
except smtplib.SMTPRecipientsRefused as e:
    print(e.recipients)
print(s.sendmail('x@example.net', ['joe@example.org', 'relay@elsewhere.net'], b'Subject: hi\r\n\r\nhi\r\n'))
s.quit()
"#,
        ts.smtp.unwrap(),
    );
    assert_eq!(
        out,
        "250 True True True\n{'victim@gmail.com': (550, b'5.7.1 Relay access denied')}\n\
         {'nobody@example.org': (550, b'5.1.1 User unknown')}\n{'relay@elsewhere.net': (550, b'5.7.1 Relay access denied')}\n"
    );
    let msgs = messages(&ts, "joe", "INBOX");
    assert_eq!(msgs.len(), 1);
    let text = String::from_utf8(msgs[0].clone()).unwrap();
    // RFC 5321 4.4: a Received line for the hop into our store.
    assert!(text.starts_with("Return-Path: <x@example.net>\r\nDelivered-To: joe@example.org\r\nReceived: from client.example.net (127.0.0.1)\r\n\tby mx.example.org (ringmail) with ESMTP\r\n\tfor <joe@example.org>; "), "{text}");
    assert!(text.ends_with(" +0000\r\nSubject: hi\r\n\r\nhi\r\n"), "{text}");
}

/// Reads SMTP replies until `n` final lines arrived.
fn replies(r: &mut BufReader<TcpStream>, n: usize) -> Vec<String> {
    let mut v = Vec::new();
    while v.len() < n {
        let mut l = String::new();
        assert!(r.read_line(&mut l).unwrap() > 0, "closed after {v:?}");
        if l.as_bytes().get(3) != Some(&b'-') {
            v.push(l.trim_end().to_string());
        }
    }
    v
}

fn raw(addr: SocketAddr) -> (BufReader<TcpStream>, TcpStream) {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    (BufReader::new(s.try_clone().unwrap()), s)
}

#[test]
fn pipelined_transaction_in_one_write_rfc2920() {
    let ts = server();
    let (mut r, mut w) = raw(ts.lmtp.unwrap());
    w.write_all(b"LHLO m\r\nMAIL FROM:<a@b>\r\nRCPT TO:<joe>\r\nRCPT TO:<ann>\r\nDATA\r\nSubject: p\r\n\r\n..dot\r\n.\r\nMAIL FROM:<a@b>\r\nRCPT TO:<joe>\r\nDATA\r\nSubject: q\r\n\r\nq\r\n.\r\nQUIT\r\n").unwrap();
    let got = replies(&mut r, 13);
    assert_eq!(
        got,
        [
            "220 mx.example.org LMTP ringmail ready",
            "250 SIZE 41943040",
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "250 2.1.5 Ok",
            "354 End data with <CR><LF>.<CR><LF>",
            "250 2.0.0 Ok: delivered <joe>",
            "250 2.0.0 Ok: delivered <ann>",
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "354 End data with <CR><LF>.<CR><LF>",
            "250 2.0.0 Ok: delivered <joe>",
            "221 2.0.0 Bye",
        ]
    );
    let joe = messages(&ts, "joe", "INBOX");
    assert_eq!(joe.len(), 2);
    assert!(joe[0].ends_with(b"Subject: p\r\n\r\n.dot\r\n"));
}

#[test]
fn large_message_of_25_mib_is_stored_exactly() {
    use sha2::Digest;
    let ts = server();
    let out = python(
        r#"
import random, hashlib
rnd = random.Random(7)
# Lines starting with a dot exercise dot-stuffing on the way in.
lines = [''.join(rnd.choice('abcdefghij .') for _ in range(76)) for _ in range(340000)]
body = ('Subject: big\r\n\r\n' + '\r\n'.join(lines) + '\r\n').encode()
l = smtplib.LMTP(host, port)
print(l.sendmail('a@b', ['joe'], body))
l.quit()
print(len(body), hashlib.sha256(b'Return-Path: <a@b>\r\nDelivered-To: joe\r\n' + body).hexdigest())
"#,
        ts.lmtp.unwrap(),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "{}", "{out}");
    let (len, digest) = lines[1].split_once(' ').unwrap();
    assert!(len.parse::<usize>().unwrap() > 25 << 20);
    let msgs = messages(&ts, "joe", "INBOX");
    assert_eq!(msgs.len(), 1);
    let got: String = sha2::Sha256::digest(&msgs[0]).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(got, digest);
}

#[test]
fn bare_lf_becomes_crlf_and_8bit_headers_keep_their_bytes() {
    let ts = server();
    let (mut r, mut w) = raw(ts.lmtp.unwrap());
    let msg: &[u8] = b"Subject: caf\xc3\xa9 \xe9t\xe9\nFrom: J\xc3\xb6rg <j@example.net>\n\nbare lf line\nmixed\r\nend\r\n";
    w.write_all(b"LHLO m\r\nMAIL FROM:<j@example.net> BODY=8BITMIME\r\nRCPT TO:<joe>\r\nDATA\r\n").unwrap();
    assert_eq!(replies(&mut r, 5)[4], "354 End data with <CR><LF>.<CR><LF>");
    w.write_all(msg).unwrap();
    w.write_all(b".\r\n").unwrap();
    assert_eq!(replies(&mut r, 1), ["250 2.0.0 Ok: delivered <joe>"]);
    // Stored with CRLF line ends only; every other byte as sent.
    let mut want = b"Return-Path: <j@example.net>\r\nDelivered-To: joe\r\n".to_vec();
    want.extend_from_slice(b"Subject: caf\xc3\xa9 \xe9t\xe9\r\nFrom: J\xc3\xb6rg <j@example.net>\r\n\r\nbare lf line\r\nmixed\r\nend\r\n");
    assert_eq!(messages(&ts, "joe", "INBOX"), [want]);
    // ENVELOPE still parses the 8-bit header (sent as a literal: 8-bit text).
    let mut c = Client::connect(ts.addr);
    c.login("joe", "secret");
    c.cmd("s", "SELECT INBOX");
    let env = c.cmd("e", "FETCH 1 ENVELOPE");
    assert!(env.join("").contains("(({5}\r\nJ\u{f6}rg NIL \"j\" \"example.net\"))"), "{env:?}");
}

#[test]
fn disconnect_mid_data_stores_nothing() {
    let ts = server();
    {
        let (mut r, mut w) = raw(ts.lmtp.unwrap());
        w.write_all(b"LHLO m\r\nMAIL FROM:<a@b>\r\nRCPT TO:<joe>\r\nDATA\r\nSubject: half\r\n\r\nthis message never ends").unwrap();
        replies(&mut r, 5);
    }
    let out = python("l = smtplib.LMTP(host, port)\nprint(l.sendmail('a@b', ['joe'], b'Subject: whole\\r\\n\\r\\nx\\r\\n'))\n", ts.lmtp.unwrap());
    assert_eq!(out, "{}\n");
    let msgs = messages(&ts, "joe", "INBOX");
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].ends_with(b"Subject: whole\r\n\r\nx\r\n"));
}

#[test]
fn oversize_message_is_refused_with_552() {
    let ts = TestServer::start(Driver::Auto, |c| c.limits.max_message_size = 1000);
    let out = python(
        r#"
l = smtplib.LMTP(host, port)
l.ehlo('m')
try:
    l.sendmail('a@b', ['joe'], b'Subject: big\r\n\r\n' + b'x' * 2000 + b'\r\n')
except smtplib.SMTPSenderRefused as e:
    print(e.smtp_code, e.smtp_error)
try:
    l.sendmail('a@b', ['joe'], b'Subject: big\r\n\r\n' + b'x' * 2000 + b'\r\n', mail_options=[])
except Exception as e:
    print(type(e).__name__)
"#,
        ts.lmtp.unwrap(),
    );
    // smtplib announces SIZE= itself, so the refusal comes at MAIL.
    assert!(out.starts_with("552 b'5.3.4 Message size exceeds fixed limit'\n"), "{out}");
    let mut c = Client::connect(ts.addr);
    c.login("joe", "secret");
    let st = c.cmd("s", "STATUS INBOX (MESSAGES)");
    assert!(st[0].contains("(MESSAGES 0)"), "{st:?}");
}

fn idle_sees_delivery(driver: Driver) {
    let ts = TestServer::start(driver, |_| {});
    let mut c = Client::connect(ts.addr);
    c.login("joe", "secret");
    c.cmd("s", "SELECT INBOX");
    c.send("i IDLE");
    assert!(c.line().starts_with("+ "));
    let started = Instant::now();
    let out = python("l = smtplib.LMTP(host, port)\nprint(l.sendmail('a@b', ['joe', 'ann'], b'Subject: ping\\r\\n\\r\\nx\\r\\n'))\n", ts.lmtp.unwrap());
    assert_eq!(out, "{}\n");
    let line = c.line();
    assert_eq!(line, "* 1 EXISTS\r\n");
    let waited = started.elapsed();
    c.line(); // * 1 RECENT
    c.send("DONE");
    let done = c.until("i");
    assert!(done.last().unwrap().starts_with("i OK"), "{done:?}");
    eprintln!("{driver:?}: EXISTS {waited:?} after the delivery started (python start-up included)");
}

both_drivers! {
    idle_session_hears_delivered_mail => idle_sees_delivery;
}

#[test]
fn x_mailbox_and_timeouts_and_limits() {
    let ts = TestServer::start(Driver::Auto, |c| c.delivery.timeout = Duration::from_millis(300));
    let (mut r, mut w) = raw(ts.lmtp.unwrap());
    w.write_all(b"LHLO m\r\nMAIL FROM:<a@b>\r\nRCPT TO:<joe> X-MAILBOX=Archive\r\nRCPT TO:<ann> X-MAILBOX=No+2FSuch\r\nDATA\r\nSubject: a\r\n\r\nx\r\n.\r\n")
        .unwrap();
    let got = replies(&mut r, 8);
    assert_eq!(&got[6..], ["250 2.0.0 Ok: delivered <joe>", "250 2.0.0 Ok: delivered <ann>"]);
    // A silent client is told why it is disconnected.
    assert_eq!(replies(&mut r, 1), ["421 4.4.2 Timeout, closing connection"]);
    assert_eq!(messages(&ts, "joe", "Archive").len(), 1);
    assert_eq!(messages(&ts, "joe", "INBOX").len(), 0);
    // A mailbox that does not exist means INBOX (as dovecot-lda does).
    assert_eq!(messages(&ts, "ann", "INBOX").len(), 1);
}

/// Runs a `ringmail` subcommand on the data directory `dir` with `input` on
/// its standard input: exit code, standard output, standard error.
fn ringmail_cli(dir: &std::path::Path, args: &[&str], input: &[u8]) -> (i32, String, String) {
    let out = common::run_with_input(Command::new(env!("CARGO_BIN_EXE_ringmail")).args(args).arg("--data-dir").arg(dir), input);
    (out.status.code().unwrap(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `ringmail deliver` with no server (stores itself) and with one running
/// (hands over by LMTP), and its exit codes.
#[test]
fn deliver_command_with_and_without_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users"), "joe:{PLAIN}secret\n").unwrap();
    let deliver = |args: &[&str], input: &[u8]| -> (i32, String) {
        let (code, _, err) = ringmail_cli(dir.path(), &[&["deliver"], args].concat(), input);
        (code, err)
    };
    // No server: stored directly, Unix line ends become CRLF, the mbox
    // separator goes.
    assert_eq!(deliver(&["--user", "joe", "-f", "s@x"], b"From s@x Fri Nov 27 06:00:00 2026\nSubject: one\n\nbody\n"), (0, String::new()));
    assert_eq!(deliver(&["--user", "nobody"], b"Subject: x\n\nx\n").0, 67);

    let ServeProcess { mut child, imap, .. } = serve_process(dir.path());
    // Server running: handed over by LMTP, into the named mailbox.
    assert_eq!(deliver(&["--user", "joe", "-m", "Archive"], b"Subject: two\n\n.leading dot\n"), (0, String::new()));
    assert_eq!(deliver(&["--user", "nobody"], b"Subject: x\n\nx\n").0, 67);
    let ts_like = |mailbox: &str| {
        let mut c = Client::connect(imap);
        c.login("joe", "secret");
        c.cmd("s", &format!("EXAMINE {mailbox}"));
        c.cmd("f", "FETCH 1:* BODY.PEEK[]").join("")
    };
    let inbox = ts_like("INBOX");
    assert!(inbox.contains("{61}\r\nReturn-Path: <s@x>\r\nDelivered-To: joe\r\nSubject: one\r\n\r\nbody\r\n)"), "{inbox}");
    let archive = ts_like("Archive");
    assert!(archive.contains("Return-Path: <>\r\nDelivered-To: joe\r\nSubject: two\r\n\r\n.leading dot\r\n)"), "{archive}");
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

/// Sends one transaction by hand; returns the replies after DATA's 354
/// (one per recipient for LMTP, one for SMTP).
fn transaction(addr: SocketAddr, lmtp: bool, rcpts: &[&str], data: &[u8]) -> Vec<String> {
    let (mut r, mut w) = raw(addr);
    r.get_mut().set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    replies(&mut r, 1);
    w.write_all(if lmtp { b"LHLO t\r\n" } else { b"EHLO t\r\n" }).unwrap();
    replies(&mut r, 1);
    w.write_all(b"MAIL FROM:<t@example.net>\r\n").unwrap();
    replies(&mut r, 1);
    for rc in rcpts {
        w.write_all(format!("RCPT TO:<{rc}>\r\n").as_bytes()).unwrap();
        assert!(replies(&mut r, 1)[0].starts_with("250"), "RCPT {rc}");
    }
    w.write_all(b"DATA\r\n").unwrap();
    assert!(replies(&mut r, 1)[0].starts_with("354"));
    w.write_all(data).unwrap();
    w.write_all(b".\r\n").unwrap();
    replies(&mut r, if lmtp { rcpts.len() } else { 1 })
}

/// SMTP smuggling through a real listener: the hidden envelope after
/// `<LF>.<CRLF>` is text of the first message, and nothing is delivered to
/// the smuggled recipient.
#[test]
fn smuggled_second_message_stays_inside_the_first() {
    let ts = server();
    for (lmtp, addr, rcpt) in [(true, ts.lmtp.unwrap(), "joe"), (false, ts.smtp.unwrap(), "joe@example.org")] {
        let data = b"Subject: one\r\n\r\nhello\n.\r\nMAIL FROM:<evil@x>\r\nRCPT TO:<ann@example.org>\r\nDATA\r\nSubject: two\r\n\r\nsmuggled\r\n";
        let r = transaction(addr, lmtp, &[rcpt], data);
        assert!(r[0].starts_with("250"), "{r:?}");
    }
    let joe = messages(&ts, "joe", "INBOX");
    assert_eq!(joe.len(), 2);
    for m in &joe {
        let text = String::from_utf8_lossy(m);
        assert!(text.contains("hello\r\n\r\nMAIL FROM:<evil@x>\r\nRCPT TO:<ann@example.org>") && text.contains("smuggled"), "{text}");
    }
    assert!(messages(&ts, "ann", "INBOX").is_empty(), "nothing reached the smuggled recipient");
}

/// The same recipient named several times (and in two spellings) is one
/// copy, and LMTP still answers once per RCPT.
#[test]
fn duplicate_recipients_get_one_copy() {
    let ts = server();
    let r = transaction(ts.lmtp.unwrap(), true, &["joe", "joe", "JOE@example.org", "bob"], b"Subject: dup\r\n\r\nx\r\n");
    assert_eq!(r.len(), 4);
    assert!(r.iter().all(|l| l.starts_with("250 2.0.0")), "{r:?}");
    assert_eq!(messages(&ts, "joe", "INBOX").len(), 1);
    assert_eq!(messages(&ts, "bob", "INBOX").len(), 1);
}

/// Messages whose DATA stalls before the final dot wait on disk, not in
/// memory: six clients with 8 MiB each hold at most a few hundred KiB of
/// the server's memory (the hardening issue measured 250 MiB of RSS).
#[test]
fn stalled_data_waits_on_disk() {
    let ts = TestServer::start(Driver::Auto, |c| {
        c.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
        c.limits.max_message_size = 40 << 20;
    });
    let metrics = ts.server.as_ref().unwrap().metrics_addr.unwrap();
    let gauge = || -> u64 {
        let mut s = TcpStream::connect(metrics).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text.lines().find_map(|l| l.strip_prefix("ringmail_delivery_memory_bytes ")).unwrap().parse().unwrap()
    };
    let chunk = vec![b'x'; 1 << 20];
    let mut stalled = Vec::new();
    for _ in 0..6 {
        let (mut r, mut w) = raw(ts.lmtp.unwrap());
        replies(&mut r, 1);
        w.write_all(b"LHLO t\r\nMAIL FROM:<a@b>\r\nRCPT TO:<joe>\r\nDATA\r\n").unwrap();
        replies(&mut r, 4);
        for _ in 0..8 {
            w.write_all(&chunk).unwrap();
            w.write_all(b"\r\n").unwrap();
        }
        stalled.push((r, w));
    }
    // Let the server read everything sent.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut held = gauge();
    while held > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        held = gauge();
        if held <= 6 * (256 << 10) {
            break;
        }
    }
    assert!(held <= 6 * (256 << 10), "in-flight messages hold {held} bytes of memory");
    // One of them finishes: it is stored whole, from the spool file.
    let (mut r, mut w) = stalled.pop().unwrap();
    w.write_all(b".\r\n").unwrap();
    assert_eq!(replies(&mut r, 1), ["250 2.0.0 Ok: delivered <joe>"]);
    let stored = messages(&ts, "joe", "INBOX");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].len(), "Return-Path: <a@b>\r\nDelivered-To: joe\r\n".len() + 8 * ((1 << 20) + 2));
    drop(stalled);
}

/// Hostile shapes (100,000 nesting levels of each kind, 100,000
/// addresses) by LMTP, SMTP and APPEND: stored, answered, and the server
/// keeps serving everyone (the hardening issue: one such message aborted
/// the process).
#[test]
fn hostile_messages_by_every_path_are_stored_and_served() {
    let ts = server();
    let hostile =
        [ringmail_kit::corpus::nested_multipart(100_000), ringmail_kit::corpus::nested_message(100_000), ringmail_kit::corpus::many_addresses(100_000)];
    let mut other = Client::connect(ts.addr);
    other.login("bob", "pw");
    for m in &hostile {
        assert!(transaction(ts.lmtp.unwrap(), true, &["joe"], m)[0].starts_with("250"));
        assert!(transaction(ts.smtp.unwrap(), false, &["joe@example.org"], m)[0].starts_with("250"));
        let mut c = Client::connect(ts.addr);
        c.login("joe", "secret");
        c.send(&format!("a APPEND INBOX {{{}+}}", m.len()));
        c.send_raw(m);
        c.send_raw(b"\r\n");
        assert!(c.until("a").last().unwrap().starts_with("a OK"));
        assert!(other.cmd("n", "NOOP").last().unwrap().starts_with("n OK"), "another session is served meanwhile");
    }
    let mut c = Client::connect(ts.addr);
    c.login("joe", "secret");
    c.cmd("s", "SELECT INBOX");
    let r = c.cmd("f", "FETCH 1:* (BODYSTRUCTURE ENVELOPE RFC822.SIZE)");
    assert!(r.last().unwrap().starts_with("f OK"), "{:?}", r.last());
    assert_eq!(r.iter().filter(|l| l.contains(" FETCH (")).count(), 9);
    let r = c.cmd("g", "SEARCH TO user99999@example.com");
    assert!(r[0].starts_with("* SEARCH 7 8 9"), "{:?}", r[0]);
}

/// Quota (RFC 9208) on every delivery path: `ringmail deliver` storing
/// itself (exit 73) and handing over to a running server, LMTP with a
/// reply per recipient (552 5.2.2, RFC 3463 X.2.2), `[quota] temporary`
/// (452 4.2.2), and `ringmail user quota` with and without a server.
#[test]
fn quota_refuses_delivery_by_every_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users"), "joe:{PLAIN}secret::::::userdb_quota_rule=*:messages=2\nann:{PLAIN}pw\n").unwrap();
    let ringmail = |args: &[&str], input: &[u8]| ringmail_cli(dir.path(), args, input);
    let deliver = |user: &str| ringmail(&["deliver", "--user", user], b"Subject: q\n\nbody\n");
    assert_eq!(deliver("joe").0, 0);
    assert_eq!(deliver("joe").0, 0);
    let (code, _, err) = deliver("joe");
    assert_eq!(code, 73, "EX_CANTCREAT: {err}");
    assert!(err.contains("quota"), "{err}");
    let (code, table, _) = ringmail(&["user", "quota", "joe"], b"");
    assert_eq!(code, 0);
    assert!(table.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["User", "quota", "MESSAGE", "2", "2", "100"]), "{table}");

    let ServeProcess { mut child, lmtp, .. } = serve_process(dir.path());
    let r = transaction(lmtp, true, &["joe@example.org", "ann@example.org"], b"Subject: two\r\n\r\nx\r\n");
    assert!(r[0].starts_with("552 5.2.2 ") && r[0].contains("<joe@example.org>"), "{r:?}");
    assert!(r[1].starts_with("250 "), "{r:?}");
    // Handed over to the server, refused by it: still a bounce.
    assert_eq!(deliver("joe").0, 73);
    // A read-only look beside the running server.
    let (_, table, _) = ringmail(&["user", "quota", "ann"], b"");
    assert!(table.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["User", "quota", "MESSAGE", "1", "-", "0"]), "{table}");
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());

    // Configured as temporary: 452 4.2.2, so the sender retries.
    let ts = TestServer::start(Driver::Auto, |c| c.quota.temporary = true);
    std::fs::write(ts.data_dir().join("users"), "joe:{PLAIN}secret::::::quota_rule=*:storage=1k\n").unwrap();
    let big = format!("Subject: big\r\n\r\n{}\r\n", "y".repeat(2000));
    let r = transaction(ts.lmtp.unwrap(), true, &["joe@example.org"], big.as_bytes());
    assert!(r[0].starts_with("452 4.2.2 "), "{r:?}");
}
