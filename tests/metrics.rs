//! The Prometheus endpoint: after a scripted session every counter moved by
//! exactly what the session did.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::TestServer;
use ringmail::config::Driver;

fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    let (head, body) = r.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
    body.to_string()
}

/// The value of one sample (`name{labels}` exactly as rendered); 0 if absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')).map(|v| v.parse().unwrap())).unwrap_or(0.0)
}

/// The sum of a gauge over workers, for one state.
fn connections(text: &str, state: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with("ringmail_imap_connections{") && l.contains(&format!("state=\"{state}\"")))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

fn wait_for(addr: SocketAddr, what: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let t = scrape(addr);
        if what(&t) {
            return t;
        }
        assert!(Instant::now() < deadline, "metrics never showed the expected state:\n{t}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_scripted_session_moves_the_counters_by_exactly_what_it_did() {
    let ts = TestServer::start(Driver::Auto, |c| c.metrics.listen = Some("127.0.0.1:0".parse().unwrap()));
    let m = ts.server.as_ref().unwrap().metrics_addr.unwrap();
    let before = scrape(m);

    let mut s = TcpStream::connect(ts.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut received = Vec::new();
    let mut sent = 0;
    let read_until = |s: &mut TcpStream, received: &mut Vec<u8>, marker: &str| {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(received).contains(marker) {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(received));
            received.extend_from_slice(&buf[..n]);
        }
    };
    let mut send = |s: &mut TcpStream, b: &[u8]| {
        s.write_all(b).unwrap();
        sent += b.len();
    };
    read_until(&mut s, &mut received, "\r\n");
    send(&mut s, b"a LOGIN joe wrong\r\n");
    read_until(&mut s, &mut received, "a NO");
    send(&mut s, b"b LOGIN joe secret\r\n");
    read_until(&mut s, &mut received, "b OK");
    send(&mut s, b"c SELECT INBOX\r\n");
    read_until(&mut s, &mut received, "c OK");
    let during = wait_for(m, |t| connections(t, "selected") >= 1.0);
    assert_eq!(connections(&during, "selected") - connections(&before, "selected"), 1.0);
    send(&mut s, b"d APPEND INBOX {5+}\r\nhello\r\n");
    read_until(&mut s, &mut received, "d OK");
    send(&mut s, b"e NOOP\r\nf FROBNICATE\r\n");
    read_until(&mut s, &mut received, "f BAD");
    send(&mut s, b"g LOGOUT\r\n");
    s.read_to_end(&mut received).unwrap();
    let text = String::from_utf8_lossy(&received).to_string();
    assert!(text.contains("g OK"), "{text}");

    let after = wait_for(m, |t| connections(t, "selected") == connections(&before, "selected"));
    let delta = |series: &str| sample(&after, series) - sample(&before, series);
    let cmd = |name: &str, result: &str| delta(&format!("ringmail_imap_commands_total{{command=\"{name}\",result=\"{result}\"}}"));
    assert_eq!(cmd("LOGIN", "no"), 1.0);
    assert_eq!(cmd("LOGIN", "ok"), 1.0);
    assert_eq!(cmd("SELECT", "ok"), 1.0);
    assert_eq!(cmd("APPEND", "ok"), 1.0);
    assert_eq!(cmd("NOOP", "ok"), 1.0);
    assert_eq!(cmd("(invalid)", "bad"), 1.0);
    assert_eq!(cmd("LOGOUT", "ok"), 1.0);
    assert_eq!(delta("ringmail_imap_command_duration_seconds_count{command=\"LOGIN\"}"), 2.0);
    assert_eq!(delta("ringmail_logins_total"), 1.0);
    assert_eq!(delta("ringmail_login_failures_total"), 1.0);
    assert_eq!(delta("ringmail_received_bytes_total"), sent as f64);
    assert_eq!(delta("ringmail_sent_bytes_total"), received.len() as f64);
    assert!(delta("ringmail_store_sync_duration_seconds_count") >= 1.0, "the APPEND was synced");
    let gauge = |name: &str| after.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).map(|v| v.parse::<f64>().unwrap());
    let (free, size) = (gauge("ringmail_data_free_bytes").expect("free space gauge"), gauge("ringmail_data_size_bytes").expect("size gauge"));
    assert!(free > 0.0 && free <= size, "{free} of {size}");
    for state in ["not_authenticated", "authenticated", "selected", "idle"] {
        assert_eq!(connections(&after, state), connections(&before, state), "{state} back where it was");
    }
    let total: f64 =
        after.lines().filter(|l| l.starts_with("ringmail_imap_commands_total{")).map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap()).sum();
    let total_before: f64 =
        before.lines().filter(|l| l.starts_with("ringmail_imap_commands_total{")).map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap()).sum();
    assert_eq!(total - total_before, 7.0, "nothing else was counted");
}

#[test]
fn idle_sessions_and_deliveries_are_counted() {
    let ts = TestServer::start(Driver::Auto, |c| c.metrics.listen = Some("127.0.0.1:0".parse().unwrap()));
    let m = ts.server.as_ref().unwrap().metrics_addr.unwrap();
    let mut c = ts.client();
    c.login("joe", "secret");
    c.cmd("s", "SELECT INBOX");
    c.send("i IDLE");
    assert!(c.line().starts_with("+ "));
    wait_for(m, |t| connections(t, "idle") == 1.0);
    let mut l = TcpStream::connect(ts.lmtp.unwrap()).unwrap();
    l.write_all(b"LHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<joe>\r\nRCPT TO:<ann>\r\nDATA\r\nSubject: m\r\n\r\nhi\r\n.\r\nQUIT\r\n").unwrap();
    let mut r = String::new();
    l.read_to_string(&mut r).unwrap();
    assert_eq!(r.matches("250 2.0.0").count(), 2, "{r}");
    let t = wait_for(m, |t| sample(t, "ringmail_deliveries_total") == 2.0);
    assert_eq!(sample(&t, "ringmail_delivery_failures_total"), 0.0);
    assert!(c.line().contains("EXISTS"));
    c.send("DONE");
    c.until("i");
    wait_for(m, |t| connections(t, "idle") == 0.0 && connections(t, "selected") == 1.0);
    let mut other = TcpStream::connect(m).unwrap();
    other.write_all(b"GET /nothing HTTP/1.0\r\n\r\n").unwrap();
    let mut r = String::new();
    other.read_to_string(&mut r).unwrap();
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
}

/// The Grafana dashboard shipped in the package (packaging/) asks only for
/// series ringmail exports: a renamed metric fails here, not on a wall
/// display.
#[test]
fn the_grafana_dashboard_uses_only_exported_metrics() {
    let text = ringmail::metrics::Metrics::with_data_dir(2, "uring", Some(std::env::temp_dir())).render();
    let exported: std::collections::BTreeSet<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
    let dash: serde_json::Value = serde_json::from_str(&std::fs::read_to_string("packaging/grafana-dashboard.json").unwrap()).unwrap();
    let mut used = 0;
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(i) = rest.find("ringmail_") {
                let name: String = rest[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                let base = name.strip_suffix("_bucket").unwrap_or(&name);
                assert!(exported.contains(base), "panel {:?} asks for {name}, which ringmail does not export", panel["title"]);
                used += 1;
                rest = &rest[i + name.len()..];
            }
        }
    }
    assert!(used >= 20, "{used} series");
}
