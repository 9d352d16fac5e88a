//! The control socket's framing, for imports into a running server and
//! (over a backend's control port) for user moves: a request is a 4-byte
//! big-endian length, that many bytes of JSON (`{"op": …, "lens": […]}`),
//! then its data (an Append's messages, a staged file's bytes) back to
//! back; an answer is the same with `{"reply": {"Ok": …} or {"Err": why},
//! "lens": […]}` (a Read's bytes follow it).
//! The socket is `<data dir>/control.sock`, mode 0600 in the private data
//! directory: whoever may write the store may use it, nobody else.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use super::model::{Op, Reply};
use super::relocate::{MoveOp, MoveReply};

/// What a control connection asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    Import(Op),
    Move(MoveOp),
}

/// What it is answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Answer {
    Import(Reply),
    Move(MoveReply),
}

/// The socket's file name in the data directory.
pub const SOCKET: &str = "control.sock";

/// Largest JSON part of a request or answer: the state of a mailbox of a
/// million messages (List) is about 25 MB; far more than that is someone
/// else talking.
const MAX_JSON: usize = 512 << 20;

#[derive(Serialize, Deserialize)]
struct Header {
    op: Request,
    lens: Vec<u64>,
}

#[derive(Serialize, Deserialize)]
struct ReplyHeader {
    reply: Result<Answer, String>,
    lens: Vec<u64>,
}

fn read_frame(r: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_JSON {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "control frame too large"));
    }
    let mut b = vec![0; len];
    r.read_exact(&mut b)?;
    Ok(Some(b))
}

fn write_frame(w: &mut impl Write, json: &[u8]) -> std::io::Result<()> {
    w.write_all(&(json.len() as u32).to_be_bytes())?;
    w.write_all(json)
}

fn invalid(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

fn lens(data: &[Vec<u8>]) -> Vec<u64> {
    data.iter().map(|d| d.len() as u64).collect()
}

fn write_data(w: &mut impl Write, data: &[Vec<u8>]) -> std::io::Result<()> {
    for d in data {
        w.write_all(d)?;
    }
    w.flush()
}

fn read_data(r: &mut impl Read, lens: Vec<u64>, max_data: u64) -> std::io::Result<Vec<Vec<u8>>> {
    if lens.iter().sum::<u64>() > max_data {
        return Err(invalid("a batch larger than the server takes"));
    }
    let mut data = Vec::with_capacity(lens.len());
    for len in lens {
        let mut d = vec![0; len as usize];
        r.read_exact(&mut d)?;
        data.push(d);
    }
    Ok(data)
}

pub fn write_request(w: &mut impl Write, op: &Request, data: &[Vec<u8>]) -> std::io::Result<()> {
    let h = serde_json::to_vec(&Header { op: op.clone(), lens: lens(data) }).map_err(invalid)?;
    write_frame(w, &h)?;
    write_data(w, data)
}

/// The next request, or None at the end of the stream. `max_data` bounds
/// the message bytes one request may carry.
pub fn read_request(r: &mut impl Read, max_data: u64) -> std::io::Result<Option<(Request, Vec<Vec<u8>>)>> {
    let Some(b) = read_frame(r)? else { return Ok(None) };
    let h: Header = serde_json::from_slice(&b).map_err(invalid)?;
    let data = read_data(r, h.lens, max_data)?;
    Ok(Some((h.op, data)))
}

pub fn write_reply(w: &mut impl Write, reply: &Result<Answer, String>, data: &[Vec<u8>]) -> std::io::Result<()> {
    let h = serde_json::to_vec(&ReplyHeader { reply: reply.clone(), lens: lens(data) }).map_err(invalid)?;
    write_frame(w, &h)?;
    write_data(w, data)
}

/// An answer (or why there is none) and the data that came with it.
pub type Answered = (Result<Answer, String>, Vec<Vec<u8>>);

/// An answer and its data; `max_data` bounds the data.
pub fn read_reply(r: &mut impl Read, max_data: u64) -> std::io::Result<Answered> {
    let b = read_frame(r)?.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the server closed the control connection"))?;
    let h: ReplyHeader = serde_json::from_slice(&b).map_err(invalid)?;
    let data = read_data(r, h.lens, max_data)?;
    Ok((h.reply, data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::model::Incoming;

    #[test]
    fn requests_and_replies_round_trip_and_oversized_batches_are_refused() {
        let op = Op::Append {
            user: "u".into(),
            mailbox: "INBOX".into(),
            msgs: vec![Incoming { uid: Some(4), flags: 1, keywords: vec!["$x".into()], internal_date: 5, len: 3 }],
        };
        let op = Request::Import(op);
        let mut buf = Vec::new();
        write_request(&mut buf, &op, &[b"abc".to_vec()]).unwrap();
        write_request(&mut buf, &Request::Import(Op::Mailboxes { user: "u".into() }), &[]).unwrap();
        let mut r = &buf[..];
        let (got, data) = read_request(&mut r, 10).unwrap().unwrap();
        assert_eq!(format!("{got:?}"), format!("{op:?}"));
        assert_eq!(data, [b"abc".to_vec()]);
        assert!(matches!(read_request(&mut r, 10).unwrap(), Some((Request::Import(Op::Mailboxes { .. }), _))));
        assert!(read_request(&mut r, 10).unwrap().is_none());
        assert!(read_request(&mut &buf[..], 2).is_err());
        let mut buf = Vec::new();
        write_reply(&mut buf, &Err("no".into()), &[]).unwrap();
        write_reply(&mut buf, &Ok(Answer::Import(Reply::Appended(vec![4]))), &[]).unwrap();
        write_reply(&mut buf, &Ok(Answer::Move(MoveReply::Data)), &[b"bytes".to_vec()]).unwrap();
        let mut r = &buf[..];
        assert_eq!(read_reply(&mut r, 10).unwrap().0.unwrap_err(), "no");
        assert!(matches!(read_reply(&mut r, 10).unwrap().0, Ok(Answer::Import(Reply::Appended(u))) if u == [4]));
        let (a, data) = read_reply(&mut r, 10).unwrap();
        assert!(matches!(a, Ok(Answer::Move(MoveReply::Data))) && data == [b"bytes".to_vec()]);
        assert!(read_reply(&mut &buf[..], 2).is_ok() && read_reply(&mut r, 1).is_err(), "data beyond the bound is refused");
    }
}
