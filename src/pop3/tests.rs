//! POP3 transcripts: client bytes in, the exact server bytes out.

use std::path::Path;
use std::rc::Rc;

use super::*;
use crate::auth::AuthResult;
use crate::proto::Out;
use crate::store::{MemIo, Settings, Store};
use proptest::strategy::Strategy;

struct Harness {
    store: Store,
    session: Session,
    out: Out,
    /// The POP3 lock (the network layer's, per user).
    locked: bool,
}

fn harness(facts: Facts, messages: &[&str]) -> Harness {
    let store = Store::new(Rc::new(MemIo::new()), Path::new("/mail"), Settings::default());
    let u = store.user("ann", 1).unwrap();
    let mb = u.mailbox("INBOX").unwrap();
    for m in messages {
        mb.borrow_mut().append_bytes(m.as_bytes(), 0, 0, 5).unwrap();
    }
    let t = u.durable(&mb);
    store.run_pending();
    crate::store::exec::block_on(t).unwrap();
    let mut out = Out::new();
    let session = Session::new(facts);
    session.greeting(&mut out);
    Harness { store, session, out, locked: false }
}

const SECURE: Facts = Facts { tls: true, cleartext_ok: false, can_stls: false };

impl Harness {
    /// Sends `input`, runs the steps as the network layer would, and
    /// answers what was written (greeting included the first time).
    fn send(&mut self, input: &str) -> String {
        self.session.feed(input.as_bytes());
        let mut step = self.session.step(&mut self.out);
        loop {
            step = match step {
                Step::Read | Step::Close => break,
                Step::Flush => self.session.step(&mut self.out),
                Step::StartTls => {
                    self.session.tls_started();
                    self.session.step(&mut self.out)
                }
                Step::Authenticate { user, password } => {
                    let r = if user.eq_ignore_ascii_case("ann") && password == b"pw" { AuthResult::Ok("ann".into()) } else { AuthResult::Failed };
                    self.session.auth_done(r, &mut self.out)
                }
                Step::Open(user) => {
                    let r = match self.locked {
                        true => Err(OpenError::InUse),
                        false => Ok(Maildrop::open(self.store.user(&user, 1).unwrap()).unwrap()),
                    };
                    self.session.opened(r, &mut self.out)
                }
                Step::AwaitDurable(t) => {
                    self.store.run_pending();
                    let r = crate::store::exec::block_on(t);
                    self.session.quit_done(r, &mut self.out)
                }
            };
        }
        let text = String::from_utf8(self.out.flatten()).unwrap();
        self.out.clear();
        text
    }

    fn inbox(&self) -> Vec<(u32, u8)> {
        let u = self.store.user("ann", 1).unwrap();
        let mb = u.mailbox("INBOX").unwrap();
        let m = mb.borrow();
        m.msgs().iter().map(|x| (x.uid, x.flags)).collect()
    }
}

const M1: &str = "Subject: one\r\n\r\nfirst\r\n";
const M2: &str = "Subject: two\r\n\r\n.leading dot\r\n..two dots\r\nend\r\n";

#[test]
fn rfc1939_session_stat_list_retr_dele_quit() {
    let mut h = harness(SECURE, &[M1, M2]);
    assert_eq!(h.send("USER ann\r\nPASS pw\r\n"), "+OK ringmail ready.\r\n+OK\r\n+OK Logged in.\r\n");
    let (s1, s2) = (M1.len(), M2.len());
    assert_eq!(h.send("STAT\r\n"), format!("+OK 2 {}\r\n", s1 + s2));
    assert_eq!(h.send("LIST\r\n"), format!("+OK 2 messages ({} octets):\r\n1 {s1}\r\n2 {s2}\r\n.\r\n", s1 + s2));
    assert_eq!(h.send("LIST 2\r\n"), format!("+OK 2 {s2}\r\n"));
    assert_eq!(h.send("LIST 3\r\n"), "-ERR There's no message with that number.\r\n");
    // Section 3: lines starting with "." are dot-stuffed.
    assert_eq!(h.send("RETR 2\r\n"), format!("+OK {s2} octets\r\nSubject: two\r\n\r\n..leading dot\r\n...two dots\r\nend\r\n.\r\n"));
    assert_eq!(h.send("TOP 2 1\r\n"), "+OK\r\nSubject: two\r\n\r\n..leading dot\r\n.\r\n");
    assert_eq!(h.send("TOP 1 0\r\n"), "+OK\r\nSubject: one\r\n\r\n.\r\n");
    // UIDL: Dovecot's %08Xu%08Xv.
    let uv = h.store.user("ann", 1).unwrap().mailbox("INBOX").unwrap().borrow().uidvalidity();
    assert_eq!(h.send("UIDL\r\n"), format!("+OK\r\n1 00000001{uv:08X}\r\n2 00000002{uv:08X}\r\n.\r\n"));
    assert_eq!(h.send("DELE 1\r\n"), "+OK Marked to be deleted.\r\n");
    assert_eq!(h.send("RETR 1\r\n"), "-ERR Message is deleted.\r\n");
    assert_eq!(h.send("STAT\r\nLIST\r\n"), format!("+OK 1 {s2}\r\n+OK 1 messages ({s2} octets):\r\n2 {s2}\r\n.\r\n"));
    assert_eq!(h.send("RSET\r\nSTAT\r\n"), format!("+OK\r\n+OK 2 {}\r\n", s1 + s2));
    assert_eq!(h.send("DELE 1\r\nNOOP\r\n"), "+OK Marked to be deleted.\r\n+OK\r\n");
    // RETR set \Seen; nothing was expunged before QUIT (section 6).
    assert_eq!(h.inbox(), [(1, 0), (2, crate::store::format::F_SEEN)]);
    assert_eq!(h.send("QUIT\r\n"), "+OK Logging out, messages deleted.\r\n");
    assert_eq!(h.inbox(), [(2, crate::store::format::F_SEEN)]);
}

