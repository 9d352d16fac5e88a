//! The command tokenizer: splits one command line into atoms, quoted strings,
//! parentheses and a trailing literal announcement. Spaces are not tokens:
//! each token records how many spaces precede it (`gap`), and every line
//! that does not end in a literal announcement ends with an `Eol` token
//! carrying its trailing spaces, so the parser can insist on exactly one SP
//! between arguments (RFC 9051 9, rule 2) without a token per space.
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
    /// The data of a literal; the decoder pushes these once the bytes are in.
    Literal,
    /// The end of a line that does not end in a literal announcement.
    Eol,
}

/// Eight bytes, so writing one is a single store: tokens are bounded by the
/// line and literal limits ([`MAX_TOKEN_LEN`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    pub start: u32,
    pub len: u16,
    pub kind: Kind,
    /// Spaces directly before the token (saturating at 255).
    pub gap: u8,
}

/// The longest token (and so the longest line the scanner takes, and the
/// largest literal kept in a command).
pub const MAX_TOKEN_LEN: usize = u16::MAX as usize;

impl Token {
    #[inline(always)]
    pub fn new(kind: Kind, gap: u8, start: u32, end: u32) -> Token {
        debug_assert!(end - start <= MAX_TOKEN_LEN as u32);
        Token { start, len: (end - start) as u16, kind, gap }
    }

    pub fn end(&self) -> u32 {
        self.start + u32::from(self.len)
    }

    pub fn range(&self) -> std::ops::Range<usize> {
        self.start as usize..self.end() as usize
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
    /// Spaces directly before the announcement (the literal token's gap).
    pub gap: u8,
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
    Ok(Announce { len, nonsync, binary: false, gap: 0 })
}

/// Handles `{` at `i` (after `gap` spaces): the announcement ends the line;
/// a directly preceding atom `~` makes it a literal8.
fn announce_at(line: &[u8], i: usize, gap: u8, base: u32, out: &mut Vec<Token>) -> ScanResult {
    let mut a = parse_announce(line, i)?;
    a.gap = gap;
    if let Some(last) = out.last() {
        if gap == 0 && last.kind == Kind::Atom && last.end() == base + i as u32 && last.len == 1 && line[i - 1] == b'~' {
            a.gap = last.gap;
            out.pop();
            a.binary = true;
        }
    }
    Ok(Some(a))
}

/// The reference tokenizer: one byte at a time, as plainly as possible.
pub fn tokenize_reference(line: &[u8], base: u32, out: &mut Vec<Token>) -> ScanResult {
    assert!(line.len() <= MAX_TOKEN_LEN, "line longer than the scanner takes");
    let tok = |kind, gap: u8, s: usize, e: usize| Token::new(kind, gap, base + s as u32, base + e as u32);
    let mut gap: u8 = 0;
    let mut i = 0;
    while i < line.len() {
        match line[i] {
            b' ' => {
                gap = gap.saturating_add(1);
                i += 1;
                continue;
            }
            b'(' => out.push(tok(Kind::LParen, gap, i, i + 1)),
            b')' => out.push(tok(Kind::RParen, gap, i, i + 1)),
            b'{' => return announce_at(line, i, gap, base, out),
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
                out.push(tok(kind, gap, i + 1, j));
                gap = 0;
                i = j + 1;
                continue;
            }
            0..=0x1f | 0x7f => return Err(ScanError { at: i as u32, kind: ScanErrorKind::Control }),
            _ => {
                let mut j = i;
                while j < line.len() && !is_delim(line[j]) {
                    j += 1;
                }
                out.push(tok(Kind::Atom, gap, i, j));
                gap = 0;
                i = j;
                continue;
            }
        }
        gap = 0;
        i += 1;
    }
    out.push(tok(Kind::Eol, gap, line.len(), line.len()));
    Ok(None)
}

