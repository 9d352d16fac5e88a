//! Raw DEFLATE streams for IMAP COMPRESS=DEFLATE (RFC 4978), one for each
//! direction, sans-io: bytes in, bytes out. The server compresses its
//! responses and inflates commands; the load generator does the opposite.
//!
//! zlib-rs directly rather than through flate2 (which wraps the same code):
//! flate2 does not expose deflate's `mem_level`, and the compressor's size
//! is what decides the memory of a compressed connection. zlib-rs always
//! keeps a 64 Ki-entry hash table (128 KiB), so the server does not keep a
//! compressor per connection: it compresses each burst of output with a
//! compressor borrowed from its worker and hands it back reset (see
//! [`Deflater::reset`]). An inflater must live as long as the connection,
//! because the peer's compressor refers back up to 32 KiB.

use std::io;
use std::mem::MaybeUninit;

use zlib_rs::{DeflateConfig, DeflateFlush, InflateFlush, Status};

/// The largest DEFLATE window (RFC 1951): what a peer may refer back to.
const WINDOW_BITS: u8 = 15;

/// Decompresses one direction of a raw DEFLATE stream.
pub struct Inflater {
    z: zlib_rs::Inflate,
    ended: bool,
}

/// What one [`Inflater::inflate`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inflated {
    /// Compressed bytes used up.
    pub consumed: usize,
    /// Bytes appended to the output.
    pub produced: usize,
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater::new()
    }
}

impl Inflater {
    pub fn new() -> Inflater {
        Inflater { z: zlib_rs::Inflate::new(false, WINDOW_BITS), ended: false }
    }

    /// Inflates `input`, appending at most `limit` bytes to `into`. Stops
    /// early when the output reaches `limit` (call again with the rest of the
    /// input; the inflater may also hold output back until then). An invalid
    /// stream, or data after its final block, is an error.
    pub fn inflate(&mut self, input: &[u8], into: &mut Vec<u8>, limit: usize) -> io::Result<Inflated> {
        let mut done = Inflated { consumed: 0, produced: 0 };
        if self.ended {
            return if input.is_empty() { Ok(done) } else { Err(invalid("data after the end of the compressed stream")) };
        }
        into.reserve(limit);
        let spare = &mut into.spare_capacity_mut()[..limit];
        let (before_in, before_out) = (self.z.total_in(), self.z.total_out());
        let status = self.z.decompress_uninit(input, spare, InflateFlush::SyncFlush).map_err(|e| invalid(e.as_str()))?;
        done.consumed = (self.z.total_in() - before_in) as usize;
        done.produced = (self.z.total_out() - before_out) as usize;
        // SAFETY: zlib-rs initialized the first `produced` bytes of the spare capacity.
        unsafe { into.set_len(into.len() + done.produced) };
        if status == Status::StreamEnd {
            self.ended = true;
            if done.consumed < input.len() {
                return Err(invalid("data after the end of the compressed stream"));
            }
        }
        Ok(done)
    }

    /// Whether the peer ended its stream (a final block: nothing may follow).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Inflates all of `input`, appending to `into` (which grows as needed).
    pub fn inflate_all(&mut self, mut input: &[u8], into: &mut Vec<u8>) -> io::Result<()> {
        const STEP: usize = 16 << 10;
        loop {
            let done = self.inflate(input, into, STEP)?;
            input = &input[done.consumed..];
            if input.is_empty() && done.produced < STEP {
                return Ok(());
            }
        }
    }
}

/// The peer's compressed stream is broken (carried in an `io::Error` of
/// kind `InvalidData`, told apart from TLS errors by [`is_invalid_stream`]).
#[derive(Debug)]
pub struct InvalidStream(String);

impl std::fmt::Display for InvalidStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "compressed stream: {}", self.0)
    }
}

impl std::error::Error for InvalidStream {}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, InvalidStream(why.to_string()))
}

/// Whether `e` says the peer's compressed stream is broken.
pub fn is_invalid_stream(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|r| r.is::<InvalidStream>())
}

/// Compresses one direction of a raw DEFLATE stream, in bursts that each
/// end on a byte boundary (a sync flush), so the peer can read every
/// response as soon as it arrives.
pub struct Deflater {
    z: zlib_rs::Deflate,
}

/// Compression level: zlib's level 1 is quick matching with fixed Huffman
/// codes; 2 and up match lazily with dynamic codes.
const LEVEL: i32 = 2;
/// zlib's memory level: the size of the buffer of literals and matches
/// that make one block (64 << level bytes). zlib-rs sizes its hash table
/// independently of it.
const MEM_LEVEL: i32 = 8;

impl Default for Deflater {
    fn default() -> Self {
        Deflater::new()
    }
}

