//! Transcript tests of the engine: client bytes in, exact replies out.

use super::*;

struct Dir;

impl Directory for Dir {
    fn user_exists(&self, user: &str) -> bool {
        matches!(user, "alice" | "bob")
    }
    fn is_local_domain(&self, domain: &str, dialect: Dialect) -> bool {
        dialect == Dialect::Lmtp || domain.eq_ignore_ascii_case("example.org")
    }
}

/// A delivered envelope with the data the engine handed out for it.
struct Got {
    env: Envelope,
    data: Vec<u8>,
}

impl std::ops::Deref for Got {
    type Target = Envelope;
    fn deref(&self) -> &Envelope {
        &self.env
    }
}

/// Feeds `input` in chunks of `chunk` bytes; delivers every envelope with
/// `results` and collects the envelopes and all replies.
fn run(dialect: Dialect, input: &[u8], chunk: usize, results: &[Result<(), DeliveryError>], limits: Limits) -> (String, Vec<Got>, bool) {
    run_session(Session::new(dialect, "mx.example.org", limits), input, chunk, results)
}

/// As `run`, on a given session; a TLS handshake shows as `[TLS]` in the output.
fn run_session(mut s: Session, input: &[u8], chunk: usize, results: &[Result<(), DeliveryError>]) -> (String, Vec<Got>, bool) {
    let mut out = Vec::new();
    s.greeting(&mut out);
    let mut envs = Vec::new();
    let mut closed = false;
    let mut data = Vec::new();
    'feed: for c in input.chunks(chunk.max(1)) {
        s.feed(c);
        loop {
            let step = s.step(&Dir, &mut out);
            data.extend_from_slice(s.pending_data());
            assert!(s.pending_data().len() <= 2 * (c.len() + 3), "the engine hands data out as it decodes it");
            s.clear_data();
            match step {
                Step::Read => {
                    if !s.in_data() {
                        data.clear();
                    }
                    break;
                }
                Step::Deliver(e) => {
                    let n = e.recipients.len();
                    assert_eq!(e.size, data.len() as u64);
                    envs.push(Got { env: e, data: std::mem::take(&mut data) });
                    s.delivered(&results[..n], &mut out);
                }
                Step::Close => {
                    closed = true;
                    break 'feed;
                }
                Step::StartTls => {
                    out.extend_from_slice(b"[TLS]");
                    s.tls_started();
                    // What was pipelined behind STARTTLS was dropped; the
                    // test's remaining input stands for what comes after.
                    continue 'feed;
                }
            }
        }
    }
    (String::from_utf8(out).unwrap(), envs, closed)
}

fn lmtp(input: &str) -> (String, Vec<Got>, bool) {
    run(Dialect::Lmtp, input.as_bytes(), usize::MAX, &[Ok(()), Ok(()), Ok(())], Limits::default())
}

const OK3: &[Result<(), DeliveryError>] = &[Ok(()), Ok(()), Ok(())];

#[test]
fn lmtp_answers_once_per_recipient_after_data_rfc2033_4_2() {
    let input = "LHLO mta\r\nMAIL FROM:<s@x.net>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<nobody@example.org>\r\nRCPT TO:<BOB>\r\nDATA\r\nSubject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n";
    let (out, envs, closed) = lmtp(input);
    assert_eq!(
        out,
        "220 mx.example.org LMTP ringmail ready\r\n\
         250-mx.example.org\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 SIZE 67108864\r\n\
         250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 User unknown\r\n250 2.1.5 Ok\r\n\
         354 End data with <CR><LF>.<CR><LF>\r\n\
         250 2.0.0 Ok: delivered <alice@example.org>\r\n250 2.0.0 Ok: delivered <BOB>\r\n\
         221 2.0.0 Bye\r\n"
    );
    assert!(closed);
    assert_eq!(envs.len(), 1);
    let e = &envs[0];
    assert_eq!(e.from, "s@x.net");
    assert_eq!(e.recipients.iter().map(|r| r.user.as_str()).collect::<Vec<_>>(), ["alice", "bob"]);
    assert_eq!(&e.data[..], b"Subject: hi\r\n\r\nbody\r\n");
    assert_eq!(e.prefix(&e.recipients[0], None), b"Return-Path: <s@x.net>\r\nDelivered-To: alice@example.org\r\n");
}

#[test]
fn per_recipient_failures_are_reported_in_order() {
    let input = b"LHLO m\r\nMAIL FROM:<>\r\nRCPT TO:<alice>\r\nRCPT TO:<bob>\r\nDATA\r\nx\r\n.\r\n";
    let results = [Err(DeliveryError::Temporary("disk full".into())), Ok(())];
    let (out, _, _) = run(Dialect::Lmtp, input, usize::MAX, &results, Limits::default());
    assert!(out.ends_with("451 4.3.0 Temporary failure: disk full <alice>\r\n250 2.0.0 Ok: delivered <bob>\r\n"), "{out}");
}