#[test]
fn a_session_that_ends_without_quit_deletes_nothing() {
    let mut h = harness(SECURE, &[M1]);
    h.send("USER ann\r\nPASS pw\r\nDELE 1\r\n");
    drop(h.session);
    h.session = Session::new(SECURE);
    assert_eq!(h.inbox(), [(1, 0)]);
}

#[test]
fn authorization_state_rules() {
    let mut h = harness(SECURE, &[]);
    h.send("");
    assert_eq!(h.send("STAT\r\n"), "-ERR Unknown command.\r\n");
    assert_eq!(h.send("PASS pw\r\n"), "-ERR No username given.\r\n");
    assert_eq!(h.send("USER ann\r\nPASS nope\r\n"), "+OK\r\n-ERR [AUTH] Authentication failed.\r\n");
    assert_eq!(h.send("APOP ann 0123\r\n"), "-ERR APOP is not supported.\r\n");
    assert_eq!(h.send("FOO\r\n"), "-ERR Unknown command: FOO\r\n");
    // RFC 3206: a maildrop another session holds.
    h.locked = true;
    assert_eq!(h.send("USER ann\r\nPASS pw\r\n"), "+OK\r\n-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n");
    h.locked = false;
    assert_eq!(h.send("USER ann\r\nPASS pw\r\nSTAT\r\n"), "+OK\r\n+OK Logged in.\r\n+OK 0 0\r\n");
    assert_eq!(h.send("USER ann\r\n"), "-ERR Unknown command.\r\n");
    assert_eq!(h.send("QUIT\r\n"), "+OK Logging out.\r\n");
}

#[test]
fn auth_plain_and_login_with_and_without_initial_responses() {
    use base64::Engine;
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    let mut h = harness(SECURE, &[]);
    h.send("");
    assert_eq!(h.send("AUTH\r\n"), "+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n");
    assert_eq!(h.send("AUTH CRAM-MD5\r\n"), "-ERR [AUTH] Unsupported authentication mechanism.\r\n");
    assert_eq!(h.send(&format!("AUTH PLAIN {}\r\n", b64(b"\0ann\0wrong"))), "-ERR [AUTH] Authentication failed.\r\n");
    assert_eq!(h.send("AUTH PLAIN\r\n*\r\n"), "+ \r\n-ERR Authentication aborted.\r\n");
    assert_eq!(h.send(&format!("AUTH PLAIN\r\n{}\r\n", b64(b"bob\0ann\0pw"))), "+ \r\n-ERR [AUTH] Authentication failed.\r\n", "another authzid");
    let r = h.send(&format!("AUTH LOGIN\r\n{}\r\n{}\r\nSTAT\r\n", b64(b"ann"), b64(b"pw")));
    assert_eq!(r, "+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\n+OK Logged in.\r\n+OK 0 0\r\n");
    let mut h = harness(SECURE, &[]);
    h.send("");
    assert_eq!(h.send(&format!("AUTH PLAIN {}\r\nSTAT\r\n", b64(b"\0ann\0pw"))), "+OK Logged in.\r\n+OK 0 0\r\n");
}

