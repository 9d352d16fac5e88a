//! The command tokenizer: splits one command line into atoms, quoted strings,
//! parentheses, spaces and a trailing literal announcement.
//!
//! It does not know the IMAP grammar (that is `parse.rs`), does not decode
//! escapes or literals, and never allocates per call: tokens go into the
//! caller's vector, bitmaps into the scanner's reused buffers.
//!
//! Two implementations produce the same tokens and the same errors:
//! - [`tokenize_reference`], a deliberately plain byte-at-a-time loop that is
//!   the specification;
//! - the SIMD path, which first classifies the whole line 32 bytes at a time
//!   into two bitmaps (atom delimiters, and the bytes that matter inside a
//!   quoted string) and then walks from set bit to set bit, so atoms and
//!   quoted strings cost a few instructions regardless of their length.
//!
//! The CPU is probed once; `RINGMAIL_SCAN=scalar` forces the reference so one
//! test run can exercise it end to end. Property tests compare the backends.

use std::sync::atomic::{AtomicU8, Ordering};

/// What a token is. Ranges of tokens are byte offsets into the command buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A run of bytes that are not delimiters: atoms, numbers, sequence sets,
    /// flags (`\Seen`), fetch items (`BODY[1.2]<0.10>`), list patterns.
    Atom,
    /// A quoted string; the range is the text between the quotes, escapes
    /// still in place.
    Quoted,
    /// A quoted string that contains at least one backslash escape.
    QuotedEscaped,
    LParen,
    RParen,
    Space,
    /// The data of a literal; the decoder pushes these once the bytes are in.
    Literal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    pub kind: Kind,
    pub start: u32,
    pub end: u32,
}