#[test]
fn smtp_gives_one_answer_and_refuses_to_relay_rfc5321() {
    let input =
        "EHLO client.net\r\nMAIL FROM:<s@x.net> SIZE=100 BODY=8BITMIME\r\nRCPT TO:<alice@elsewhere.com>\r\nRCPT TO:<alice@Example.org>\r\nDATA\r\nhi\r\n.\r\n";
    let (out, envs, _) = run(Dialect::Smtp, input.as_bytes(), usize::MAX, OK3, Limits::default());
    assert!(out.starts_with("220 mx.example.org ESMTP ringmail ready\r\n250-mx.example.org\r\n"));
    assert!(
        out.ends_with("250 2.1.0 Ok\r\n550 5.7.1 Relay access denied\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued\r\n"),
        "{out}"
    );
    assert_eq!(envs[0].recipients.len(), 1);
}

#[test]
fn smtp_trace_header_names_the_client() {
    let mut s = Session::new(Dialect::Smtp, "mx.example.org", Limits::default());
    s.set_peer("192.0.2.7");
    let mut out = Vec::new();
    s.feed(b"HELO client.net\r\n");
    assert_eq!(s.step(&Dir, &mut out), Step::Read);
    let r = Recipient { address: "alice@example.org".into(), user: "alice".into(), mailbox: None, hop: false };
    let t = s.trace(&r, "Fri, 27 Nov 2026 06:00:00 +0000").unwrap();
    assert_eq!(
        t,
        "Received: from client.net (192.0.2.7)\r\n\tby mx.example.org (ringmail) with SMTP\r\n\tfor <alice@example.org>; Fri, 27 Nov 2026 06:00:00 +0000\r\n"
    );
    let l = Session::new(Dialect::Lmtp, "h", Limits::default());
    assert_eq!(l.trace(&r, "x"), None);
}

#[test]
fn greeting_command_must_match_the_dialect() {
    let (out, _, _) = lmtp("EHLO x\r\nHELO x\r\nLHLO\r\nMAIL FROM:<a>\r\n");
    assert_eq!(
        out,
        "220 mx.example.org LMTP ringmail ready\r\n500 5.5.1 This is LMTP: use LHLO\r\n500 5.5.1 This is LMTP: use LHLO\r\n\
         501 5.5.4 A domain or address literal is required\r\n503 5.5.1 Send LHLO first\r\n"
    );
    let (out, _, _) = run(Dialect::Smtp, b"LHLO x\r\n", 1, OK3, Limits::default());
    assert!(out.ends_with("500 5.5.1 Use EHLO or HELO\r\n"));
}

#[test]
fn command_order_is_enforced() {
    let (out, envs, _) = lmtp("LHLO m\r\nRCPT TO:<alice>\r\nDATA\r\nMAIL FROM:<a>\r\nMAIL FROM:<b>\r\nDATA\r\nRSET\r\nRCPT TO:<alice>\r\nNOOP\r\nFOO\r\n");
    assert!(envs.is_empty());
    let replies: Vec<&str> = out.lines().skip(6).collect();
    assert_eq!(
        replies,
        [
            "503 5.5.1 Need MAIL command first",
            "503 5.5.1 Need MAIL command first",
            "250 2.1.0 Ok",
            "503 5.5.1 Sender already given",
            "503 5.5.1 No valid recipients",
            "250 2.0.0 Ok",
            "503 5.5.1 Need MAIL command first",
            "250 2.0.0 Ok",
            "502 5.5.2 Command not recognized",
        ]
    );
}

#[test]
fn dot_unstuffing_and_end_marker_rfc5321_4_5_2() {
    let input = b"LHLO m\r\nMAIL FROM:<a>\r\nRCPT TO:<alice>\r\nDATA\r\n..leading dot\r\n.\r\n";
    let (_, envs, _) = run(Dialect::Lmtp, input, usize::MAX, OK3, Limits::default());
    assert_eq!(&envs[0].data[..], b".leading dot\r\n");
    // ".\r\n" only ends the data at the start of a line; ".x" is unstuffed.
    let input = b"LHLO m\r\nMAIL FROM:<a>\r\nRCPT TO:<alice>\r\nDATA\r\na.\r\n.x\r\n.\r\n";
    let (_, envs, _) = run(Dialect::Lmtp, input, usize::MAX, OK3, Limits::default());
    assert_eq!(&envs[0].data[..], b"a.\r\nx\r\n");
}