#[test]
fn capa_and_stls_and_no_passwords_in_the_clear() {
    let clear = Facts { tls: false, cleartext_ok: false, can_stls: true };
    let mut h = harness(clear, &[]);
    h.send("");
    assert_eq!(h.send("CAPA\r\n"), "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nSTLS\r\nIMPLEMENTATION ringmail\r\n.\r\n");
    let refused = "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.\r\n";
    assert_eq!(h.send("USER ann\r\n"), refused);
    assert_eq!(h.send("AUTH PLAIN AGFubgBwdw==\r\n"), refused);
    // RFC 2595 4: after STLS, the capabilities change.
    assert_eq!(h.send("STLS\r\n"), "+OK Begin TLS negotiation now.\r\n");
    assert_eq!(h.send("STLS\r\n"), "-ERR TLS is already active.\r\n");
    assert_eq!(
        h.send("CAPA\r\n"),
        "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nUSER\r\nSASL PLAIN LOGIN\r\nIMPLEMENTATION ringmail\r\n.\r\n"
    );
    assert_eq!(h.send("USER ann\r\nPASS pw\r\n"), "+OK\r\n+OK Logged in.\r\n");
}

#[test]
fn a_message_expunged_by_imap_meanwhile_is_an_error_and_new_mail_waits() {
    let mut h = harness(SECURE, &[M1, M2]);
    h.send("USER ann\r\nPASS pw\r\n");
    {
        let u = h.store.user("ann", 1).unwrap();
        let mb = u.mailbox("INBOX").unwrap();
        mb.borrow_mut().expunge(&[1]).unwrap();
        mb.borrow_mut().append_bytes(b"Subject: new\r\n\r\nx\r\n", 0, 0, 9).unwrap();
        let t = u.durable(&mb);
        h.store.run_pending();
        crate::store::exec::block_on(t).unwrap();
    }
    assert_eq!(h.send("RETR 1\r\n"), "-ERR Message was expunged by another session.\r\n");
    assert!(h.send("STAT\r\n").starts_with("+OK 2 "), "the snapshot of section 8");
}

#[test]
fn long_answers_come_in_slices_and_bad_input_is_bounded() {
    // A message of many short dot lines: the output budget holds.
    let big = format!("Subject: dots\r\n\r\n{}", ".\r\n".repeat(200_000));
    let mut h = harness(SECURE, &[&big]);
    h.send("USER ann\r\nPASS pw\r\n");
    h.session.feed(b"RETR 1\r\n");
    let mut slices = 0;
    let mut text = Vec::new();
    loop {
        let step = h.session.step(&mut h.out);
        assert!(h.out.len() <= BUDGET + 4096, "{}", h.out.len());
        text.extend(h.out.flatten());
        h.out.clear();
        slices += 1;
        if !matches!(step, Step::Flush) {
            break;
        }
    }
    assert!(slices > 2, "{slices}");
    let text = String::from_utf8(text).unwrap();
    assert!(text.ends_with("..\r\n..\r\n.\r\n"));
    assert_eq!(text.split("\r\n").filter(|l| *l == "..").count(), 200_000, "every dot line stuffed");
    // A line past the limit, then garbage until the session gives up.
    let mut h = harness(SECURE, &[]);
    h.send("");
    assert_eq!(h.send(&"x".repeat(MAX_LINE + 10)), "");
    assert_eq!(h.send("\r\n"), "-ERR Line too long.\r\n");
    let r = h.send(&"BAD\r\n".repeat(30));
    assert!(r.ends_with("-ERR Too many bad commands.\r\n"), "{r}");
}

proptest::proptest! {
    /// Any sequence of commands, well-formed or not, in any state: no
    /// panic, and every step's output within its budget (the fuzz target's
    /// checks, on inputs made of POP3's own words).
    #[test]
    fn any_command_sequence_is_served(cmds in proptest::collection::vec(
        proptest::prop_oneof![
            proptest::strategy::Just("USER fuzz".to_string()), proptest::strategy::Just("PASS x".to_string()),
            proptest::strategy::Just("AUTH PLAIN AGZ1enoAeA==".to_string()), proptest::strategy::Just("AUTH LOGIN".to_string()),
            proptest::strategy::Just("STAT".to_string()), proptest::strategy::Just("LIST".to_string()), proptest::strategy::Just("UIDL".to_string()),
            proptest::strategy::Just("RSET".to_string()), proptest::strategy::Just("QUIT".to_string()), proptest::strategy::Just("STLS".to_string()),
            proptest::strategy::Just("CAPA".to_string()), proptest::strategy::Just("*".to_string()),
            (0u32..6).prop_map(|n| format!("RETR {n}")), (0u32..6).prop_map(|n| format!("DELE {n}")),
            (0u32..6, 0u64..4).prop_map(|(n, l)| format!("TOP {n} {l}")), "[ -~]{0,20}",
        ],
        0..40,
    )) {
        let input: String = cmds.iter().map(|c| format!("{c}\r\n")).collect();
        crate::fuzzing::pop3(input.as_bytes());
    }
}