impl Token {
    pub fn range(&self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// A literal announced at the end of a line: `{n}`, `{n+}` or `~{n}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Announce {
    /// Announced size. Parsed as u64 so that absurd sizes are seen as such.
    pub len: u64,
    /// `{n+}` (RFC 7888): the client sends the data without waiting for `+`.
    pub nonsync: bool,
    /// `~{n}` (literal8, RFC 3516 / RFC 9051): may contain NUL.
    pub binary: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanErrorKind {
    /// A control character (or NUL or bare CR) where none is allowed.
    Control,
    /// A quoted string runs to the end of the line.
    UnterminatedQuote,
    /// `{` that is not a well-formed literal announcement ending the line.
    BadLiteral,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanError {
    pub at: u32,
    pub kind: ScanErrorKind,
}

pub type ScanResult = Result<Option<Announce>, ScanError>;

/// Bytes that end an atom: SP ( ) " { and every control character.
#[inline]
fn is_delim(b: u8) -> bool {
    matches!(b, b' ' | b'(' | b')' | b'"' | b'{' | 0..=0x1f | 0x7f)
}

/// Parses the literal announcement that starts with `{` at `open`; it must end the line.
fn parse_announce(line: &[u8], open: usize) -> Result<Announce, ScanError> {
    let bad = ScanError { at: open as u32, kind: ScanErrorKind::BadLiteral };
    let close = line.len().checked_sub(1).filter(|&c| c > open && line[c] == b'}').ok_or(bad)?;
    let mut digits = &line[open + 1..close];
    let nonsync = digits.last() == Some(&b'+');
    if nonsync {
        digits = &digits[..digits.len() - 1];
    }
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad);
    }
    let len = digits.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Ok(Announce { len, nonsync, binary: false })
}

/// Handles `{` at `i`: the announcement ends the line; a directly preceding
/// atom `~` makes it a literal8.
fn announce_at(line: &[u8], i: usize, base: u32, out: &mut Vec<Token>) -> ScanResult {
    let mut a = parse_announce(line, i)?;
    if let Some(last) = out.last() {
        if last.kind == Kind::Atom && last.end == base + i as u32 && last.end - last.start == 1 && i > 0 && line[i - 1] == b'~' {
            out.pop();
            a.binary = true;
        }
    }
    Ok(Some(a))
}

/// The reference tokenizer: one byte at a time, as plainly as possible.
pub fn tokenize_reference(line: &[u8], base: u32, out: &mut Vec<Token>) -> ScanResult {
    let tok = |kind, s: usize, e: usize| Token { kind, start: base + s as u32, end: base + e as u32 };
    let mut i = 0;
    while i < line.len() {
        match line[i] {
            b' ' => out.push(tok(Kind::Space, i, i + 1)),
            b'(' => out.push(tok(Kind::LParen, i, i + 1)),
            b')' => out.push(tok(Kind::RParen, i, i + 1)),
            b'{' => return announce_at(line, i, base, out),
            b'"' => {
                let mut j = i + 1;
                let mut escaped = false;
                loop {
                    match line.get(j) {
                        None => return Err(ScanError { at: i as u32, kind: ScanErrorKind::UnterminatedQuote }),
                        Some(b'"') => break,
                        Some(b'\\') => {
                            escaped = true;
                            match line.get(j + 1) {
                                None => return Err(ScanError { at: i as u32, kind: ScanErrorKind::UnterminatedQuote }),
                                Some(0 | b'\r') => return Err(ScanError { at: (j + 1) as u32, kind: ScanErrorKind::Control }),
                                Some(_) => j += 2,
                            }
                        }
                        Some(0 | b'\r') => return Err(ScanError { at: j as u32, kind: ScanErrorKind::Control }),
                        Some(_) => j += 1,
                    }
                }
                let kind = if escaped { Kind::QuotedEscaped } else { Kind::Quoted };
                out.push(tok(kind, i + 1, j));
                i = j + 1;
                continue;
            }
            0..=0x1f | 0x7f => return Err(ScanError { at: i as u32, kind: ScanErrorKind::Control }),
            _ => {
                let mut j = i;
                while j < line.len() && !is_delim(line[j]) {
                    j += 1;
                }
                out.push(tok(Kind::Atom, i, j));
                i = j;
                continue;
            }
        }
        i += 1;
    }
    Ok(None)
}

/// Which implementation runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Sse2,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

static BACKEND: AtomicU8 = AtomicU8::new(0);

impl Backend {
    /// The fastest backend this CPU supports, probed once and cached.
    /// `RINGMAIL_SCAN=scalar` in the environment forces the reference.
    pub fn detect() -> Backend {
        match BACKEND.load(Ordering::Relaxed) {
            1 => return Backend::Scalar,
            #[cfg(target_arch = "x86_64")]
            2 => return Backend::Sse2,
            #[cfg(target_arch = "x86_64")]
            3 => return Backend::Avx2,
            _ => {}
        }
        let chosen = if std::env::var_os("RINGMAIL_SCAN").is_some_and(|v| v == "scalar") {
            Backend::Scalar
        } else {
            Self::best()
        };
        let code = match chosen {
            Backend::Scalar => 1,
            #[cfg(target_arch = "x86_64")]
            Backend::Sse2 => 2,
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => 3,
        };
        BACKEND.store(code, Ordering::Relaxed);
        chosen
    }

    /// Every backend this CPU can run, reference first (for tests and benches).
    pub fn available() -> Vec<Backend> {
        #[allow(unused_mut)]
        let mut v = vec![Backend::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            v.push(Backend::Sse2);
            if std::is_x86_feature_detected!("avx2") {
                v.push(Backend::Avx2);
            }
        }
        v
    }

    fn best() -> Backend {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") {
                return Backend::Avx2;
            }
            Backend::Sse2
        }
        #[cfg(not(target_arch = "x86_64"))]
        Backend::Scalar
    }
}

/// A reusable tokenizer: owns the bitmaps of the SIMD path so that
/// tokenizing a line allocates nothing once warmed up.
pub struct Scanner {
    backend: Backend,
    /// Bit i set: byte i ends an atom (see [`is_delim`]).
    delim: Vec<u64>,
    /// Bit i set: byte i is `"`, `\`, NUL or CR, the bytes a quoted string cares about.
    quote: Vec<u64>,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new(Backend::detect())
    }
}

