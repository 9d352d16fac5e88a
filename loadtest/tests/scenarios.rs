//! The scenarios against a scripted fake IMAP server (so every reply is
//! known and every miscount shows) and, briefly, each against ringmail.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use ringmail_load::report::Report;
use ringmail_load::run::{run, Driver, Plan};
use ringmail_load::scenario::{Options, Scenario, Weights};

/// How the fake server misbehaves.
#[derive(Clone, Copy, PartialEq)]
enum Fake {
    Good,
    /// Closes the connection instead of answering SELECT.
    DropOnSelect,
}

fn fake_server(mode: Fake) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            std::thread::spawn(move || serve_fake(s, mode));
        }
    });
    addr
}

fn serve_fake(s: TcpStream, mode: Fake) {
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let _ = w.write_all(b"* OK [CAPABILITY IMAP4rev1 LITERAL+ IDLE] fake ready\r\n");
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end().to_string();
        let mut it = line.splitn(3, ' ');
        let (tag, verb, rest) = (it.next().unwrap_or(""), it.next().unwrap_or("").to_ascii_uppercase(), it.next().unwrap_or(""));
        let reply = match verb.as_str() {
            "LOGIN" if rest.ends_with("\"wrong\"") => format!("{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"),
            "LOGIN" => format!("{tag} OK Logged in\r\n"),
            "SELECT" if mode == Fake::DropOnSelect => return,
            "SELECT" => format!("* 3 EXISTS\r\n* OK [UIDVALIDITY 1] x\r\n{tag} OK [READ-WRITE] done\r\n"),
            "STATUS" => format!("* STATUS INBOX (MESSAGES 3 UNSEEN 0 UIDNEXT 4)\r\n{tag} OK done\r\n"),
            "LIST" => format!("* LIST () \"/\" INBOX\r\n{tag} OK done\r\n"),
            "FETCH" if rest.contains("BODY") => {
                let n = rest.split(' ').next().unwrap_or("1");
                // A literal that itself contains CRLF and a fake tagged line.
                let body = format!("Subject: x\r\n\r\n{tag} OK no\r\n");
                format!("* {n} FETCH (BODY[] {{{}}}\r\n{body})\r\n{tag} OK done\r\n", body.len())
            }
            "FETCH" => format!("* 1 FETCH (FLAGS () UID 1)\r\n* 2 FETCH (FLAGS () UID 2)\r\n* 3 FETCH (FLAGS () UID 3)\r\n{tag} OK done\r\n"),
            "STORE" => format!("{tag} OK done\r\n"),
            "EXPUNGE" => format!("* 3 EXPUNGE\r\n* 3 EXISTS\r\n{tag} OK done\r\n"),
            "APPEND" => {
                // {n+} literal: read it and the CRLF after it.
                let n: usize = rest.rsplit('{').next().unwrap().trim_end_matches(['}', '+']).parse().unwrap();
                let mut buf = vec![0; n + 2];
                r.read_exact(&mut buf).unwrap();
                format!("* 4 EXISTS\r\n{tag} OK [APPENDUID 1 4] done\r\n")
            }
            "IDLE" => {
                let _ = w.write_all(b"+ idling\r\n");
                let mut done = String::new();
                let _ = r.read_line(&mut done);
                format!("{tag} OK Idle completed\r\n")
            }
            "LOGOUT" => {
                let _ = w.write_all(format!("* BYE bye\r\n{tag} OK done\r\n").as_bytes());
                return;
            }
            _ => format!("{tag} BAD unknown\r\n"),
        };
        if w.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

fn plan(scenario: Scenario, target: SocketAddr, password: &str, connections: usize) -> Plan {
    Plan {
        opts: Options {
            scenario,
            target,
            user_pattern: "user%d".into(),
            users: 4,
            first_user: 0,
            password: password.into(),
            mailbox: "INBOX".into(),
            weights: Weights::default(),
            seed: 1,
            messages: 3,
            corpus_size: 5,
            timeout: Duration::from_secs(5),
            sources: Vec::new(),
            recipients: 1,
            read_rate: 4 << 20,
            tls: ringmail_load::tls::Mode::Plain,
            tls_config: None,
            compress: false,
            notify: false,
        },
        connections,
        rate: None,
        duration: Duration::from_millis(600),
        warmup: Duration::ZERO,
        threads: 2,
        driver: Driver::Auto,
        pids: Vec::new(),
        pid_tree: false,
        live: false,
    }
}

fn count(r: &Report, op: &str) -> u64 {
    r.rec.ops.get(op).map_or(0, |h| h.len())
}

#[test]
fn session_scenario_parses_every_reply_of_a_scripted_server() {
    let r = run(plan(Scenario::Session, fake_server(Fake::Good), "pass", 4)).unwrap();
    assert_eq!(r.rec.error_count(), 0, "{:?}", r.rec.errors);
    let sessions = r.rec.sessions.len();
    assert!(sessions > 10, "{sessions}");
    // Every counted session did each step exactly once.
    for op in ["LOGIN", "SELECT", "FETCH flags", "FETCH body", "LOGOUT"] {
        assert!(count(&r, op) >= sessions, "{op}: {} < {sessions}", count(&r, op));
    }
    let j = r.json();
    assert!(j["sessions_per_sec"].as_f64().unwrap() > 0.0);
}

#[test]
fn refused_logins_and_dropped_connections_are_counted_not_hidden() {
    let r = run(plan(Scenario::Login, fake_server(Fake::Good), "wrong", 2)).unwrap();
    assert_eq!(r.rec.sessions.len(), 0);
    let refused = r.rec.errors.get("LOGIN: NO [AUTHENTICATIONFAILED] Authentication failed.").copied().unwrap_or(0);
    assert!(refused > 0 && refused == r.rec.error_count(), "{:?}", r.rec.errors);

    let r = run(plan(Scenario::Session, fake_server(Fake::DropOnSelect), "pass", 2)).unwrap();
    assert_eq!(r.rec.sessions.len(), 0);
    assert!(r.rec.errors.get("SELECT: connection closed by server").copied().unwrap_or(0) > 0, "{:?}", r.rec.errors);
}

#[test]
fn mix_and_idle_against_the_scripted_server() {
    let r = run(plan(Scenario::Mix, fake_server(Fake::Good), "pass", 4)).unwrap();
    assert_eq!(r.rec.error_count(), 0, "{:?}", r.rec.errors);
    assert!(count(&r, "FETCH") > 0 && count(&r, "STORE") > 0 && count(&r, "APPEND") > 0, "{:?}", r.rec.ops.keys().collect::<Vec<_>>());
    let mut p = plan(Scenario::Idle, fake_server(Fake::Good), "pass", 6);
    p.pids = vec![std::process::id()];
    let r = run(p).unwrap();
    assert_eq!(r.rec.error_count(), 0, "{:?}", r.rec.errors);
    assert_eq!(count(&r, "IDLE"), 6);
    assert_eq!(count(&r, "DONE"), 6);
    assert_eq!(r.idle.unwrap().connections, 6);
}

#[test]
fn open_loop_runs_at_the_asked_rate() {
    let mut p = plan(Scenario::Login, fake_server(Fake::Good), "pass", 16);
    p.rate = Some(200.0);
    p.duration = Duration::from_secs(1);
    let r = run(p).unwrap();
    let n = r.rec.sessions.len();
    assert!((150..=210).contains(&n), "{n} sessions at 200/s for 1 s");
}

/// Every scenario, briefly, against ringmail itself.
#[test]
fn every_scenario_runs_clean_against_ringmail() {
    let dir = tempfile::tempdir().unwrap();
    let users: String = (0..4).map(|i| format!("user{i}:{{PLAIN}}pass\n")).collect();
    std::fs::write(dir.path().join("users"), users).unwrap();
    let mut c = ringmail::config::Config { data_dir: dir.path().to_path_buf(), workers: 2, ..Default::default() };
    c.imap.listen = vec!["127.0.0.1:0".parse().unwrap()];
    c.imap.imaps = vec![];
    c.lmtp.listen = vec!["127.0.0.1:0".parse().unwrap()];
    let server = ringmail::net::Server::start(c).unwrap();
    let imap = server.imap_addrs[0];
    let lmtp = server.lmtp_addrs[0];
    for (scenario, target) in [
        (Scenario::Populate, imap),
        (Scenario::Login, imap),
        (Scenario::Session, imap),
        (Scenario::Mix, imap),
        (Scenario::Append, imap),
        (Scenario::Lmtp, lmtp),
        (Scenario::Idle, imap),
        (Scenario::SlowReader, imap),
    ] {
        let mut p = plan(scenario, target, "pass", 4);
        if matches!(scenario, Scenario::Idle | Scenario::SlowReader) {
            p.pids = vec![std::process::id()];
        }
        let r = run(p).unwrap();
        assert_eq!(r.rec.error_count(), 0, "{scenario:?}: {:?}", r.rec.errors);
        assert!(r.rec.op_count() > 0, "{scenario:?} did nothing");
        if scenario == Scenario::Populate {
            assert_eq!(r.populated.unwrap().0, 12, "4 users x 3 messages");
        }
        if scenario == Scenario::SlowReader {
            assert!(count(&r, "NOOP") > 0 && count(&r, "slow read") > 0, "{:?}", r.rec.ops.keys().collect::<Vec<_>>());
            assert!(r.peak_memory.is_some());
        }
    }
    // COMPRESS=DEFLATE (--compress) through the scenarios that read replies.
    for scenario in [Scenario::Session, Scenario::Mix, Scenario::Append, Scenario::Idle] {
        let mut p = plan(scenario, imap, "pass", 4);
        p.opts.compress = true;
        if scenario == Scenario::Idle {
            p.pids = vec![std::process::id()];
        }
        let r = run(p).unwrap();
        assert_eq!(r.rec.error_count(), 0, "{scenario:?} compressed: {:?}", r.rec.errors);
        assert!(count(&r, "COMPRESS") > 0, "{scenario:?}: {:?}", r.rec.ops.keys().collect::<Vec<_>>());
    }
    // idle --notify: NOTIFY (RFC 5465) instead of IDLE.
    let mut p = plan(Scenario::Idle, imap, "pass", 4);
    p.opts.notify = true;
    p.pids = vec![std::process::id()];
    let r = run(p).unwrap();
    assert_eq!(r.rec.error_count(), 0, "idle --notify: {:?}", r.rec.errors);
    assert_eq!((count(&r, "NOTIFY"), count(&r, "IDLE")), (4, 0));
    server.shutdown();
}
