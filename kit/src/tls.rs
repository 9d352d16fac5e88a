//! TLS on a connection: rustls's buffered connection API driven over the
//! same monoio socket the plaintext code uses. The helpers work for either
//! side (`ConnectionCommon<D>`): the server drives its connections with
//! them, the load generator its clients.
//!
//! Why not an async TLS stream wrapper (monoio-rustls): a wrapper owns its
//! read and write buffers for the life of the stream, hides socket
//! readiness, and pins the stream type, while the connection loops here wait
//! for readiness with no buffer held (the idle-memory budget), read into
//! pooled buffers, and move a logged-in connection to its user's worker as a
//! plain descriptor plus state. `ServerConnection` is `Send` state that
//! moves along with the descriptor, and driving it takes four calls
//! (`read_tls`, `process_new_packets`, `reader`, `write_tls`).
//!
//! Message bodies cannot go from the mapping to the socket under TLS (they
//! must be encrypted); they are encrypted straight from the mapping in
//! record-sized pieces, so a large FETCH never builds a second copy of the
//! message in memory.

use std::io::{self, Read, Write};

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::ConnectionCommon;

/// Plaintext handed to rustls per round: a few TLS records, so memory per
/// connection stays bounded whatever the response size.
const WRITE_CHUNK: usize = 64 << 10;
/// Ciphertext read per call: one maximal TLS record with its header, so the
/// plaintext it yields stays under rustls's received-plaintext limit.
const READ_CHUNK: usize = 16 * 1024 + 2048;

/// What a read produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    /// Plaintext was appended.
    Data,
    /// Only TLS housekeeping (a partial record, a ticket, a key update).
    Nothing,
    /// The client closed (with or without close_notify).
    Eof,
}

/// Sends whatever rustls has queued: handshake messages, records, alerts.
pub async fn send_pending<D>(stream: &mut TcpStream, tls: &mut ConnectionCommon<D>) -> io::Result<()> {
    while tls.wants_write() {
        let mut buf = Vec::new();
        tls.write_tls(&mut buf)?;
        let (r, _) = stream.write_all(buf).await;
        r?;
    }
    Ok(())
}

/// Reads once from the socket, decrypts, and appends the plaintext to `into`.
pub async fn read<D>(stream: &mut TcpStream, tls: &mut ConnectionCommon<D>, into: &mut Vec<u8>) -> io::Result<Input> {
    let (r, buf) = stream.read(Vec::with_capacity(READ_CHUNK)).await;
    let n = r?;
    if n == 0 {
        return Ok(Input::Eof);
    }
    let before = into.len();
    let mut rd = &buf[..n];
    let mut eof = false;
    while !rd.is_empty() {
        tls.read_tls(&mut rd)?;
        if let Err(e) = tls.process_new_packets() {
            // rustls queued an alert telling the client why; send it if we can.
            let _ = send_pending(stream, tls).await;
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        eof |= drain(tls, into)?;
    }
    // Answers to what arrived (handshake flights, key updates).
    send_pending(stream, tls).await?;
    Ok(if into.len() > before {
        Input::Data
    } else if eof {
        Input::Eof
    } else {
        Input::Nothing
    })
}

/// Moves all decrypted plaintext into `into`; true once the client sent
/// close_notify.
fn drain<D>(tls: &mut ConnectionCommon<D>, into: &mut Vec<u8>) -> io::Result<bool> {
    match tls.reader().read_to_end(into) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        // Closed without close_notify: the data so far is kept; the socket
        // read that follows reports the end.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(true),
        Err(e) => Err(e),
    }
}

/// Runs the handshake to completion; plaintext the client sent right after
/// it (pipelined) lands in `into`.
pub async fn handshake<D>(stream: &mut TcpStream, tls: &mut ConnectionCommon<D>, into: &mut Vec<u8>) -> io::Result<()> {
    loop {
        send_pending(stream, tls).await?;
        if !tls.is_handshaking() {
            return Ok(());
        }
        if read(stream, tls, into).await? == Input::Eof {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// Encrypts and sends `parts` in order. rustls takes plaintext until its
/// send buffer is full (it then accepts nothing: `write` returns 0), so the
/// records are sent whenever it stops taking more.
pub async fn write_parts<'a, D>(stream: &mut TcpStream, tls: &mut ConnectionCommon<D>, parts: impl Iterator<Item = &'a [u8]>) -> io::Result<()> {
    for part in parts {
        let mut rest = part;
        while !rest.is_empty() {
            let n = tls.writer().write(&rest[..rest.len().min(WRITE_CHUNK)])?;
            rest = &rest[n..];
            if !rest.is_empty() {
                send_pending(stream, tls).await?;
            }
        }
    }
    send_pending(stream, tls).await
}

/// Sends close_notify (best effort; the socket is shut down after).
pub async fn close<D>(stream: &mut TcpStream, tls: &mut ConnectionCommon<D>) {
    tls.send_close_notify();
    let _ = send_pending(stream, tls).await;
}