/// Which implementation runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Scalar,
    /// Compare-based classification, 16 bytes at a time (every x86_64).
    #[cfg(target_arch = "x86_64")]
    Sse2,
    /// Nibble-table classification with `pshufb`, 16 bytes at a time.
    #[cfg(target_arch = "x86_64")]
    Ssse3,
    /// Nibble tables with `vpshufb`, 32 bytes at a time.
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
            #[cfg(target_arch = "x86_64")]
            4 => return Backend::Ssse3,
            _ => {}
        }
        let chosen = if std::env::var_os("RINGMAIL_SCAN").is_some_and(|v| v == "scalar") { Backend::Scalar } else { Self::best() };
        let code = match chosen {
            Backend::Scalar => 1,
            #[cfg(target_arch = "x86_64")]
            Backend::Sse2 => 2,
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => 3,
            #[cfg(target_arch = "x86_64")]
            Backend::Ssse3 => 4,
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
            if std::is_x86_feature_detected!("ssse3") {
                v.push(Backend::Ssse3);
            }
            if std::is_x86_feature_detected!("avx2") {
                v.push(Backend::Avx2);
            }
        }
        v
    }

    /// The widest nibble-table backend the CPU has (benches/scan.rs compares them).
    fn best() -> Backend {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") {
                return Backend::Avx2;
            }
            if std::is_x86_feature_detected!("ssse3") {
                return Backend::Ssse3;
            }
            Backend::Sse2
        }
        #[cfg(not(target_arch = "x86_64"))]
        Backend::Scalar
    }
}

/// A reusable tokenizer for one input buffer. The SIMD backends classify
/// the buffer once, as bytes arrive, into three bitmaps (atom delimiters,
/// bytes that matter inside quotes, line feeds); finding a line end and
/// tokenizing a line then only walk set bits. The reference backend works
/// byte by byte on each line.
pub struct Scanner {
    backend: Backend,
    /// Allocated while in use; an idle connection's scanner holds none.
    maps: Option<Box<Bitmaps>>,
}

#[derive(Default)]
struct Bitmaps {
    /// Bit i of word w set: byte 64*w + i ends an atom (see [`is_delim`]).
    delim: Vec<u64>,
    /// Same layout: `"`, `\`, NUL or CR, the bytes a quoted string cares about.
    quote: Vec<u64>,
    /// Same layout: LF.
    lf: Vec<u64>,
    /// The buffer word that `delim[0]` describes.
    first_word: usize,
    /// Bytes of the buffer classified so far (the last word may be partial).
    upto: usize,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new(Backend::detect())
    }
}

impl Scanner {
    pub fn new(backend: Backend) -> Self {
        Scanner { backend, maps: None }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The buffer's bytes moved or were replaced: forget the bitmaps.
    pub fn reset(&mut self) {
        if let Some(m) = &mut self.maps {
            m.truncate(0);
            m.first_word = 0;
            m.upto = 0;
        }
    }

    /// Frees the bitmaps' memory (they are rebuilt on demand).
    pub fn release(&mut self) {
        self.maps = None;
    }

    /// The bitmaps, made to describe `buf` from `from` on (bytes before
    /// `from` are consumed and never looked at again).
    fn maps_from(&mut self, buf: &[u8], from: usize) -> &mut Bitmaps {
        let maps = self.maps.get_or_insert_with(Box::default);
        let fw = from / 64;
        if maps.upto > buf.len() || fw < maps.first_word || from > maps.upto {
            // Not a continuation of what we classified (a literal was skipped,
            // or the buffer changed): start over at `from`.
            maps.truncate(0);
            maps.first_word = fw;
            maps.upto = fw * 64;
        }
        maps
    }

    /// The first LF at or after `from`. Classifies the buffer a few words at
    /// a time until it finds one, so bytes past the line (a literal the
    /// decoder will step over) are mostly never classified.
    pub fn find_lf(&mut self, buf: &[u8], from: usize) -> Option<usize> {
        const STEP: usize = 256;
        let backend = self.backend;
        if backend == Backend::Scalar {
            return find_lf_reference(buf, from);
        }
        let maps = self.maps_from(buf, from);
        loop {
            let p = next_set(&maps.lf, maps.first_word, from, maps.upto);
            if p < maps.upto {
                return Some(p);
            }
            if maps.upto >= buf.len() {
                return None;
            }
            let to = (maps.upto / 64 * 64 + STEP).max(from + 1);
            maps.classify(backend, buf, to);
        }
    }

    /// Tokenizes `buf[line]` (a line without its CRLF), appending tokens
    /// whose offsets are relative to `base` (the start of the command).
    /// Returns the literal announced at the end of the line. Lines longer
    /// than [`MAX_TOKEN_LEN`] are refused (the decoder's line limit keeps
    /// them out).
    pub fn tokenize(&mut self, buf: &[u8], line: std::ops::Range<usize>, base: usize, out: &mut Vec<Token>) -> ScanResult {
        assert!(line.len() <= MAX_TOKEN_LEN, "line longer than the scanner takes");
        let backend = self.backend;
        if backend == Backend::Scalar {
            return tokenize_reference(&buf[line.clone()], (line.start - base) as u32, out);
        }
        let maps = self.maps_from(buf, line.start);
        if maps.upto < line.end || maps.delim.is_empty() {
            maps.classify(backend, buf, line.end);
        }
        tokenize_bitmaps(buf, line, base, &maps.delim, &maps.quote, maps.first_word, out)
    }
}

impl Bitmaps {
    fn truncate(&mut self, words: usize) {
        for m in [&mut self.delim, &mut self.quote, &mut self.lf] {
            m.truncate(words);
        }
    }

