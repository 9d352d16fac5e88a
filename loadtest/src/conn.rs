//! Connections to the server under test: connect (from a chosen source
//! address), send, and read replies through [`LineReader`]. Every reply is
//! checked; anything unexpected becomes an [`Error`] that the scenario
//! counts.

use std::net::SocketAddr;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use crate::reply::{self, LineReader, Status};
use ringmail_kit::deflate::{Deflater, Inflater};
use ringmail_kit::tls::Input;

/// Why an operation failed, as counted in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    Connect(String),
    /// The server closed the connection (or reset it).
    Closed,
    Io(String),
    Timeout,
    /// A NO where OK was expected.
    No(String),
    /// A BAD where OK was expected.
    Bad(String),
    /// An unsolicited or early BYE.
    Bye(String),
    /// Bytes that are not a valid reply.
    Protocol(String),
    /// An SMTP/LMTP reply with an unexpected code.
    Reply(u16),
}

impl Error {
    /// A short stable label for the error table.
    pub fn label(&self) -> String {
        match self {
            Error::Connect(e) => format!("connect: {e}"),
            Error::Closed => "connection closed by server".into(),
            Error::Io(e) => format!("i/o: {e}"),
            Error::Timeout => "timeout".into(),
            Error::No(t) => format!("NO {t}"),
            Error::Bad(t) => format!("BAD {t}"),
            Error::Bye(t) => format!("BYE {t}"),
            Error::Protocol(t) => format!("protocol: {t}"),
            Error::Reply(c) => format!("reply {c}"),
        }
    }
}

fn io_err(e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::UnexpectedEof => Error::Closed,
        _ => Error::Io(e.kind().to_string()),
    }
}

/// Opens a TCP connection from `source` (port chosen at connect time, so
/// one source address serves many destinations) to `target`.
pub async fn connect(target: SocketAddr, source: Option<std::net::IpAddr>) -> Result<TcpStream, Error> {
    let stream = match source {
        None => TcpStream::connect_addr(target).await.map_err(|e| Error::Connect(e.kind().to_string()))?,
        Some(ip) => {
            let ce = |e: std::io::Error| Error::Connect(e.kind().to_string());
            let s = socket2::Socket::new(socket2::Domain::for_address(target), socket2::Type::STREAM, None).map_err(ce)?;
            // IP_BIND_ADDRESS_NO_PORT: pick the port at connect time from the
            // full 4-tuple instead of reserving one per source at bind time.
            let one: libc::c_int = 1;
            // SAFETY: setsockopt on a socket we own, with a valid int option.
            unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&s),
                    libc::IPPROTO_IP,
                    libc::IP_BIND_ADDRESS_NO_PORT,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
            s.bind(&SocketAddr::new(ip, 0).into()).map_err(ce)?;
            s.set_nonblocking(true).map_err(ce)?;
            match s.connect(&target.into()) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
                Err(e) => return Err(ce(e)),
            }
            let std_stream: std::net::TcpStream = s.into();
            let stream = TcpStream::from_std(std_stream).map_err(ce)?;
            stream.writable(false).await.map_err(ce)?;
            // SAFETY: borrowing the fd only to read SO_ERROR.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(std::os::fd::AsRawFd::as_raw_fd(&stream)) };
            if let Some(e) = socket2::SockRef::from(&fd).take_error().map_err(ce)? {
                return Err(ce(e));
            }
            stream
        }
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// A connection with a read buffer and a reply reader.
pub struct Conn {
    stream: TcpStream,
    tls: Option<Box<rustls::ClientConnection>>,
    /// COMPRESS=DEFLATE (RFC 4978): the server's stream, once turned on.
    inflater: Option<Box<Inflater>>,
    buf: Vec<u8>,
    pos: usize,
    reader: LineReader,
    pub timeout: Duration,
    /// Bytes read so far (for throughput figures).
    pub bytes_in: u64,
}

const READ_SIZE: usize = 16 << 10;

thread_local! {
    /// One compressor per load thread, reset after each command: every
    /// command goes out flushed, so a reset compressor continues any
    /// connection's stream (as the server does with its responses), and
    /// thousands of idle compressed connections do not each hold 330 KiB.
    static DEFLATER: std::cell::RefCell<Deflater> = std::cell::RefCell::new(Deflater::new());
}

/// `bytes` compressed as one flushed burst.
fn compress(bytes: &[u8]) -> Vec<u8> {
    DEFLATER.with_borrow_mut(|d| {
        let mut out = Vec::with_capacity(bytes.len() / 2 + 64);
        d.burst(&[bytes], &mut out);
        d.reset();
        out
    })
}

