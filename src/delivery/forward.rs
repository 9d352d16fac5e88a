//! An LMTP client: `ringmail deliver` hands a message to the running
//! server with it, and a backend passes delivered mail on to the backend
//! that owns its recipients (a cluster, docs/scale-out.md): one LMTP
//! transaction to that backend for all of its recipients, each answered by
//! the owner's own reply. The owner
//! replies 250 only after the copy is durable there, so this server
//! acknowledges nothing that is not stored somewhere; anything else (the
//! owner down, a timeout) is a temporary failure the MTA retries.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::smtp::{DeliveryError, HOP_PARAMETER};

/// One recipient to pass on.
#[derive(Debug, Clone)]
pub struct Rcpt {
    pub address: String,
    pub mailbox: Option<String>,
}

/// xtext (RFC 3461 4) for the X-MAILBOX parameter.
pub fn xtext(s: &str) -> String {
    s.bytes().map(|b| if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' { (b as char).to_string() } else { format!("+{b:02X}") }).collect()
}

/// Message data for DATA: dot-stuffed (RFC 5321 4.5.2), ending in CRLF.CRLF.
pub fn write_dot_stuffed(w: &mut impl Write, message: &[u8]) -> std::io::Result<()> {
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            w.write_all(b".")?;
        }
        w.write_all(line)?;
    }
    if !message.is_empty() && !message.ends_with(b"\n") {
        w.write_all(b"\r\n")?;
    }
    w.write_all(b".\r\n")
}

fn temp(to: SocketAddr, e: impl std::fmt::Display) -> DeliveryError {
    DeliveryError::Temporary(format!("LMTP {to}: {e}"))
}

fn reply(r: &mut impl BufRead) -> std::io::Result<(u16, String)> {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        text.push_str(line.trim_end());
        if line.as_bytes().get(3) != Some(&b'-') {
            let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            return Ok((code, text));
        }
        text.push(' ');
    }
}

fn outcome(code: u16, text: &str, to: SocketAddr) -> Result<(), DeliveryError> {
    match code {
        200..=299 => Ok(()),
        550 if text.contains("5.1.1") => Err(DeliveryError::NoSuchUser),
        // 552 5.3.4 (too large) is not a full mailbox.
        552 if text.contains("5.2.2") => Err(DeliveryError::OverQuota),
        _ => Err(temp(to, text)),
    }
}

/// Passes `body` (CRLF line ends, not dot-stuffed) from `from` on to
/// `rcpts` at the owner's LMTP server `to`, marked as a hop; one result per
/// recipient, in order.
pub fn forward(to: SocketAddr, from: &str, rcpts: &[Rcpt], body: &[u8], timeout: Duration) -> Vec<Result<(), DeliveryError>> {
    match TcpStream::connect_timeout(&to, Duration::from_secs(5)) {
        Ok(s) => transaction(s, to, from, rcpts, body, timeout, true),
        Err(e) => rcpts.iter().map(|_| Err(temp(to, &e))).collect(),
    }
}

/// One LMTP transaction over `s` (connected to `to`): `body` from `from`
/// to `rcpts`, each recipient answered by the server's own reply (RFC 2033
/// 4.2), in order. `hop` marks the recipients as passed on by a backend.
/// Also `ringmail deliver`'s way into a running server.
pub fn transaction(s: TcpStream, to: SocketAddr, from: &str, rcpts: &[Rcpt], body: &[u8], timeout: Duration, hop: bool) -> Vec<Result<(), DeliveryError>> {
    match exchange(s, to, from, rcpts, body, timeout, hop) {
        Ok(r) => r,
        Err(e) => rcpts.iter().map(|_| Err(e.clone())).collect(),
    }
}

fn exchange(
    s: TcpStream,
    to: SocketAddr,
    from: &str,
    rcpts: &[Rcpt],
    body: &[u8],
    timeout: Duration,
    hop: bool,
) -> Result<Vec<Result<(), DeliveryError>>, DeliveryError> {
    s.set_read_timeout(Some(timeout)).map_err(|e| temp(to, e))?;
    s.set_write_timeout(Some(timeout)).map_err(|e| temp(to, e))?;
    let mut r = BufReader::new(s.try_clone().map_err(|e| temp(to, e))?);
    let mut w = std::io::BufWriter::new(s);
    let io = |e: std::io::Error| temp(to, e);
    let expect = |r: &mut BufReader<TcpStream>, want: u16| -> Result<(), DeliveryError> {
        let (code, text) = reply(r).map_err(io)?;
        if code / 100 == want / 100 {
            Ok(())
        } else {
            Err(temp(to, text))
        }
    };
    expect(&mut r, 220)?;
    write!(w, "LHLO {}\r\n", super::system_hostname()).and_then(|_| w.flush()).map_err(io)?;
    expect(&mut r, 250)?;
    // Pipelined (RFC 2920; LMTP servers offer it): MAIL, every RCPT, DATA.
    write!(w, "MAIL FROM:<{from}>\r\n").map_err(io)?;
    for rc in rcpts {
        let mb = rc.mailbox.as_deref().map(|m| format!(" X-MAILBOX={}", xtext(m))).unwrap_or_default();
        let hop = if hop { format!(" {HOP_PARAMETER}=1") } else { String::new() };
        write!(w, "RCPT TO:<{}>{mb}{hop}\r\n", rc.address).map_err(io)?;
    }
    w.flush().map_err(io)?;
    expect(&mut r, 250)?;
    let mut accepted = Vec::with_capacity(rcpts.len());
    let mut results: Vec<Option<Result<(), DeliveryError>>> = Vec::with_capacity(rcpts.len());
    for _ in rcpts {
        let (code, text) = reply(&mut r).map_err(io)?;
        let ok = code / 100 == 2;
        accepted.push(ok);
        results.push(if ok { None } else { Some(outcome(code, &text, to)) });
    }
    if !accepted.iter().any(|&a| a) {
        let _ = write!(w, "QUIT\r\n").and_then(|_| w.flush());
        return Ok(results.into_iter().map(|r| r.unwrap_or(Ok(()))).collect());
    }
    write!(w, "DATA\r\n").and_then(|_| w.flush()).map_err(io)?;
    expect(&mut r, 354)?;
    write_dot_stuffed(&mut w, body).and_then(|_| w.flush()).map_err(io)?;
    // LMTP: one reply per accepted recipient, in order (RFC 2033 4.2).
    for (i, ok) in accepted.iter().enumerate() {
        if *ok {
            let (code, text) = reply(&mut r).map_err(io)?;
            results[i] = Some(outcome(code, &text, to));
        }
    }
    let _ = write!(w, "QUIT\r\n").and_then(|_| w.flush());
    Ok(results.into_iter().map(|r| r.unwrap_or_else(|| Err(temp(to, "no answer")))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing_round_trips_through_the_engine() {
        let mut w = Vec::new();
        write_dot_stuffed(&mut w, b".a\r\n..b\r\nc").unwrap();
        assert_eq!(w, b"..a\r\n...b\r\nc\r\n.\r\n");
    }

    #[test]
    fn xtext_escapes_plus_equals_and_non_ascii() {
        assert_eq!(xtext("Lists/a+b=c d"), "Lists/a+2Bb+3Dc+20d");
        assert_eq!(xtext("ü"), "+C3+BC");
    }
}
