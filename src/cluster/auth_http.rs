//! nginx's mail auth protocol (`auth_http`, ngx_mail_auth_http_module):
//! nginx sends `GET` with the client's `Auth-User`, `Auth-Pass` (both
//! URL-escaped), `Auth-Protocol`, `Auth-Login-Attempt` and `Client-IP`; the
//! answer's headers say `Auth-Status: OK` with the backend's `Auth-Server`
//! (an address) and `Auth-Port`, or an error, with `Auth-Wait` seconds
//! before nginx lets the client try again (no `Auth-Wait`: nginx closes).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::map::{Backend, ClusterMap};

/// A request's headers are at most this long.
const MAX_REQUEST: usize = 16 << 10;
/// After this many failed attempts in one session nginx gets no
/// `Auth-Wait` and closes the connection (nginx keeps memory per attempt).
pub const MAX_ATTEMPTS: u32 = 10;
/// How long a client waits after a backend was found down.
const DOWN_WAIT: u64 = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub user: String,
    pub pass: Vec<u8>,
    pub protocol: String,
    pub attempt: u32,
    pub client_ip: Option<IpAddr>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Incomplete,
    Done(Request),
    Invalid(&'static str),
}

/// Parses a request (its headers; nginx sends no body).
pub fn parse(b: &[u8]) -> Parsed {
    let Some(end) = memchr::memmem::find(b, b"\r\n\r\n") else {
        return if b.len() > MAX_REQUEST { Parsed::Invalid("request too long") } else { Parsed::Incomplete };
    };
    let Ok(text) = std::str::from_utf8(&b[..end]) else { return Parsed::Invalid("request is not text") };
    let mut lines = text.split("\r\n");
    if !lines.next().is_some_and(|l| l.starts_with("GET ")) {
        return Parsed::Invalid("not a GET");
    }
    let mut r = Request { method: "plain".into(), user: String::new(), pass: Vec::new(), protocol: String::new(), attempt: 1, client_ip: None };
    for l in lines {
        let Some((name, value)) = l.split_once(':') else { continue };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "auth-method" => r.method = value.to_ascii_lowercase(),
            "auth-user" => match crate::proto::percent::decode(value) {
                Some(u) => r.user = u,
                None => return Parsed::Invalid("bad Auth-User"),
            },
            "auth-pass" => match crate::proto::percent::decode_bytes(value) {
                Some(p) => r.pass = p,
                None => return Parsed::Invalid("bad Auth-Pass"),
            },
            "auth-protocol" => r.protocol = value.to_ascii_lowercase(),
            "auth-login-attempt" => r.attempt = value.parse().unwrap_or(1),
            "client-ip" => r.client_ip = value.parse().ok(),
            _ => {}
        }
    }
    Parsed::Done(r)
}

/// What the password check said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Good,
    Bad,
    /// The user database could not be read: try again later.
    Unavailable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send the client to this backend.
    Ok(SocketAddr),
    /// Wrong user or password; the client may try again after `wait`
    /// seconds (None: nginx closes the connection).
    Invalid { wait: Option<u64> },
    /// Right password, but its backend cannot serve now: try again later.
    Unavailable { wait: u64, why: &'static str },
}

/// Decides for `req`: `verify` checks the password, `penalty` is the delay
/// the client's address has earned by its failures, `up` says whether a
/// backend is reachable.
pub fn decide(
    req: &Request,
    map: &ClusterMap,
    verify: impl FnOnce(&str, &[u8]) -> Verdict,
    penalty: impl FnOnce() -> Duration,
    up: impl Fn(&Backend) -> bool,
) -> Decision {
    let wait = |attempt: u32, d: Duration| (attempt < MAX_ATTEMPTS).then(|| d.as_secs_f64().ceil().max(1.0) as u64);
    // APOP and CRAM-MD5 need the password in the clear on our side.
    if req.method != "plain" && req.method != "login" {
        return Decision::Invalid { wait: wait(req.attempt, Duration::from_secs(1)) };
    }
    if req.protocol != "imap" {
        return Decision::Unavailable { wait: DOWN_WAIT, why: "only IMAP is served" };
    }
    match verify(&req.user, &req.pass) {
        Verdict::Good => {
            let home = map.home(&req.user);
            if up(home) {
                Decision::Ok(home.imap)
            } else {
                Decision::Unavailable { wait: DOWN_WAIT, why: "the mailbox's server is down" }
            }
        }
        Verdict::Bad => Decision::Invalid { wait: wait(req.attempt, penalty()) },
        Verdict::Unavailable => Decision::Unavailable { wait: DOWN_WAIT, why: "authentication is unavailable" },
    }
}