impl Conn {
    pub fn new(stream: TcpStream, timeout: Duration) -> Conn {
        Conn { stream, tls: None, inflater: None, buf: Vec::new(), pos: 0, reader: LineReader::default(), timeout, bytes_in: 0 }
    }

    /// Runs a TLS handshake on the connection (right after connecting, or
    /// after STARTTLS's OK); everything after it is encrypted.
    pub async fn start_tls(&mut self, config: &std::sync::Arc<rustls::ClientConfig>, server: std::net::IpAddr) -> Result<(), Error> {
        let mut t = Box::new(crate::tls::new_connection(config, server).map_err(io_err)?);
        // Input left over from before the handshake belongs to the cleartext
        // session (RFC 9051 6.2.1); drop it.
        self.buf.clear();
        self.pos = 0;
        let hs = ringmail_kit::tls::handshake(&mut self.stream, &mut t, &mut self.buf);
        match monoio::time::timeout(self.timeout, hs).await {
            Ok(r) => r.map_err(io_err)?,
            Err(_) => return Err(Error::Timeout),
        }
        self.tls = Some(t);
        Ok(())
    }

    /// Compresses both ways from here on (after COMPRESS's OK).
    pub fn start_compression(&mut self) -> Result<(), Error> {
        if self.pos < self.buf.len() {
            return Err(Error::Protocol("data after COMPRESS's OK before compression began".into()));
        }
        self.inflater = Some(Box::new(Inflater::new()));
        Ok(())
    }

    pub async fn send(&mut self, bytes: Vec<u8>) -> Result<(), Error> {
        let bytes = if self.inflater.is_some() { compress(&bytes) } else { bytes };
        if let Some(t) = self.tls.as_mut() {
            return match monoio::time::timeout(self.timeout, ringmail_kit::tls::write_parts(&mut self.stream, t, std::iter::once(&bytes[..]))).await {
                Ok(r) => r.map_err(io_err),
                Err(_) => Err(Error::Timeout),
            };
        }
        let (r, _) = match monoio::time::timeout(self.timeout, self.stream.write_all(bytes)).await {
            Ok(x) => x,
            Err(_) => return Err(Error::Timeout),
        };
        r.map(|_| ()).map_err(io_err)
    }