    /// Classifies the bytes up to `to` (at most the end of `buf`), redoing
    /// the last word if it was partial.
    fn classify(&mut self, backend: Backend, buf: &[u8], to: usize) {
        let w0 = self.upto / 64;
        self.truncate(w0 - self.first_word);
        let end = to.min(buf.len());
        let bytes = &buf[w0 * 64..end];
        #[cfg(target_arch = "x86_64")]
        let maps = x86::Maps { delim: &mut self.delim, quote: &mut self.quote, lf: &mut self.lf };
        match backend {
            Backend::Scalar => {}
            #[cfg(target_arch = "x86_64")]
            Backend::Sse2 => x86::classify_sse2(bytes, maps),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Backend::Ssse3 is only offered when the CPU reports SSSE3.
            Backend::Ssse3 => unsafe { x86::classify_ssse3(bytes, maps) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Backend::Avx2 is only offered when the CPU reports AVX2.
            Backend::Avx2 => unsafe { x86::classify_avx2(bytes, maps) },
        }
        self.upto = end;
    }
}

/// First set bit at or after `from` (positions in the buffer; `bits[0]` is
/// word `first`), or `len` when there is none before `len`.
#[inline]
fn next_set(bits: &[u64], first: usize, from: usize, len: usize) -> usize {
    let mut word = from / 64;
    if word < first || word - first >= bits.len() {
        return len;
    }
    let mut w = bits[word - first] & (!0u64 << (from % 64));
    loop {
        if w != 0 {
            return (word * 64 + w.trailing_zeros() as usize).min(len);
        }
        word += 1;
        if word - first >= bits.len() {
            return len;
        }
        w = bits[word - first];
    }
}

/// Bits strictly above position `p` within its word.
#[inline]
fn above(p: usize) -> u64 {
    let b = p % 64;
    if b == 63 {
        0
    } else {
        !0u64 << (b + 1)
    }
}

/// Appends tokens to a vector whose spare capacity was reserved up front,
/// without a capacity check per token.
struct TokenSink<'a> {
    out: &'a mut Vec<Token>,
    len: usize,
    cap: usize,
}

impl<'a> TokenSink<'a> {
    /// Room for `max` more tokens.
    fn new(out: &'a mut Vec<Token>, max: usize) -> Self {
        out.reserve(max);
        let len = out.len();
        TokenSink { cap: len + max, out, len }
    }