impl Deflater {
    pub fn new() -> Deflater {
        let config = DeflateConfig { level: LEVEL, window_bits: -i32::from(WINDOW_BITS), mem_level: MEM_LEVEL, ..DeflateConfig::default() };
        Deflater { z: zlib_rs::Deflate::new_with_config(config) }
    }

    /// Compresses from `input` into the spare capacity of `into` (which the
    /// caller sizes; at least a few bytes); returns how much of `input` was
    /// taken. With `flush`, everything taken so far is also written out,
    /// ending on a byte boundary; call until it returns `true` (done) with
    /// room in `into` each time.
    pub fn compress(&mut self, input: &[u8], into: &mut Vec<u8>, flush: bool) -> (usize, bool) {
        let (before_in, before_out) = (self.z.total_in(), self.z.total_out());
        let spare: &mut [MaybeUninit<u8>] = into.spare_capacity_mut();
        let room = spare.len();
        let mode = if flush { DeflateFlush::SyncFlush } else { DeflateFlush::NoFlush };
        // A stream error is impossible here: the state is valid and the
        // flush modes are ordinary; treat one as "nothing done".
        let _ = self.z.compress_uninit(input, spare, mode);
        let taken = (self.z.total_in() - before_in) as usize;
        let written = (self.z.total_out() - before_out) as usize;
        // SAFETY: zlib-rs initialized the first `written` bytes of the spare capacity.
        unsafe { into.set_len(into.len() + written) };
        // Done when everything is out and the output was not filled (a full
        // output may hide more pending bits, as zlib documents for deflate).
        (taken, flush && taken == input.len() && written < room)
    }

    /// Compresses `parts` as one flushed burst, appending to `into` (which
    /// grows as needed).
    pub fn burst(&mut self, parts: &[&[u8]], into: &mut Vec<u8>) {
        for p in parts {
            let mut rest = *p;
            while !rest.is_empty() {
                into.reserve(4096);
                let (n, _) = self.compress(rest, into, false);
                rest = &rest[n..];
            }
        }
        loop {
            into.reserve(4096);
            if self.compress(&[], into, true).1 {
                return;
            }
        }
    }

    /// Starts over with no history, as a fresh compressor would (zlib's
    /// deflateReset), without allocating again. After a flushed burst the
    /// peer's stream is at a byte boundary in a non-final block, so a reset
    /// compressor's output simply continues it; and nothing of the earlier
    /// data (another connection's, when pooled) can be referred to.
    pub fn reset(&mut self) {
        self.z.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compress_all(d: &mut Deflater, parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        d.burst(parts, &mut out);
        out
    }

    fn inflate_all(i: &mut Inflater, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        i.inflate_all(input, &mut out).unwrap();
        out
    }

    #[test]
    fn bursts_round_trip_each_readable_on_its_own() {
        let mut d = Deflater::new();
        let mut i = Inflater::new();
        let first = b"* 1 FETCH (FLAGS (\\Seen))\r\na OK done\r\n".repeat(50);
        let c1 = compress_all(&mut d, &[&first]);
        assert!(c1.len() < first.len() / 4, "{} of {}", c1.len(), first.len());
        assert_eq!(inflate_all(&mut i, &c1), first);
        let second: Vec<u8> = (0..200_000u32).map(|n| (n.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        let head = b"* 2 FETCH (BODY[] {200000}\r\n";
        let c2 = compress_all(&mut d, &[head, &second, b")\r\n"]);
        let back = inflate_all(&mut i, &c2);
        assert!(back.len() == head.len() + second.len() + 3 && back[head.len()..head.len() + second.len()] == second[..]);
    }

    #[test]
    fn a_reset_compressor_continues_the_peers_stream() {
        let mut d = Deflater::new();
        let mut i = Inflater::new();
        let a = compress_all(&mut d, &[b"a OK one\r\n"]);
        d.reset();
        let b = compress_all(&mut d, &[b"b OK two\r\n"]);
        let mut both = a;
        both.extend_from_slice(&b);
        assert_eq!(inflate_all(&mut i, &both), b"a OK one\r\nb OK two\r\n");
    }

    #[test]
    fn output_is_bounded_per_call_and_garbage_is_an_error() {
        let mut d = Deflater::new();
        let big = vec![b'x'; 1 << 20];
        let c = compress_all(&mut d, &[&big]);
        assert!(c.len() < 8192);
        let mut i = Inflater::new();
        let mut out = Vec::new();
        let r = i.inflate(&c, &mut out, 4096).unwrap();
        assert_eq!(r.produced, 4096);
        assert_eq!(out.len(), 4096);
        let mut bad = Inflater::new();
        assert!(bad.inflate(&[0xff; 64], &mut Vec::new(), 4096).is_err());
    }
}