impl Scanner {
    pub fn new(backend: Backend) -> Self {
        Scanner { backend, delim: Vec::new(), quote: Vec::new() }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Tokenizes `line` (without its CRLF), appending tokens whose offsets are
    /// shifted by `base`. Returns the literal announced at the end of the line.
    pub fn tokenize(&mut self, line: &[u8], base: u32, out: &mut Vec<Token>) -> ScanResult {
        match self.backend {
            Backend::Scalar => tokenize_reference(line, base, out),
            #[cfg(target_arch = "x86_64")]
            Backend::Sse2 => {
                self.classify(line, x86::classify_sse2);
                tokenize_bitmaps(line, base, &self.delim, &self.quote, out)
            }
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => {
                self.classify(line, x86::classify_avx2_safe);
                tokenize_bitmaps(line, base, &self.delim, &self.quote, out)
            }
        }
    }

    /// Fills the bitmaps, 64 bytes per word; the last partial block is copied
    /// into a buffer padded with a byte that is in neither class.
    #[cfg(target_arch = "x86_64")]
    fn classify(&mut self, line: &[u8], block: fn(&[u8; 64]) -> (u64, u64)) {
        let words = line.len().div_ceil(64);
        self.delim.clear();
        self.quote.clear();
        self.delim.reserve(words);
        self.quote.reserve(words);
        let mut chunks = line.chunks_exact(64);
        for chunk in &mut chunks {
            let (d, q) = block(chunk.try_into().expect("chunks_exact yields 64 bytes"));
            self.delim.push(d);
            self.quote.push(q);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut pad = [b'a'; 64];
            pad[..rest.len()].copy_from_slice(rest);
            let (d, q) = block(&pad);
            self.delim.push(d);
            self.quote.push(q);
        }
    }
}

/// First set bit at or after `from`, or `len` when there is none.
#[inline]
fn next_set(bits: &[u64], from: usize, len: usize) -> usize {
    let mut word = from / 64;
    if word >= bits.len() {
        return len;
    }
    let mut w = bits[word] & (!0u64 << (from % 64));
    loop {
        if w != 0 {
            return (word * 64 + w.trailing_zeros() as usize).min(len);
        }
        word += 1;
        if word >= bits.len() {
            return len;
        }
        w = bits[word];
    }
}

/// The token loop of the SIMD path: the same decisions as the reference, but
/// every run of ordinary bytes is skipped with one bitmap lookup.
fn tokenize_bitmaps(line: &[u8], base: u32, delim: &[u64], quote: &[u64], out: &mut Vec<Token>) -> ScanResult {
    let n = line.len();
    let tok = |kind, s: usize, e: usize| Token { kind, start: base + s as u32, end: base + e as u32 };
    let mut i = 0;
    while i < n {
        let b = line[i];
        if !is_delim(b) {
            let j = next_set(delim, i + 1, n);
            out.push(tok(Kind::Atom, i, j));
            i = j;
            continue;
        }
        match b {
            b' ' => out.push(tok(Kind::Space, i, i + 1)),
            b'(' => out.push(tok(Kind::LParen, i, i + 1)),
            b')' => out.push(tok(Kind::RParen, i, i + 1)),
            b'{' => return announce_at(line, i, base, out),
            b'"' => {
                let mut escaped = false;
                let mut j = next_set(quote, i + 1, n);
                loop {
                    match line.get(j) {
                        None => return Err(ScanError { at: i as u32, kind: ScanErrorKind::UnterminatedQuote }),
                        Some(b'"') => break,
                        Some(b'\\') => {
                            escaped = true;
                            match line.get(j + 1) {
                                None => return Err(ScanError { at: i as u32, kind: ScanErrorKind::UnterminatedQuote }),
                                Some(0 | b'\r') => return Err(ScanError { at: (j + 1) as u32, kind: ScanErrorKind::Control }),
                                Some(_) => j = next_set(quote, j + 2, n),
                            }
                        }
                        Some(_) => return Err(ScanError { at: j as u32, kind: ScanErrorKind::Control }),
                    }
                }
                let kind = if escaped { Kind::QuotedEscaped } else { Kind::Quoted };
                out.push(tok(kind, i + 1, j));
                i = j + 1;
                continue;
            }
            _ => return Err(ScanError { at: i as u32, kind: ScanErrorKind::Control }),
        }
        i += 1;
    }
    Ok(None)
}

/// Position of the first LF at or after `from` (the end of a command line).
#[inline]
pub fn find_lf(buf: &[u8], from: usize) -> Option<usize> {
    memchr::memchr(b'\n', &buf[from..]).map(|p| p + from)
}

/// The reference for [`find_lf`].
pub fn find_lf_reference(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).find(|&i| buf[i] == b'\n')
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// SSE2 is part of x86_64, so this needs no runtime check.
    pub fn classify_sse2(block: &[u8; 64]) -> (u64, u64) {
        let mut d = 0u64;
        let mut q = 0u64;
        for k in 0..4 {
            // SAFETY: SSE2 is always available on x86_64, and the load reads
            // 16 bytes at offset 16*k < 64 of a 64-byte array (unaligned load).
            let (dm, qm) = unsafe { masks_sse2(block.as_ptr().add(16 * k)) };
            d |= u64::from(dm) << (16 * k);
            q |= u64::from(qm) << (16 * k);
        }
        (d, q)
    }

