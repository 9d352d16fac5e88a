//! COMPRESS=DEFLATE (RFC 4978) on one connection: what the connection
//! holds while compressed, and the two directions. Compression sits
//! between the session and TLS: responses are compressed, then encrypted;
//! input is decrypted, then inflated.
//!
//! Memory, which is what decides how many compressed clients a host holds:
//! the inflater lives as long as the connection (the client's compressor
//! refers back up to 32 KiB); the compressor is borrowed from the worker's
//! pool for one burst of output and given back reset when the connection
//! waits, so an idle compressed connection holds only the inflater. The
//! cost is that each burst is compressed without the earlier ones as
//! dictionary (see README, "COMPRESS").

use std::io;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use ringmail_kit::deflate::{Deflater, Inflater};
use ringmail_kit::tls::{self, Input};

use super::pool::Pool;

/// Inflated bytes handed to the session per read: a decompression bomb
/// (1 KiB expanding to 1 MiB) arrives in pieces the session can refuse.
const INFLATE_STEP: usize = 64 << 10;
/// Room left in the output buffer below which it is sent before
/// compressing more.
const SEND_AT_ROOM: usize = 256;

/// A compressed connection's state.
pub struct Compression {
    inflater: Inflater,
    /// Input read off the wire but not yet inflated.
    raw: Vec<u8>,
    /// The last inflate stopped at [`INFLATE_STEP`]: it may hold more.
    more: bool,
    /// The compressor of the current burst of output.
    deflater: Option<Deflater>,
}

impl Compression {
    pub fn new() -> Box<Compression> {
        Box::new(Compression { inflater: Inflater::new(), raw: Vec::new(), more: false, deflater: None })
    }

    /// Input is ready without reading the socket.
    pub fn has_input(&self) -> bool {
        !self.raw.is_empty() || self.more
    }

    /// Gives the compressor and the empty input buffer back to the pool
    /// (the connection is about to wait).
    pub fn release(&mut self, pool: &Pool) {
        if let Some(d) = self.deflater.take() {
            pool.put_deflater(d);
        }
        if self.raw.is_empty() {
            pool.put(std::mem::take(&mut self.raw));
        }
    }

    /// Reads compressed bytes if none are waiting, then inflates a step's
    /// worth into `into`.
    pub async fn read(&mut self, stream: &mut TcpStream, tls: Option<&mut rustls::ServerConnection>, pool: &Pool, into: &mut Vec<u8>) -> io::Result<Input> {
        if !self.has_input() {
            if self.raw.capacity() == 0 {
                self.raw = pool.get();
            }
            let got = match tls {
                Some(t) => tls::read(stream, t, &mut self.raw).await?,
                None => {
                    let len = self.raw.len();
                    let (r, slice) = stream.read(monoio::buf::IoBufMut::slice_mut(std::mem::take(&mut self.raw), len..)).await;
                    self.raw = slice.into_inner();
                    if r? == 0 {
                        Input::Eof
                    } else {
                        Input::Data
                    }
                }
            };
            if got != Input::Data {
                return Ok(got);
            }
        }
        // Into the room the buffer has (the caller leaves some), so reads
        // keep to pooled buffers.
        let room = (into.capacity() - into.len()).clamp(1, INFLATE_STEP);
        let done = self.inflater.inflate(&self.raw, into, room)?;
        self.raw.drain(..done.consumed);
        self.more = done.produced == room;
        Ok(if done.produced > 0 {
            Input::Data
        } else if self.inflater.ended() {
            // The client ended its stream: nothing more can come.
            Input::Eof
        } else {
            Input::Nothing
        })
    }

    /// Compresses `parts` as one burst ending on a byte boundary, and sends
    /// it (through TLS if on).
    pub async fn write<'a>(
        &mut self,
        stream: &mut TcpStream,
        mut tls: Option<&mut rustls::ServerConnection>,
        pool: &Pool,
        parts: impl Iterator<Item = &'a [u8]>,
    ) -> io::Result<()> {
        let d = self.deflater.get_or_insert_with(|| pool.get_deflater());
        let mut buf = pool.get();
        for part in parts {
            let mut rest = part;
            while !rest.is_empty() {
                if buf.capacity() - buf.len() < SEND_AT_ROOM {
                    buf = send(stream, tls.as_deref_mut(), buf).await?;
                }
                let (taken, _) = d.compress(rest, &mut buf, false);
                rest = &rest[taken..];
            }
        }
        loop {
            if buf.capacity() - buf.len() < SEND_AT_ROOM {
                buf = send(stream, tls.as_deref_mut(), buf).await?;
            }
            if d.compress(&[], &mut buf, true).1 {
                break;
            }
        }
        let buf = send(stream, tls, buf).await?;
        pool.put(buf);
        Ok(())
    }
}

/// Sends `buf` and returns it emptied.
async fn send(stream: &mut TcpStream, tls: Option<&mut rustls::ServerConnection>, mut buf: Vec<u8>) -> io::Result<Vec<u8>> {
    if !buf.is_empty() {
        match tls {
            Some(t) => tls::write_parts(stream, t, std::iter::once(&buf[..])).await?,
            None => {
                let (r, b) = stream.write_all(buf).await;
                r?;
                buf = b;
            }
        }
    }
    buf.clear();
    Ok(buf)
}
