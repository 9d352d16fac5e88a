//! A deterministic generator of realistic messages, for benchmarks, the
//! load tool's `populate`, and tests. The same seed and index always give
//! the same bytes, so two servers populated with it hold the same mail.
//!
//! Shape, roughly as in real mailboxes: most messages are a few KiB of text
//! (plain, or multipart/alternative with HTML), about one in six carries a
//! base64 attachment, sizes run from 1 KiB to 1 MiB with a long tail.

/// xorshift64*: small, fast, deterministic.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

const WORDS: &[&str] = &[
    "meeting",
    "report",
    "quarterly",
    "budget",
    "project",
    "update",
    "review",
    "please",
    "attached",
    "schedule",
    "tomorrow",
    "deadline",
    "invoice",
    "customer",
    "release",
    "server",
    "backup",
    "lunch",
    "thanks",
    "regards",
    "question",
    "proposal",
    "draft",
    "final",
    "team",
    "notes",
    "agenda",
    "travel",
    "holiday",
    "contract",
    "delivery",
    "status",
    "issue",
    "fixed",
    "version",
    "analysis",
    "results",
    "summary",
    "weekly",
    "follow-up",
];
const NAMES: &[&str] = &["Alice Martin", "Bob Chen", "Carla Rossi", "David Okafor", "Eva Novak", "Farid Haddad", "Grace Kim", "Hugo Weber"];

fn words(r: &mut Rng, n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(WORDS[r.below(WORDS.len() as u64) as usize]);
    }
    s
}

/// Text wrapped at about 72 columns with CRLF line ends, `bytes` long.
fn paragraph(r: &mut Rng, bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + 80);
    let mut col = 0;
    while s.len() < bytes {
        let w = WORDS[r.below(WORDS.len() as u64) as usize];
        if col + w.len() > 72 {
            s.push_str("\r\n");
            col = 0;
        } else if col > 0 {
            s.push(' ');
            col += 1;
        }
        s.push_str(w);
        col += w.len();
    }
    s.push_str("\r\n");
    s
}

fn base64_lines(r: &mut Rng, bytes: usize) -> String {
    use base64::Engine;
    let raw: Vec<u8> = (0..bytes).map(|_| r.next_u64() as u8).collect();
    let enc = base64::engine::general_purpose::STANDARD.encode(raw);
    let mut s = String::with_capacity(enc.len() + enc.len() / 38);
    for chunk in enc.as_bytes().chunks(76) {
        s.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        s.push_str("\r\n");
    }
    s
}

/// Target size of message `i`: mostly 1–20 KiB, a tail up to 1 MiB.
fn size_of(r: &mut Rng) -> usize {
    match r.below(100) {
        0..=59 => 1024 + r.below(7 * 1024) as usize,
        60..=89 => 8 * 1024 + r.below(56 * 1024) as usize,
        90..=98 => 64 * 1024 + r.below(192 * 1024) as usize,
        _ => 256 * 1024 + r.below(768 * 1024) as usize,
    }
}