    #[inline(always)]
    unsafe fn masks_sse2(p: *const u8) -> (u16, u16) {
        // SAFETY: the caller guarantees 16 readable bytes at p.
        unsafe {
            let v = _mm_loadu_si128(p as *const __m128i);
            let eq = |c: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8));
            // v <= 0x1f (unsigned) exactly when min(v, 0x1f) == v.
            let ctl = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
            let delim = _mm_or_si128(
                _mm_or_si128(_mm_or_si128(eq(b' '), eq(b'(')), _mm_or_si128(eq(b')'), eq(b'"'))),
                _mm_or_si128(_mm_or_si128(eq(b'{'), eq(0x7f)), ctl),
            );
            let quote = _mm_or_si128(_mm_or_si128(eq(b'"'), eq(b'\\')), _mm_or_si128(eq(0), eq(b'\r')));
            (_mm_movemask_epi8(delim) as u16, _mm_movemask_epi8(quote) as u16)
        }
    }

    /// Callable only after the scanner chose AVX2, which it does only when
    /// the CPU reports it.
    pub fn classify_avx2_safe(block: &[u8; 64]) -> (u64, u64) {
        debug_assert!(std::is_x86_feature_detected!("avx2"));
        // SAFETY: Backend::Avx2 is only constructed when avx2 was detected.
        unsafe { classify_avx2(block) }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn classify_avx2(block: &[u8; 64]) -> (u64, u64) {
        let mut d = 0u64;
        let mut q = 0u64;
        for k in 0..2 {
            // SAFETY: 32 bytes at offset 32*k of a 64-byte array are readable.
            let v = unsafe { _mm256_loadu_si256(block.as_ptr().add(32 * k) as *const __m256i) };
            let eq = |c: u8| _mm256_cmpeq_epi8(v, _mm256_set1_epi8(c as i8));
            let ctl = _mm256_cmpeq_epi8(_mm256_min_epu8(v, _mm256_set1_epi8(0x1f)), v);
            let delim = _mm256_or_si256(
                _mm256_or_si256(_mm256_or_si256(eq(b' '), eq(b'(')), _mm256_or_si256(eq(b')'), eq(b'"'))),
                _mm256_or_si256(_mm256_or_si256(eq(b'{'), eq(0x7f)), ctl),
            );
            let quote = _mm256_or_si256(_mm256_or_si256(eq(b'"'), eq(b'\\')), _mm256_or_si256(eq(0), eq(b'\r')));
            d |= u64::from(_mm256_movemask_epi8(delim) as u32) << (32 * k);
            q |= u64::from(_mm256_movemask_epi8(quote) as u32) << (32 * k);
        }
        (d, q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all(line: &[u8]) -> Vec<(Backend, ScanResult, Vec<Token>)> {
        Backend::available()
            .into_iter()
            .map(|b| {
                let mut out = Vec::new();
                let r = Scanner::new(b).tokenize(line, 7, &mut out);
                (b, r, out)
            })
            .collect()
    }

    fn agree(line: &[u8]) {
        let results = all(line);
        let (_, r0, t0) = &results[0];
        for (b, r, t) in &results[1..] {
            assert_eq!((r0, t0), (r, t), "backend {b:?} disagrees on {:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn tokens_of_a_fetch() {
        let line = b"a1 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM)])";
        let mut out = Vec::new();
        assert_eq!(tokenize_reference(line, 0, &mut out), Ok(None));
        let kinds: Vec<_> = out.iter().map(|t| (t.kind, &line[t.range()])).collect();
        use Kind::*;
        assert_eq!(
            kinds,
            vec![
                (Atom, &b"a1"[..]),
                (Space, b" "),
                (Atom, b"UID"),
                (Space, b" "),
                (Atom, b"FETCH"),
                (Space, b" "),
                (Atom, b"1:*"),
                (Space, b" "),
                (LParen, b"("),
                (Atom, b"FLAGS"),
                (Space, b" "),
                (Atom, b"BODY.PEEK[HEADER.FIELDS"),
                (Space, b" "),
                (LParen, b"("),
                (Atom, b"FROM"),
                (RParen, b")"),
                (Atom, b"]"),
                (RParen, b")"),
            ]
        );
        agree(line);
    }

    #[test]
    fn quoted_and_literal_announcements() {
        let mut out = Vec::new();
        let r = tokenize_reference(br#"a LOGIN "jo\"e" {5+}"#, 0, &mut out);
        assert_eq!(r, Ok(Some(Announce { len: 5, nonsync: true, binary: false })));
        assert_eq!(out[4].kind, Kind::QuotedEscaped);
        out.clear();
        let r = tokenize_reference(b"a APPEND x ~{12}", 0, &mut out);
        assert_eq!(r, Ok(Some(Announce { len: 12, nonsync: false, binary: true })));
        assert_eq!(out.last().unwrap().kind, Kind::Space);
        out.clear();
        let r = tokenize_reference(b"a APPEND x {107374182400}", 0, &mut out);
        assert_eq!(r.unwrap().unwrap().len, 107_374_182_400);
    }

    #[test]
    fn errors_are_located() {
        let mut out = Vec::new();
        assert_eq!(tokenize_reference(b"a \"abc", 0, &mut out), Err(ScanError { at: 2, kind: ScanErrorKind::UnterminatedQuote }));
        assert_eq!(tokenize_reference(b"a {5} x", 0, &mut out), Err(ScanError { at: 2, kind: ScanErrorKind::BadLiteral }));
        assert_eq!(tokenize_reference(b"a b\0c", 0, &mut out), Err(ScanError { at: 3, kind: ScanErrorKind::Control }));
        assert_eq!(tokenize_reference(b"a \"b\rc\"", 0, &mut out), Err(ScanError { at: 4, kind: ScanErrorKind::Control }));
        for l in [&b"a \"abc"[..], b"a {5} x", b"a b\0c", b"a \"b\rc\"", b"{}", b"{+}", b"x{1}", b"\"\\"] {
            agree(l);
        }
    }

    #[test]
    fn long_lines_cross_blocks() {
        let mut line = b"a SEARCH".to_vec();
        for i in 0..200 {
            line.extend_from_slice(format!(" SUBJECT \"w{i} \\\\ x\" (OR {i}:{} SEEN)", i * 3).as_bytes());
        }
        agree(&line);
    }

    fn imapish() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b" ".to_vec()),
            Just(b"(".to_vec()),
            Just(b")".to_vec()),
            Just(b"\"".to_vec()),
            Just(b"\\".to_vec()),
            Just(b"{".to_vec()),
            Just(b"}".to_vec()),
            Just(b"+".to_vec()),
            Just(b"~".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\0".to_vec()),
            "[a-zA-Z0-9.:*\\[\\]<>]{1,70}".prop_map(|s| s.into_bytes()),
            "\\{[0-9]{1,4}\\+?\\}".prop_map(|s| s.into_bytes()),
            proptest::collection::vec(any::<u8>(), 1..5),
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn backends_agree_on_imap_like_lines(line in imapish()) {
            agree(&line);
        }

        #[test]
        fn backends_agree_on_arbitrary_bytes(line in proptest::collection::vec(any::<u8>(), 0..300)) {
            agree(&line);
        }

        #[test]
        fn lf_search_agrees(buf in proptest::collection::vec(prop_oneof![Just(b'\n'), any::<u8>()], 0..300), from in 0usize..300) {
            let from = from.min(buf.len());
            prop_assert_eq!(find_lf(&buf, from), find_lf_reference(&buf, from));
        }
    }
}