#[test]
fn every_split_of_the_input_gives_the_same_result() {
    let input = b"LHLO m\r\nMAIL FROM:<a@b>\r\nRCPT TO:<alice>\r\nDATA\r\nH: v\r\nbare\nlf\n\xe9 8bit\rx\r\n..\r\n.\r\nNOOP\r\n";
    let (whole, envs, _) = run(Dialect::Lmtp, input, usize::MAX, OK3, Limits::default());
    assert_eq!(&envs[0].data[..], b"H: v\r\nbare\r\nlf\r\n\xe9 8bit\r\nx\r\n.\r\n");
    for chunk in 1..input.len() {
        let (out, e, _) = run(Dialect::Lmtp, input, chunk, OK3, Limits::default());
        assert_eq!(out, whole, "chunk {chunk}");
        assert_eq!(e[0].data, envs[0].data, "chunk {chunk}");
    }
}

#[test]
fn oversize_message_is_refused_after_data_and_session_continues() {
    let limits = Limits { max_message: 10, ..Limits::default() };
    let input = b"LHLO m\r\nMAIL FROM:<a> SIZE=11\r\nMAIL FROM:<a>\r\nRCPT TO:<alice>\r\nRCPT TO:<bob>\r\nDATA\r\n0123456789abc\r\n.\r\nNOOP\r\n";
    let (out, envs, _) = run(Dialect::Lmtp, input, 3, OK3, limits);
    assert!(envs.is_empty());
    assert!(out.contains("552 5.3.4 Message size exceeds fixed limit\r\n250 2.1.0 Ok\r\n"), "{out}");
    assert!(out.ends_with("354 End data with <CR><LF>.<CR><LF>\r\n552 5.3.4 Message size exceeds fixed limit\r\n552 5.3.4 Message size exceeds fixed limit\r\n250 2.0.0 Ok\r\n"), "{out}");
}

#[test]
fn x_mailbox_parameter_selects_the_folder() {
    let (_, envs, _) = lmtp("LHLO m\r\nMAIL FROM:<a>\r\nRCPT TO:<alice> X-MAILBOX=Lists+2Frust\r\nDATA\r\nx\r\n.\r\n");
    assert_eq!(envs[0].recipients[0].mailbox.as_deref(), Some("Lists/rust"));
    let (out, _, _) = run(Dialect::Smtp, b"EHLO m\r\nMAIL FROM:<a>\r\nRCPT TO:<alice@example.org> X-MAILBOX=Junk\r\n", usize::MAX, OK3, Limits::default());
    assert!(out.ends_with("555 5.5.4 Unsupported RCPT parameter\r\n"));
}

#[test]
fn abuse_closes_the_connection() {
    let limits = Limits { max_errors: 3, line_max: 64, ..Limits::default() };
    let (out, _, closed) = run(Dialect::Lmtp, b"X\r\nY\r\nZ\r\nNOOP\r\n", usize::MAX, OK3, limits);
    assert!(closed);
    assert!(out.ends_with("502 5.5.2 Command not recognized\r\n421 4.7.0 Too many errors, closing connection\r\n"));
    let long = [b'A'; 100];
    let (out, _, closed) = run(Dialect::Lmtp, &long, usize::MAX, OK3, limits);
    assert!(closed);
    assert!(out.ends_with("500 5.5.2 Line too long\r\n"));
}

#[test]
fn too_many_recipients_is_temporary_rfc5321_4_5_3_1_10() {
    let limits = Limits { max_recipients: 1, ..Limits::default() };
    let (out, envs, _) = run(Dialect::Lmtp, b"LHLO m\r\nMAIL FROM:<a>\r\nRCPT TO:<alice>\r\nRCPT TO:<bob>\r\nDATA\r\nx\r\n.\r\n", usize::MAX, OK3, limits);
    assert!(out.contains("452 4.5.3 Too many recipients\r\n"));
    assert_eq!(envs[0].recipients.len(), 1);
}

#[test]
fn xtext_decodes_hex_escapes_and_keeps_stray_plus() {
    assert_eq!(xtext_decode("a+2Bb+"), "a+b+");
    assert_eq!(xtext_decode("+4"), "+4");
    assert_eq!(xtext_decode("+zz"), "+zz");
}

