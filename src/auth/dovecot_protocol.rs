//! The server side of Dovecot's authentication protocol (v1), which
//! Postfix's `smtpd_sasl_type = dovecot` speaks: Postfix asks whether a
//! SASL exchange (PLAIN or LOGIN) names a user with the right password,
//! and ringmail answers from its users, so mail is sent with the password
//! it is read with. Sans-io: lines in, lines and password checks out.
//!
//! The server greets with its version and mechanisms (`VERSION`, `MECH`,
//! `SPID`, `CUID`, `COOKIE`, `DONE`); the client sends `VERSION` and
//! `CPID`, then `AUTH <id> <mech> [params] [resp=<base64>]`, continues with
//! `CONT <id> <base64>` when answered `CONT`, and gets `OK <id>
//! user=<name>` or `FAIL <id> ...`. Lines end with LF; fields are split by
//! TAB.

use std::collections::HashMap;
use std::net::IpAddr;

use super::sasl::{self, Mechanism};
use super::AuthResult;

/// Longest line taken (Dovecot's limit).
pub const MAX_LINE: usize = 16384;
/// Exchanges one connection may have under way.
const MAX_PENDING: usize = 64;

/// A password to check for request `id`.
#[derive(Debug, PartialEq, Eq)]
pub struct Check {
    pub id: u32,
    pub user: String,
    pub password: Vec<u8>,
    /// The mail client's address (`rip`), for the failure delay.
    pub client: Option<IpAddr>,
    /// False with `no-penalty`: no failure delay.
    pub penalty: bool,
}

/// What a line asks of the caller.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this line (with its LF).
    Reply(String),
    /// Check a password, then send [`Connection::checked`]'s line.
    Check(Check),
    /// The peer does not speak the protocol: close.
    Close(&'static str),
}

struct Pending {
    mech: Mechanism,
    client: Option<IpAddr>,
    penalty: bool,
}

/// One client connection.
#[derive(Default)]
pub struct Connection {
    pending: HashMap<u32, Pending>,
    version_seen: bool,
}

/// The server's greeting: mechanisms PLAIN and LOGIN, both sending the
/// password in the clear to this server (`plaintext`).
pub fn handshake(pid: u32, connection: u32, cookie: &str) -> String {
    format!("VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\nSPID\t{pid}\nCUID\t{connection}\nCOOKIE\t{cookie}\nDONE\n")
}

/// Whether a request may send a password: over TLS (`secured`), or from a
/// client the cleartext rule trusts.
pub type CleartextRule<'a> = &'a dyn Fn(Option<IpAddr>) -> bool;

impl Connection {
    /// Handles one line (without its LF).
    pub fn line(&mut self, line: &[u8], cleartext_ok: CleartextRule) -> Action {
        let line = String::from_utf8_lossy(line);
        let mut f = line.split('\t');
        match f.next().unwrap_or("") {
            "VERSION" => match f.next() {
                Some("1") => {
                    self.version_seen = true;
                    Action::Reply(String::new())
                }
                _ => Action::Close("unsupported protocol version"),
            },
            "CPID" => Action::Reply(String::new()),
            _ if !self.version_seen => Action::Close("no VERSION from the client"),
            "AUTH" => self.auth(f, cleartext_ok),
            "CONT" => {
                let Some(id) = f.next().and_then(|i| i.parse::<u32>().ok()) else { return Action::Close("bad CONT") };
                let Some(p) = self.pending.remove(&id) else { return Action::Reply(format!("FAIL\t{id}\treason=Unknown request\n")) };
                self.step(id, p, f.next().unwrap_or(""))
            }
            "CANCEL" => {
                if let Some(id) = f.next().and_then(|i| i.parse::<u32>().ok()) {
                    self.pending.remove(&id);
                }
                Action::Reply(String::new())
            }
            _ => Action::Close("unknown command"),
        }
    }