/// Message number `i` of the corpus with this `seed`.
pub fn message(seed: u64, i: u64) -> Vec<u8> {
    let mut r = Rng::new(seed ^ i.wrapping_mul(0x1000_0000_01B3));
    let size = size_of(&mut r);
    let from = NAMES[r.below(NAMES.len() as u64) as usize];
    let to = NAMES[r.below(NAMES.len() as u64) as usize];
    let addr = |n: &str| n.split(' ').next().unwrap_or(n).to_ascii_lowercase();
    let day = 1 + r.below(28);
    let hour = r.below(24);
    let n_words = 3 + r.below(5) as usize;
    let subject = words(&mut r, n_words);
    let mut h = format!(
        "Return-Path: <{fa}@example.com>\r\nDate: Mon, {day} Jan 2024 {hour:02}:{min:02}:00 +0100\r\nFrom: {from} <{fa}@example.com>\r\nTo: {to} <{ta}@example.org>\r\nSubject: {subject}\r\nMessage-ID: <{seed}.{i}@corpus.example.com>\r\nMIME-Version: 1.0\r\n",
        fa = addr(from),
        ta = addr(to),
        min = r.below(60),
    );
    if i > 0 && r.below(3) == 0 {
        h.push_str(&format!("In-Reply-To: <{seed}.{}@corpus.example.com>\r\n", r.below(i)));
    }
    let kind = r.below(6);
    let mut m = h.into_bytes();
    if kind == 0 || size > 64 * 1024 {
        let text = paragraph(&mut r, 600);
        let att = size.saturating_sub(m.len() + text.len() + 600) * 3 / 4;
        let body = format!(
            "Content-Type: multipart/mixed; boundary=\"b1_{i}\"\r\n\r\nThis is a multi-part message in MIME format.\r\n--b1_{i}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n{text}--b1_{i}\r\nContent-Type: application/pdf; name=\"report-{i}.pdf\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"report-{i}.pdf\"\r\n\r\n{}--b1_{i}--\r\n",
            base64_lines(&mut r, att.max(64)),
        );
        m.extend_from_slice(body.as_bytes());
    } else if kind <= 2 {
        let half = size.saturating_sub(m.len() + 400) / 2;
        let text = paragraph(&mut r, half.max(200));
        let html = format!("<html><body><p>{}</p></body></html>\r\n", paragraph(&mut r, half.max(200)).replace("\r\n", "<br>\r\n"));
        let body = format!(
            "Content-Type: multipart/alternative; boundary=\"a1_{i}\"\r\n\r\n--a1_{i}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{text}--a1_{i}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{html}--a1_{i}--\r\n"
        );
        m.extend_from_slice(body.as_bytes());
    } else {
        let text = paragraph(&mut r, size.saturating_sub(m.len() + 80).max(200));
        m.extend_from_slice(format!("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n{text}").as_bytes());
    }
    m
}

/// Hostile shapes for hardening tests: `n` nested multiparts (boundaries
/// that are not prefixes of each other).
pub fn nested_multipart(n: usize) -> Vec<u8> {
    let mut m = b"From: a@b.c\r\nSubject: deep\r\nContent-Type: multipart/mixed; boundary=\"x0x\"\r\n\r\n".to_vec();
    for i in 0..n {
        m.extend_from_slice(format!("--x{i}x\r\nContent-Type: multipart/mixed; boundary=\"x{}x\"\r\n\r\n", i + 1).as_bytes());
    }
    m.extend_from_slice(format!("--x{n}x\r\nContent-Type: text/plain\r\n\r\nhello\r\n--x{n}x--\r\n").as_bytes());
    for i in (0..n).rev() {
        m.extend_from_slice(format!("--x{i}x--\r\n").as_bytes());
    }
    m
}

/// `n` message/rfc822 parts, each inside the previous one.
pub fn nested_message(n: usize) -> Vec<u8> {
    let mut m = b"From: a@b.c\r\nSubject: deep\r\n".to_vec();
    for i in 0..n {
        m.extend_from_slice(format!("Content-Type: message/rfc822\r\n\r\nSubject: level {}\r\n", i + 1).as_bytes());
    }
    m.extend_from_slice(b"\r\nbody\r\n");
    m
}

/// A `To:` header with `n` addresses (and one more).
pub fn many_addresses(n: usize) -> Vec<u8> {
    let mut m = b"From: a@b.c\r\nTo: ".to_vec();
    for i in 0..n {
        m.extend_from_slice(format!("User {i} <user{i}@example.com>,\r\n ").as_bytes());
    }
    m.extend_from_slice(b"last@example.com\r\nSubject: many\r\n\r\nbody\r\n");
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_parseable() {
        assert_eq!(message(7, 42), message(7, 42));
        assert_ne!(message(7, 42), message(8, 42));
        let sizes: Vec<usize> = (0..300).map(|i| message(1, i).len()).collect();
        assert!(sizes.iter().all(|&s| (900..1_200_000).contains(&s)), "{sizes:?}");
        assert!(sizes.iter().filter(|&&s| s < 20_000).count() > 150, "most are small");
        assert!(sizes.iter().any(|&s| s > 200_000), "a long tail");
        for i in 0..50 {
            let m = message(3, i);
            let parsed = mail_parser::MessageParser::default().parse(&m).unwrap();
            assert!(parsed.subject().is_some());
        }
    }
}