    /// Reads and drops at most `max` bytes of whatever the server sends
    /// (plaintext connections only): a client that reads slowly. The last
    /// 64 bytes seen stay in `tail`, to find where an answer ends.
    pub async fn discard_last(&mut self, max: usize, tail: &mut Vec<u8>) -> Result<usize, Error> {
        if self.tls.is_some() || self.inflater.is_some() {
            return Err(Error::Protocol("raw reads are for plaintext connections".into()));
        }
        let keep = |tail: &mut Vec<u8>, bytes: &[u8]| {
            tail.extend_from_slice(bytes);
            let cut = tail.len().saturating_sub(64);
            tail.drain(..cut);
        };
        if self.pos < self.buf.len() {
            // Already read past the last reply: that comes first.
            let n = (self.buf.len() - self.pos).min(max);
            keep(tail, &self.buf[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.reserve(max);
        let (r, b) = match monoio::time::timeout(self.timeout, self.stream.read(monoio::buf::IoBufMut::slice_mut(buf, 0..max))).await {
            Ok((r, b)) => (r, b.into_inner()),
            Err(_) => return Err(Error::Timeout),
        };
        self.buf = b;
        let r = match r {
            Ok(0) => Err(Error::Closed),
            Ok(n) => {
                self.bytes_in += n as u64;
                keep(tail, &self.buf[..n]);
                Ok(n)
            }
            Err(e) => Err(io_err(e)),
        };
        self.buf.clear();
        self.pos = 0;
        r
    }

    /// Reads the next complete line; its head is in [`line`](Self::line)
    /// until the next call.
    pub async fn next_line(&mut self) -> Result<(), Error> {
        self.reader.next();
        loop {
            if self.pos < self.buf.len() {
                let (n, done) = self.reader.feed(&self.buf[self.pos..]).map_err(|e| Error::Protocol(format!("{e:?}")))?;
                self.pos += n;
                if done {
                    return Ok(());
                }
            }
            let mut buf = std::mem::take(&mut self.buf);
            buf.clear();
            self.pos = 0;
            let raw = self.read_some(buf).await?;
            self.bytes_in += raw.len() as u64;
            self.buf = match self.inflater.as_mut() {
                None => raw,
                Some(z) => {
                    let mut plain = Vec::with_capacity(raw.len() * 4);
                    z.inflate_all(&raw, &mut plain).map_err(|e| Error::Protocol(e.to_string()))?;
                    plain
                }
            };
        }
    }

    /// Reads what arrives next off the wire (decrypted under TLS) into
    /// `buf`; it may come back empty (TLS housekeeping only).
    async fn read_some(&mut self, mut buf: Vec<u8>) -> Result<Vec<u8>, Error> {
        if let Some(t) = self.tls.as_mut() {
            let r = match monoio::time::timeout(self.timeout, ringmail_kit::tls::read(&mut self.stream, t, &mut buf)).await {
                Ok(r) => r,
                Err(_) => return Err(Error::Timeout),
            };
            return match r {
                Ok(Input::Data | Input::Nothing) => Ok(buf),
                Ok(Input::Eof) if !buf.is_empty() => Ok(buf),
                Ok(Input::Eof) => Err(Error::Closed),
                Err(e) => Err(io_err(e)),
            };
        }
        if buf.capacity() < READ_SIZE {
            buf.reserve(READ_SIZE);
        }
        let (r, b) = match monoio::time::timeout(self.timeout, self.stream.read(buf)).await {
            Ok(x) => x,
            Err(_) => return Err(Error::Timeout),
        };
        match r {
            Ok(0) => Err(Error::Closed),
            Ok(_) => Ok(b),
            Err(e) => Err(io_err(e)),
        }
    }

    pub fn line(&self) -> &[u8] {
        self.reader.head()
    }

    /// Lets go of the read buffer (between commands of an idle connection).
    pub fn release_buffer(&mut self) {
        if self.pos >= self.buf.len() {
            self.buf = Vec::new();
            self.pos = 0;
        }
    }
}

/// An IMAP client on a [`Conn`].
pub struct Imap {
    pub conn: Conn,
    tag: u32,
    pub caps: Vec<String>,
}

/// What a completed command returned.
#[derive(Debug, Default, Clone)]
pub struct Done {
    /// Untagged lines received.
    pub untagged: u32,
    /// The last `* N EXISTS` seen.
    pub exists: Option<u32>,
    /// `* N EXPUNGE` responses after that EXISTS (or in all, without one).
    pub expunged_after_exists: u32,
    /// MESSAGES from a `* STATUS` response.
    pub messages: Option<u32>,
    /// The tagged line's text after the status.
    pub text: String,
}

fn text_of(line: &[u8]) -> String {
    String::from_utf8_lossy(line).chars().take(120).collect()
}

impl Imap {
    /// Reads the greeting; a BYE greeting (limits) is an error.
    pub async fn start(conn: Conn) -> Result<Imap, Error> {
        let mut c = Imap { conn, tag: 0, caps: Vec::new() };
        c.conn.next_line().await?;
        let p = reply::parts(c.conn.line());
        match (p.first, reply::status_of(p.second)) {
            (b"*", Status::Ok | Status::PreAuth) => {}
            (b"*", Status::Bye) => return Err(Error::Bye(text_of(p.rest))),
            _ => return Err(Error::Protocol(format!("greeting: {}", text_of(c.conn.line())))),
        }
        if let Some(caps) = reply::capabilities(c.conn.line()) {
            c.caps = caps;
        }
        Ok(c)
    }

    pub fn has(&self, cap: &str) -> bool {
        self.caps.iter().any(|c| c.eq_ignore_ascii_case(cap))
    }

    fn next_tag(&mut self) -> String {
        self.tag += 1;
        format!("a{}", self.tag)
    }

    /// Sends `tag command` and reads up to the tagged reply, which must be OK.
    pub async fn command(&mut self, command: &str) -> Result<Done, Error> {
        let tag = self.next_tag();
        self.conn.send(format!("{tag} {command}\r\n").into_bytes()).await?;
        self.complete(&tag, false).await
    }

    /// Reads until `tag`'s reply; collects what the scenarios look at. An
    /// untagged BYE is an error except in reply to LOGOUT.
    async fn complete(&mut self, tag: &str, logout: bool) -> Result<Done, Error> {
        let mut done = Done::default();
        loop {
            self.conn.next_line().await?;
            let line = self.conn.line();
            let p = reply::parts(line);
            if p.first == b"*" {
                done.untagged += 1;
                if let Some(n) = reply::exists(line) {
                    done.exists = Some(n);
                    done.expunged_after_exists = 0;
                } else if p.rest.eq_ignore_ascii_case(b"EXPUNGE") {
                    done.expunged_after_exists += 1;
                } else if p.second.eq_ignore_ascii_case(b"STATUS") {
                    done.messages = reply::status_messages(line);
                } else if reply::status_of(p.second) == Status::Bye && !logout {
                    return Err(Error::Bye(text_of(p.rest)));
                } else if let Some(caps) = reply::capabilities(line) {
                    self.caps = caps;
                }
                continue;
            }
            if p.first == b"+" {
                return Err(Error::Protocol("unexpected continuation request".into()));
            }
            if p.first != tag.as_bytes() {
                return Err(Error::Protocol(format!("reply for another tag: {}", text_of(line))));
            }
            if let Some(caps) = reply::capabilities(line) {
                self.caps = caps;
            }
            let text = text_of(p.rest);
            return match reply::status_of(p.second) {
                Status::Ok => {
                    done.text = text;
                    Ok(done)
                }
                Status::No => Err(Error::No(text)),
                Status::Bad => Err(Error::Bad(text)),
                _ => Err(Error::Protocol(format!("tagged reply: {}", text_of(line)))),
            };
        }
    }

    /// STARTTLS, the handshake, and CAPABILITY again (what it lists may
    /// change once the session is encrypted, RFC 9051 6.2.1).
    pub async fn starttls(&mut self, config: &std::sync::Arc<rustls::ClientConfig>, server: std::net::IpAddr) -> Result<(), Error> {
        self.command("STARTTLS").await?;
        self.conn.start_tls(config, server).await?;
        self.command("CAPABILITY").await.map(|_| ())
    }

    /// COMPRESS DEFLATE (RFC 4978); both directions compressed after its OK.
    pub async fn compress(&mut self) -> Result<(), Error> {
        self.command("COMPRESS DEFLATE").await?;
        self.conn.start_compression()
    }

    pub async fn login(&mut self, user: &str, password: &str) -> Result<Done, Error> {
        self.command(&format!("LOGIN {} {}", quote(user), quote(password))).await
    }

    /// LOGOUT: a BYE then the tagged OK, then the server closes.
    pub async fn logout(&mut self) -> Result<(), Error> {
        let tag = self.next_tag();
        self.conn.send(format!("{tag} LOGOUT\r\n").into_bytes()).await?;
        self.complete(&tag, true).await.map(|_| ())
    }

    /// APPEND with a synchronizing literal, or LITERAL+ when offered.
    pub async fn append(&mut self, mailbox: &str, flags: &str, message: &[u8]) -> Result<Done, Error> {
        let tag = self.next_tag();
        let plus = self.has("LITERAL+") || (self.has("LITERAL-") && message.len() <= 4096);
        let head = format!("{tag} APPEND {} ({flags}) {{{}{}}}\r\n", quote(mailbox), message.len(), if plus { "+" } else { "" });
        if plus {
            let mut all = head.into_bytes();
            all.extend_from_slice(message);
            all.extend_from_slice(b"\r\n");
            self.conn.send(all).await?;
        } else {
            self.conn.send(head.into_bytes()).await?;
            self.conn.next_line().await?;
            if !self.conn.line().starts_with(b"+") {
                let p = reply::parts(self.conn.line());
                return Err(match reply::status_of(p.second) {
                    Status::No => Error::No(text_of(p.rest)),
                    Status::Bad => Error::Bad(text_of(p.rest)),
                    _ => Error::Protocol(format!("expected +, got {}", text_of(self.conn.line()))),
                });
            }
            let mut all = message.to_vec();
            all.extend_from_slice(b"\r\n");
            self.conn.send(all).await?;
        }
        self.complete(&tag, false).await
    }

    /// Enters IDLE (RFC 2177) and waits for the continuation.
    pub async fn idle(&mut self) -> Result<String, Error> {
        let tag = self.next_tag();
        self.conn.send(format!("{tag} IDLE\r\n").into_bytes()).await?;
        loop {
            self.conn.next_line().await?;
            let line = self.conn.line();
            if line.starts_with(b"+") {
                return Ok(tag);
            }
            if !line.starts_with(b"* ") {
                return Err(Error::Protocol(format!("IDLE: {}", text_of(line))));
            }
        }
    }

    /// Ends IDLE.
    pub async fn done(&mut self, tag: &str) -> Result<Done, Error> {
        self.conn.send(b"DONE\r\n".to_vec()).await?;
        self.complete(tag, false).await
    }
}

/// An IMAP quoted string (or atom-safe as is).
pub fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// A POP3 client on a [`Conn`] (RFC 1939).
pub struct Pop3 {
    pub conn: Conn,
}

impl Pop3 {
    /// Reads the greeting.
    pub async fn start(mut conn: Conn) -> Result<Pop3, Error> {
        conn.reader.plain();
        let mut p = Pop3 { conn };
        p.status().await?;
        Ok(p)
    }

    /// One status line: +OK, or the -ERR as an error.
    async fn status(&mut self) -> Result<(), Error> {
        self.conn.next_line().await?;
        let line = self.conn.line();
        if line.starts_with(b"+OK") {
            Ok(())
        } else if line.starts_with(b"-ERR") {
            Err(Error::No(text_of(&line[4..])))
        } else {
            Err(Error::Protocol(text_of(line)))
        }
    }

    /// A command with a one-line answer.
    pub async fn command(&mut self, cmd: &str) -> Result<(), Error> {
        self.conn.send(format!("{cmd}\r\n").into_bytes()).await?;
        self.status().await
    }

    /// A command with a multi-line answer; the lines and their bytes
    /// (dot-stuffing and CRLF included).
    pub async fn multi(&mut self, cmd: &str) -> Result<(u64, u64), Error> {
        self.conn.send(format!("{cmd}\r\n").into_bytes()).await?;
        self.status().await?;
        let (mut lines, mut bytes) = (0, 0);
        loop {
            self.conn.next_line().await?;
            if self.conn.line() == b"." {
                return Ok((lines, bytes));
            }
            lines += 1;
            bytes += self.conn.reader.wire_len();
        }
    }

    /// STLS (RFC 2595), then the handshake.
    pub async fn stls(&mut self, config: &std::sync::Arc<rustls::ClientConfig>, server: std::net::IpAddr) -> Result<(), Error> {
        self.command("STLS").await?;
        self.conn.start_tls(config, server).await
    }
}

/// An LMTP/SMTP client on a [`Conn`].
pub struct Smtp {
    pub conn: Conn,
    pub pipelining: bool,
}

impl Smtp {
    /// Greeting and LHLO (or EHLO when `lmtp` is false).
    pub async fn start(conn: Conn, lmtp: bool) -> Result<Smtp, Error> {
        let mut c = Smtp { conn, pipelining: false };
        c.expect(220).await?;
        c.conn.send(if lmtp { b"LHLO ringmail-load\r\n".to_vec() } else { b"EHLO ringmail-load\r\n".to_vec() }).await?;
        loop {
            c.conn.next_line().await?;
            let (code, more, text) = reply::smtp_line(c.conn.line()).ok_or_else(|| Error::Protocol(text_of(c.conn.line())))?;
            if code != 250 {
                return Err(Error::Reply(code));
            }
            if text.eq_ignore_ascii_case(b"PIPELINING") {
                c.pipelining = true;
            }
            if !more {
                return Ok(c);
            }
        }
    }

    /// Reads one (possibly multi-line) reply and checks its code.
    pub async fn expect(&mut self, want: u16) -> Result<(), Error> {
        loop {
            self.conn.next_line().await?;
            let (code, more, _) = reply::smtp_line(self.conn.line()).ok_or_else(|| Error::Protocol(text_of(self.conn.line())))?;
            if more {
                continue;
            }
            return if code == want { Ok(()) } else { Err(Error::Reply(code)) };
        }
    }

    /// One transaction for `rcpts`; LMTP answers once per recipient.
    pub async fn deliver(&mut self, from: &str, rcpts: &[String], message: &[u8], lmtp: bool) -> Result<(), Error> {
        let mut env = format!("MAIL FROM:<{from}>\r\n");
        for r in rcpts {
            env.push_str(&format!("RCPT TO:<{r}>\r\n"));
        }
        env.push_str("DATA\r\n");
        if self.pipelining {
            self.conn.send(env.into_bytes()).await?;
        } else {
            for line in env.split_inclusive("\r\n") {
                self.conn.send(line.as_bytes().to_vec()).await?;
                if line != "DATA\r\n" {
                    self.expect(250).await?;
                }
            }
        }
        if self.pipelining {
            for _ in 0..=rcpts.len() {
                self.expect(250).await?;
            }
        }
        self.expect(354).await?;
        self.conn.send(dot_stuff(message)).await?;
        for _ in 0..(if lmtp { rcpts.len() } else { 1 }) {
            self.expect(250).await?;
        }
        Ok(())
    }
}

/// Message data for DATA (RFC 5321 4.5.2), terminated.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    if !message.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}