    fn auth<'a>(&mut self, mut f: impl Iterator<Item = &'a str>, cleartext_ok: CleartextRule) -> Action {
        let Some(id) = f.next().and_then(|i| i.parse::<u32>().ok()) else { return Action::Close("bad AUTH") };
        let mech = f.next().unwrap_or("").to_ascii_uppercase();
        let (mut secured, mut penalty, mut client, mut resp) = (false, true, None, None);
        for p in f {
            match p.split_once('=') {
                Some(("rip", v)) => client = v.parse().ok(),
                Some(("resp", v)) => resp = Some(v.to_string()),
                None if p == "secured" => secured = true,
                None if p == "no-penalty" => penalty = false,
                _ => {}
            }
        }
        if self.pending.len() >= MAX_PENDING {
            return Action::Reply(format!("FAIL\t{id}\ttemp\treason=Too many requests under way\n"));
        }
        let mech = match mech.as_str() {
            "PLAIN" => Mechanism::Plain,
            "LOGIN" => Mechanism::LoginUser,
            _ => return Action::Reply(format!("FAIL\t{id}\treason=Unsupported authentication mechanism\n")),
        };
        if !secured && !cleartext_ok(client) {
            return Action::Reply(format!("FAIL\t{id}\treason=Plaintext authentication disallowed on non-secure (SSL/TLS) connections.\n"));
        }
        let p = Pending { mech, client, penalty };
        match resp {
            Some(r) => self.step(id, p, &r),
            // No initial response: ask for it (PLAIN: empty challenge).
            None => {
                let prompt: &[u8] = if matches!(p.mech, Mechanism::LoginUser) { b"Username:" } else { b"" };
                self.pending.insert(id, p);
                Action::Reply(format!("CONT\t{id}\t{}\n", sasl::encode(prompt)))
            }
        }
    }

    /// The next response of exchange `id`.
    fn step(&mut self, id: u32, p: Pending, b64: &str) -> Action {
        let Some(r) = sasl::decode(b64.as_bytes()) else { return Action::Reply(format!("FAIL\t{id}\treason=Invalid base64 data\n")) };
        let check = |user: &[u8], password: &[u8]| {
            Action::Check(Check { id, user: String::from_utf8_lossy(user).into_owned(), password: password.to_vec(), client: p.client, penalty: p.penalty })
        };
        match &p.mech {
            Mechanism::Plain => match sasl::plain(&r) {
                // An authorization identity other than the user is not given.
                Some((authz, user, pass)) if authz.is_empty() || authz == user => check(user, pass),
                Some((_, user, _)) => Action::Reply(format!("FAIL\t{id}\tuser={}\treason=Authorization identity refused\n", clean(user))),
                None => Action::Reply(format!("FAIL\t{id}\treason=Invalid PLAIN response\n")),
            },
            Mechanism::LoginUser => {
                self.pending.insert(id, Pending { mech: Mechanism::LoginPassword(r), client: p.client, penalty: p.penalty });
                Action::Reply(format!("CONT\t{id}\t{}\n", sasl::encode(b"Password:")))
            }
            Mechanism::LoginPassword(user) => check(user, &r),
        }
    }

    /// The answer to a password check.
    pub fn checked(&self, check: &Check, result: &AuthResult) -> String {
        let id = check.id;
        match result {
            AuthResult::Ok(user) => format!("OK\t{id}\tuser={}\n", clean(user.as_bytes())),
            AuthResult::Failed => format!("FAIL\t{id}\tuser={}\n", clean(check.user.as_bytes())),
            AuthResult::Unavailable => format!("FAIL\t{id}\tuser={}\ttemp\n", clean(check.user.as_bytes())),
        }
    }
}