    #[inline(always)]
    fn push(&mut self, t: Token) {
        assert!(self.len < self.cap, "token sink overflow");
        // SAFETY: `len < cap <= capacity` (reserved in `new`), so the slot is
        // inside the allocation; it is initialised here, and only slots below
        // `len` become part of the vector in `drop`.
        unsafe { self.out.as_mut_ptr().add(self.len).write(t) };
        self.len += 1;
    }
}

impl Drop for TokenSink<'_> {
    fn drop(&mut self) {
        // SAFETY: every slot below `len` was written by `push`.
        unsafe { self.out.set_len(self.len) };
    }
}

/// The token loop of the SIMD path: it visits only delimiter bytes (set
/// bits of the bitmap, lowest first); the run of bytes between two
/// delimiters is an atom. Same decisions as the reference, no per-byte work.
fn tokenize_bitmaps(buf: &[u8], line: std::ops::Range<usize>, base: usize, delim: &[u64], quote: &[u64], first: usize, out: &mut Vec<Token>) -> ScanResult {
    let (ls, n) = (line.start, line.end);
    // Every token but the final Eol covers at least one byte of the line.
    let mut sink = TokenSink::new(out, n - ls + 1);
    let tok = |kind, gap: u8, s: usize, e: usize| Token::new(kind, gap, (s - base) as u32, (e - base) as u32);
    let err = |at: usize, kind| Err(ScanError { at: (at - ls) as u32, kind });
    let mut gap: u8 = 0;
    let mut prev = ls;
    let mut w = ls / 64;
    let mut bits = delim.get(w - first).copied().unwrap_or(0) & (!0u64 << (ls % 64));
    loop {
        while bits == 0 {
            w += 1;
            if w * 64 >= n || w - first >= delim.len() {
                break;
            }
            bits = delim[w - first];
        }
        let p = if bits == 0 { n } else { w * 64 + bits.trailing_zeros() as usize };
        if p >= n {
            // End of the line (its CR/LF, or the end of the classified bytes).
            if prev < n {
                sink.push(tok(Kind::Atom, gap, prev, n));
                gap = 0;
            }
            sink.push(tok(Kind::Eol, gap, n, n));
            return Ok(None);
        }
        bits &= bits - 1;
        if p > prev {
            sink.push(tok(Kind::Atom, gap, prev, p));
            gap = 0;
        }
        prev = p + 1;
        let c = buf[p];
        // SP is by far the most common delimiter: test it first, without a jump table.
        if c == b' ' {
            gap = gap.saturating_add(1);
            continue;
        }
        match c {
            b'(' => sink.push(tok(Kind::LParen, gap, p, p + 1)),
            b')' => sink.push(tok(Kind::RParen, gap, p, p + 1)),
            b'{' => {
                drop(sink);
                return announce_at(&buf[ls..n], p - ls, gap, (ls - base) as u32, out);
            }
            b'"' => {
                let mut escaped = false;
                let mut j = next_set(quote, first, p + 1, n);
                loop {
                    if j >= n {
                        return err(p, ScanErrorKind::UnterminatedQuote);
                    }
                    match buf[j] {
                        b'"' => break,
                        b'\\' => {
                            escaped = true;
                            if j + 1 >= n {
                                return err(p, ScanErrorKind::UnterminatedQuote);
                            }
                            if matches!(buf[j + 1], 0 | b'\r') {
                                return err(j + 1, ScanErrorKind::Control);
                            }
                            j = next_set(quote, first, j + 2, n);
                        }
                        _ => return err(j, ScanErrorKind::Control),
                    }
                }
                let kind = if escaped { Kind::QuotedEscaped } else { Kind::Quoted };
                sink.push(tok(kind, gap, p + 1, j));
                // Delimiters inside the quotes are not delimiters: skip past the closing quote.
                if j / 64 != w {
                    w = j / 64;
                    bits = delim[w - first];
                }
                bits &= above(j);
                prev = j + 1;
            }
            _ => return err(p, ScanErrorKind::Control),
        }
        gap = 0;
    }
}