/// The HTTP answer to nginx.
pub fn response(d: &Decision) -> Vec<u8> {
    let mut s = String::from("HTTP/1.0 200 OK\r\n");
    match d {
        Decision::Ok(addr) => s.push_str(&format!("Auth-Status: OK\r\nAuth-Server: {}\r\nAuth-Port: {}\r\n", addr.ip(), addr.port())),
        Decision::Invalid { wait } => {
            s.push_str("Auth-Status: Invalid login or password\r\n");
            if let Some(w) = wait {
                s.push_str(&format!("Auth-Wait: {w}\r\n"));
            }
        }
        Decision::Unavailable { wait, why } => {
            // Auth-Error-Code is what an SMTP client would see.
            s.push_str(&format!("Auth-Status: Temporary server problem, try again later ({why})\r\nAuth-Error-Code: 451 4.3.0\r\nAuth-Wait: {wait}\r\n"));
        }
    }
    s.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
    s.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> ClusterMap {
        ClusterMap::parse(
            "[[backend]]\nname=\"b1\"\nimap=\"10.0.0.1:143\"\nlmtp=\"10.0.0.1:24\"\n\
             [[backend]]\nname=\"b2\"\nimap=\"10.0.0.2:143\"\nlmtp=\"10.0.0.2:24\"\n[overrides]\nalice=\"b2\"\n",
        )
        .unwrap()
    }

    fn request(attempt: u32) -> Request {
        let raw = format!(
            "GET /auth HTTP/1.0\r\nHost: localhost\r\nAuth-Method: plain\r\nAuth-User: alice\r\nAuth-Pass: p%20w%25\r\n\
             Auth-Protocol: imap\r\nAuth-Login-Attempt: {attempt}\r\nClient-IP: 192.0.2.42\r\nClient-Host: [UNAVAILABLE]\r\n\r\n"
        );
        let Parsed::Done(r) = parse(raw.as_bytes()) else { panic!() };
        r
    }

    #[test]
    fn nginx_requests_parse_with_escaped_credentials() {
        let r = request(2);
        assert_eq!((r.user.as_str(), r.pass.as_slice(), r.attempt), ("alice", &b"p w%"[..], 2));
        assert_eq!(r.client_ip, Some("192.0.2.42".parse().unwrap()));
        assert_eq!(parse(b"GET /auth HTTP/1.0\r\nAuth-User: x\r\n"), Parsed::Incomplete);
        assert!(matches!(parse(b"POST / HTTP/1.0\r\n\r\n"), Parsed::Invalid(_)));
        assert!(matches!(parse(&vec![b'a'; MAX_REQUEST + 1]), Parsed::Invalid(_)));
    }

    #[test]
    fn the_answer_sends_good_logins_home_and_delays_bad_ones() {
        let m = map();
        let good = |_: &str, p: &[u8]| if p == b"p w%" { Verdict::Good } else { Verdict::Bad };
        let d = decide(&request(1), &m, good, || Duration::ZERO, |_| true);
        assert_eq!(d, Decision::Ok("10.0.0.2:143".parse().unwrap()));
        assert_eq!(
            String::from_utf8(response(&d)).unwrap(),
            "HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 10.0.0.2\r\nAuth-Port: 143\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let bad = |_: &str, _: &[u8]| Verdict::Bad;
        assert_eq!(decide(&request(1), &m, bad, || Duration::from_millis(2500), |_| true), Decision::Invalid { wait: Some(3) });
        assert_eq!(decide(&request(MAX_ATTEMPTS), &m, bad, || Duration::ZERO, |_| true), Decision::Invalid { wait: None });
        let down = decide(&request(1), &m, good, || Duration::ZERO, |b| b.name != "b2");
        assert!(matches!(down, Decision::Unavailable { .. }));
        assert!(String::from_utf8(response(&down)).unwrap().contains("Auth-Wait: 5\r\n"));
        let mut pop = request(1);
        pop.protocol = "pop3".into();
        assert!(matches!(decide(&pop, &m, good, || Duration::ZERO, |_| true), Decision::Unavailable { .. }));
        let mut cram = request(1);
        cram.method = "cram-md5".into();
        assert!(matches!(decide(&cram, &m, good, || Duration::ZERO, |_| true), Decision::Invalid { .. }));
    }
}