/// A user name as a field: no TAB, LF or control bytes.
fn clean(b: &[u8]) -> String {
    String::from_utf8_lossy(b).chars().filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANY: CleartextRule = &|_| true;
    const NONE: CleartextRule = &|_| false;

    fn b64(s: &[u8]) -> String {
        sasl::encode(s)
    }

    #[test]
    fn postfix_exchanges_plain_and_login() {
        assert!(handshake(7, 1, "00ff").starts_with("VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\n"));
        let mut c = Connection::default();
        assert_eq!(c.line(b"AUTH\t1\tPLAIN", ANY), Action::Close("no VERSION from the client"));
        assert_eq!(c.line(b"VERSION\t1\t0", ANY), Action::Reply(String::new()));
        assert_eq!(c.line(b"CPID\t4242", ANY), Action::Reply(String::new()));
        // PLAIN with the initial response, as Postfix sends it.
        let line = format!("AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=192.0.2.7\tsecured\tresp={}", b64(b"\0ann\0pw"));
        let Action::Check(chk) = c.line(line.as_bytes(), NONE) else { panic!() };
        assert_eq!(chk, Check { id: 1, user: "ann".into(), password: b"pw".to_vec(), client: "192.0.2.7".parse().ok(), penalty: true });
        assert_eq!(c.checked(&chk, &AuthResult::Ok("ann".into())), "OK\t1\tuser=ann\n");
        assert_eq!(c.checked(&chk, &AuthResult::Failed), "FAIL\t1\tuser=ann\n");
        assert_eq!(c.checked(&chk, &AuthResult::Unavailable), "FAIL\t1\tuser=ann\ttemp\n");
        // LOGIN, one step at a time.
        assert_eq!(c.line(b"AUTH\t2\tLOGIN\tservice=smtp\tsecured\tno-penalty", NONE), Action::Reply(format!("CONT\t2\t{}\n", b64(b"Username:"))));
        assert_eq!(c.line(format!("CONT\t2\t{}", b64(b"ann")).as_bytes(), NONE), Action::Reply(format!("CONT\t2\t{}\n", b64(b"Password:"))));
        let Action::Check(chk) = c.line(format!("CONT\t2\t{}", b64(b"pw")).as_bytes(), NONE) else { panic!() };
        assert_eq!((chk.user.as_str(), chk.penalty), ("ann", false));
        // PLAIN without an initial response: an empty challenge first.
        assert_eq!(c.line(b"AUTH\t3\tPLAIN\tsecured", NONE), Action::Reply("CONT\t3\t\n".into()));
        assert!(matches!(c.line(format!("CONT\t3\t{}", b64(b"\0ann\0pw")).as_bytes(), NONE), Action::Check(_)));
    }

    #[test]
    fn refusals() {
        let mut c = Connection::default();
        assert_eq!(c.line(b"VERSION\t2\t0", ANY), Action::Close("unsupported protocol version"));
        let mut c = Connection::default();
        c.line(b"VERSION\t1\t1", ANY);
        assert_eq!(c.line(b"AUTH\t1\tCRAM-MD5\tsecured", ANY), Action::Reply("FAIL\t1\treason=Unsupported authentication mechanism\n".into()));
        assert!(matches!(c.line(b"AUTH\t2\tPLAIN\trip=192.0.2.7\tresp=AGEAYg==", NONE), Action::Reply(r) if r.contains("Plaintext authentication disallowed")));
        assert!(matches!(c.line(b"AUTH\t3\tPLAIN\trip=127.0.0.1\tresp=AGEAYg==", ANY), Action::Check(_)), "a trusted client without TLS");
        assert_eq!(c.line(b"AUTH\t4\tPLAIN\tsecured\tresp=!!", ANY), Action::Reply("FAIL\t4\treason=Invalid base64 data\n".into()));
        assert!(
            matches!(c.line(format!("AUTH\t5\tPLAIN\tsecured\tresp={}", b64(b"bob\0ann\0pw")).as_bytes(), ANY), Action::Reply(r) if r.starts_with("FAIL\t5\tuser=ann"))
        );
        assert_eq!(c.line(b"CONT\t99\tAAAA", ANY), Action::Reply("FAIL\t99\treason=Unknown request\n".into()));
        assert_eq!(c.line(b"HELLO", ANY), Action::Close("unknown command"));
        // A user name cannot smuggle fields into the answer.
        let chk = Check { id: 6, user: "a\tb\nc".into(), password: vec![], client: None, penalty: true };
        assert_eq!(c.checked(&chk, &AuthResult::Failed), "FAIL\t6\tuser=abc\n");
    }

    proptest::proptest! {
        #[test]
        fn any_line_is_answered_without_panic(line in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let mut c = Connection::default();
            c.line(b"VERSION\t1\t2", ANY);
            let _ = c.line(&line, ANY);
        }
    }
}