#[test]
fn starttls_rfc3207() {
    let tls = || {
        let mut s = Session::new(Dialect::Smtp, "mx.example.org", Limits::default());
        s.offer_tls();
        s.set_peer("192.0.2.1");
        s
    };
    // Offered; what is pipelined behind STARTTLS (in the same chunk) is
    // dropped (RFC 3207 5); afterwards the client must EHLO again, which no
    // longer offers STARTTLS; the trace says ESMTPS (RFC 3848).
    let input = "EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@x.net>\r\n";
    let (out, _, _) = run_session(tls(), input.as_bytes(), usize::MAX, OK3);
    assert_eq!(
        out,
        "220 mx.example.org ESMTP ringmail ready\r\n\
         250-mx.example.org\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n250 SIZE 67108864\r\n\
         220 2.0.0 Ready to start TLS\r\n[TLS]"
    );
    let mut s = tls();
    let mut out = Vec::new();
    s.feed(b"EHLO c\r\nSTARTTLS\r\n");
    assert_eq!(s.step(&Dir, &mut out), Step::StartTls);
    s.tls_started();
    out.clear();
    s.feed(b"MAIL FROM:<a@x.net>\r\nEHLO c\r\nSTARTTLS\r\nMAIL FROM:<a@x.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nhi\r\n.\r\n");
    let Step::Deliver(env) = s.step(&Dir, &mut out) else { panic!("no delivery: {}", String::from_utf8_lossy(&out)) };
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "503 5.5.1 Send EHLO or HELO first\r\n\
         250-mx.example.org\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 SIZE 67108864\r\n\
         503 5.5.1 TLS is already active\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
    );
    assert!(s.trace(&env.recipients[0], "now").unwrap().contains("with ESMTPS"));
}

#[test]
fn starttls_refusals() {
    // Not offered (no certificate): an unknown command.
    let (out, _, _) = run(Dialect::Lmtp, b"LHLO c\r\nSTARTTLS\r\n", usize::MAX, OK3, Limits::default());
    assert!(out.ends_with("502 5.5.1 STARTTLS is not offered here\r\n"), "{out}");
    let mut s = Session::new(Dialect::Lmtp, "mx.example.org", Limits::default());
    s.offer_tls();
    let (out, _, _) = run_session(s, b"STARTTLS\r\nLHLO c\r\nSTARTTLS now\r\n", usize::MAX, OK3);
    assert!(out.contains("503 5.5.1 Send LHLO first\r\n"), "{out}");
    assert!(out.ends_with("501 5.5.4 STARTTLS takes no parameters\r\n"), "{out}");
}

/// SMTP smuggling: only <CRLF>.<CRLF> ends DATA (RFC 5321 4.1.1.4). A `.`
/// line after a bare LF, or a `.` line ended by a bare LF, is message text:
/// the hidden second envelope is stored inside the first message, never
/// executed.
#[test]
fn only_crlf_dot_crlf_ends_data_no_smuggling() {
    for hidden_end in ["\n.\r\n", "\r\n.\n", "\n.\n", "\r.\r\n"] {
        let input = format!(
            "LHLO m\r\nMAIL FROM:<a@x>\r\nRCPT TO:<alice>\r\nDATA\r\nSubject: one\r\n\r\ntext{hidden_end}MAIL FROM:<evil@x>\r\nRCPT TO:<bob>\r\nDATA\r\nSubject: smuggled\r\n\r\n.\r\nQUIT\r\n"
        );
        for chunk in [1, 7, usize::MAX] {
            let (out, envs, _) = run(Dialect::Lmtp, input.as_bytes(), chunk, OK3, Limits::default());
            assert_eq!(envs.len(), 1, "{hidden_end:?} chunk {chunk}: {out}");
            assert_eq!(envs[0].recipients.len(), 1);
            let text = String::from_utf8(envs[0].data.clone()).unwrap();
            assert!(text.contains("MAIL FROM:<evil@x>\r\n") && text.contains("Subject: smuggled"), "{hidden_end:?}: {text:?}");
            assert!(!text.contains('\n') || text.split("\r\n").all(|l| !l.contains('\n') && !l.contains('\r')), "only CRLF line ends: {text:?}");
            assert_eq!(out.matches("250 2.0.0 Ok: delivered").count(), 1, "{out}");
        }
    }
}

/// A command line that is not UTF-8 panicked the engine (the fuzzer found
/// `MAIL \x88\x88`); every such line gets a syntax error instead.
#[test]
fn non_utf8_commands_are_syntax_errors() {
    for line in [&b"MAIL \x88\x88\r\n"[..], b"RCPT \xff\xfe\xfd\r\n", b"MAIL FROM\xc3\r\n", b"\xe9\xe9\xe9\r\n", b"EHLO \xf0\x9f\x98\r\n"] {
        let mut input = b"LHLO m\r\n".to_vec();
        input.extend_from_slice(line);
        input.extend_from_slice(b"MAIL FROM:<a>\r\nRCPT TO:<alice>\r\n");
        let (out, _, closed) = run(Dialect::Lmtp, &input, usize::MAX, OK3, Limits::default());
        assert!(!closed);
        assert!(out.ends_with("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"), "{out}");
    }
}