/// Position of the first LF at or after `from` (memchr; SIMD where available).
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

    /// Masks of one vector: delimiters, quote-relevant bytes, line feeds.
    type Masks = [u64; 3];

    /// The bitmaps being filled, in the order of [`Masks`].
    pub struct Maps<'a> {
        pub delim: &'a mut Vec<u64>,
        pub quote: &'a mut Vec<u64>,
        pub lf: &'a mut Vec<u64>,
    }

    /// Compare-based classification of 16 bytes (SSE2, every x86_64).
    #[inline(always)]
    fn masks16(v: __m128i) -> Masks {
        // SAFETY: SSE2 is part of x86_64; these intrinsics only compute on `v`.
        unsafe {
            let eq = |c: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8));
            // v <= 0x1f (unsigned) exactly when min(v, 0x1f) == v.
            let ctl = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
            let delim = _mm_or_si128(
                _mm_or_si128(_mm_or_si128(eq(b' '), eq(b'(')), _mm_or_si128(eq(b')'), eq(b'"'))),
                _mm_or_si128(_mm_or_si128(eq(b'{'), eq(0x7f)), ctl),
            );
            let quote = _mm_or_si128(_mm_or_si128(eq(b'"'), eq(b'\\')), _mm_or_si128(eq(0), eq(b'\r')));
            let m = |x: __m128i| u64::from(_mm_movemask_epi8(x) as u16);
            [m(delim), m(quote), m(eq(b'\n'))]
        }
    }

    // Nibble tables: class(b) = LO[b & 15] & HI[b >> 4]. Bits: 1 control
    // (0x00-0x1f), 2 DEL, 4 SP, 8 DQUOTE, 16 parentheses, 32 `{`, 64 `\`,
    // 128 NUL or CR. Delimiters are bits 1-32, quote-relevant bytes 8|64|128.
    const LO: [u8; 16] = [1 | 4 | 128, 1, 1 | 8, 1, 1, 1, 1, 1, 1 | 16, 1 | 16, 1, 1 | 32, 1 | 64, 1 | 128, 1, 1 | 2];
    const HI: [u8; 16] = [1 | 128, 1, 4 | 8 | 16, 0, 0, 64, 0, 2 | 32, 0, 0, 0, 0, 0, 0, 0, 0];
    const DELIM_BITS: i8 = (1 | 2 | 4 | 8 | 16 | 32) as i8;
    const QUOTE_BITS: i8 = (8 | 64 | 128) as u8 as i8;

    /// Nibble-table classification of 16 bytes.
    ///
    /// # Safety
    /// The CPU must support SSSE3, and 16 bytes at `p` must be readable.
    #[target_feature(enable = "ssse3")]
    #[inline]
    unsafe fn masks_ssse3(p: *const u8) -> Masks {
        // SAFETY: the caller guarantees 16 readable bytes at `p`.
        let v = unsafe { _mm_loadu_si128(p as *const __m128i) };
        // SAFETY: LO and HI are 16-byte arrays.
        let (lo_t, hi_t) = unsafe { (_mm_loadu_si128(LO.as_ptr() as *const __m128i), _mm_loadu_si128(HI.as_ptr() as *const __m128i)) };
        let nib = _mm_set1_epi8(0x0f);
        let class = _mm_and_si128(_mm_shuffle_epi8(lo_t, _mm_and_si128(v, nib)), _mm_shuffle_epi8(hi_t, _mm_and_si128(_mm_srli_epi16(v, 4), nib)));
        let zero = _mm_setzero_si128();
        let none = |bits: i8| !(_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_and_si128(class, _mm_set1_epi8(bits)), zero)) as u16);
        let lf = _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'\n' as i8))) as u16;
        [none(DELIM_BITS), none(QUOTE_BITS), lf].map(u64::from)
    }

    /// Nibble-table classification of 32 bytes.
    ///
    /// # Safety
    /// The CPU must support AVX2, and 32 bytes at `p` must be readable.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn masks_avx2(p: *const u8) -> Masks {
        // SAFETY: the caller guarantees 32 readable bytes at `p`.
        let v = unsafe { _mm256_loadu_si256(p as *const __m256i) };
        // SAFETY: LO and HI are 16-byte arrays.
        let (lo_t, hi_t) = unsafe {
            (
                _mm256_broadcastsi128_si256(_mm_loadu_si128(LO.as_ptr() as *const __m128i)),
                _mm256_broadcastsi128_si256(_mm_loadu_si128(HI.as_ptr() as *const __m128i)),
            )
        };
        let nib = _mm256_set1_epi8(0x0f);
        let class =
            _mm256_and_si256(_mm256_shuffle_epi8(lo_t, _mm256_and_si256(v, nib)), _mm256_shuffle_epi8(hi_t, _mm256_and_si256(_mm256_srli_epi16(v, 4), nib)));
        let zero = _mm256_setzero_si256();
        let none = |bits: i8| !(_mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_and_si256(class, _mm256_set1_epi8(bits)), zero)) as u32);
        let lf = _mm256_movemask_epi8(_mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'\n' as i8))) as u32;
        [none(DELIM_BITS), none(QUOTE_BITS), lf].map(u64::from)
    }

    /// Appends the bitmaps of `bytes` (which starts on a word boundary),
    /// 64 bytes per word, classifying `W` bytes at a time with `vec`. The last
    /// partial piece is classified from the last `W` bytes (shifted), so no
    /// byte outside `bytes` is read and nothing is copied; inputs shorter than
    /// `W` are copied into a padded buffer.
    #[inline(always)]
    fn classify_with<const W: usize>(bytes: &[u8], m: Maps<'_>, vec: impl Fn(&[u8; W]) -> Masks) {
        let len = bytes.len();
        let mut word = [0u64; 3];
        let mut at = 0;
        while at < len {
            let masks = if at + W <= len {
                vec(bytes[at..at + W].try_into().expect("W bytes"))
            } else if len >= W {
                let k = W - (len - at);
                vec(bytes[len - W..].try_into().expect("W bytes")).map(|x| x >> k)
            } else {
                let mut pad = [b'a'; W];
                pad[..len - at].copy_from_slice(&bytes[at..]);
                vec(&pad)
            };
            let shift = at % 64;
            for (acc, x) in word.iter_mut().zip(masks) {
                *acc |= x << shift;
            }
            at += W;
            if at % 64 == 0 || at >= len {
                m.delim.push(word[0]);
                m.quote.push(word[1]);
                m.lf.push(word[2]);
                word = [0; 3];
            }
        }
    }

    pub fn classify_sse2(bytes: &[u8], m: Maps<'_>) {
        classify_with::<16>(bytes, m, |v| {
            // SAFETY: `v` is 16 readable bytes.
            masks16(unsafe { _mm_loadu_si128(v.as_ptr() as *const __m128i) })
        });
    }

    /// # Safety
    /// The CPU must support SSSE3.
    #[target_feature(enable = "ssse3")]
    pub unsafe fn classify_ssse3(bytes: &[u8], m: Maps<'_>) {
        // SAFETY: SSSE3 is enabled (caller's contract); `v` is 16 readable bytes.
        classify_with::<16>(bytes, m, |v| unsafe { masks_ssse3(v.as_ptr()) });
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn classify_avx2(bytes: &[u8], m: Maps<'_>) {
        // SAFETY: AVX2 is enabled (caller's contract); `v` is 32 readable bytes.
        classify_with::<32>(bytes, m, |v| unsafe { masks_avx2(v.as_ptr()) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Tokenizes `line` with every backend, the line sitting inside a larger
    /// buffer (bytes before it, its CRLF and more after) as in the decoder.
    fn all(line: &[u8]) -> Vec<(Backend, ScanResult, Vec<Token>, Option<usize>)> {
        let mut buf = b"x {3}\r\n(\"\" ".to_vec();
        let start = buf.len();
        buf.extend_from_slice(line);
        buf.extend_from_slice(b"\r\nnext line \"(\" {7}\r\n");
        Backend::available()
            .into_iter()
            .map(|b| {
                let mut sc = Scanner::new(b);
                let lf = sc.find_lf(&buf, start);
                let mut out = Vec::new();
                let r = sc.tokenize(&buf, start..start + line.len(), start - 7, &mut out);
                (b, r, out, lf)
            })
            .collect()
    }

    fn agree(line: &[u8]) {
        let results = all(line);
        let (_, r0, t0, l0) = &results[0];
        for (b, r, t, l) in &results[1..] {
            assert_eq!((r0, t0, l0), (r, t, l), "backend {b:?} disagrees on {:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn the_environment_can_force_the_reference() {
        // CI runs the protocol tests a second time with RINGMAIL_SCAN=scalar.
        let forced = std::env::var_os("RINGMAIL_SCAN").is_some_and(|v| v == "scalar");
        assert_eq!(Backend::detect() == Backend::Scalar, forced || Backend::best() == Backend::Scalar);
    }

    #[test]
    fn incremental_classification_agrees() {
        // Bytes arriving a few at a time, with consumed lines before.
        let text = b"a1 NOOP\r\na2 SEARCH SUBJECT \"x (y)\" FROM \"\\\"q\" 1:5 (OR SEEN DRAFT)\r\na3 LOGIN {3}\r\n".repeat(5);
        for b in Backend::available() {
            let mut sc = Scanner::new(b);
            let mut reference = Scanner::new(Backend::Scalar);
            let mut buf = Vec::new();
            let mut at = 0;
            for chunk in text.chunks(7) {
                buf.extend_from_slice(chunk);
                while let Some(lf) = sc.find_lf(&buf, at) {
                    assert_eq!(Some(lf), reference.find_lf(&buf, at));
                    let end = if buf[lf - 1] == b'\r' { lf - 1 } else { lf };
                    let (mut x, mut y) = (Vec::new(), Vec::new());
                    assert_eq!(sc.tokenize(&buf, at..end, at, &mut x), reference.tokenize(&buf, at..end, at, &mut y));
                    assert_eq!(x, y, "{b:?}");
                    at = lf + 1;
                }
                assert_eq!(sc.find_lf(&buf, at), None);
            }
        }
    }

    #[test]
    fn tokens_of_a_fetch() {
        let line = b"a1 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM)])";
        let mut out = Vec::new();
        assert_eq!(tokenize_reference(line, 0, &mut out), Ok(None));
        let kinds: Vec<_> = out.iter().map(|t| (t.kind, t.gap, &line[t.range()])).collect();
        use Kind::*;
        assert_eq!(
            kinds,
            vec![
                (Atom, 0, &b"a1"[..]),
                (Atom, 1, b"UID"),
                (Atom, 1, b"FETCH"),
                (Atom, 1, b"1:*"),
                (LParen, 1, b"("),
                (Atom, 0, b"FLAGS"),
                (Atom, 1, b"BODY.PEEK[HEADER.FIELDS"),
                (LParen, 1, b"("),
                (Atom, 0, b"FROM"),
                (RParen, 0, b")"),
                (Atom, 0, b"]"),
                (RParen, 0, b")"),
                (Eol, 0, b""),
            ]
        );
        agree(line);
    }

    #[test]
    fn quoted_and_literal_announcements() {
        let mut out = Vec::new();
        let r = tokenize_reference(br#"a LOGIN "jo\"e" {5+}"#, 0, &mut out);
        assert_eq!(r, Ok(Some(Announce { len: 5, nonsync: true, binary: false, gap: 1 })));
        assert_eq!(out[2].kind, Kind::QuotedEscaped);
        out.clear();
        let r = tokenize_reference(b"a APPEND x ~{12}", 0, &mut out);
        assert_eq!(r, Ok(Some(Announce { len: 12, nonsync: false, binary: true, gap: 1 })));
        assert_eq!(out.last().unwrap().kind, Kind::Atom);
        out.clear();
        tokenize_reference(b"a  NOOP  ", 0, &mut out).unwrap();
        assert_eq!((out[1].gap, out[2].kind, out[2].gap), (2, Kind::Eol, 2));
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
            for b in Backend::available() {
                prop_assert_eq!(Scanner::new(b).find_lf(&buf, from), find_lf_reference(&buf, from));
            }
        }
    }
}
