//! COMPRESS=DEFLATE (RFC 4978) with a real client: Python's zlib (the C
//! zlib, an implementation independent of the server's) over plain TCP and
//! beneath TLS, IDLE updates arriving without delay, and hostile streams.

mod common;

use std::time::Duration;

use common::{python, TestServer};
use ringmail::config::Driver;

/// A compressed IMAP client: raw deflate both ways, a sync flush after
/// every command (as RFC 4978 section 4 suggests clients do).
const PY_CLIENT: &str = r#"
import ssl, zlib, time
class Z:
    def __init__(self, sock):
        self.s = sock; self.buf = b''; self.z = None
    def start(self):
        self.c = zlib.compressobj(6, zlib.DEFLATED, -15); self.d = zlib.decompressobj(-15)
        assert self.buf == b'', self.buf
        self.z = True
    def send(self, b):
        if self.z: b = self.c.compress(b) + self.c.flush(zlib.Z_SYNC_FLUSH)
        self.s.sendall(b)
    def fill(self):
        b = self.s.recv(65536)
        if not b: raise EOFError(self.buf)
        if self.z:
            self.wire += len(b); b = self.d.decompress(b)
        self.buf += b
    def line(self):
        while b'\r\n' not in self.buf: self.fill()
        l, self.buf = self.buf.split(b'\r\n', 1)
        if l.endswith(b'}'):
            n = int(l[l.rindex(b'{') + 1:-1])
            while len(self.buf) < n: self.fill()
            lit, self.buf = self.buf[:n], self.buf[n:]
            return l + b'\r\n' + lit + self.line()
        return l
    def cmd(self, tag, c):
        self.send(tag + b' ' + c + b'\r\n')
        out = []
        while True:
            l = self.line(); out.append(l)
            if l.startswith(tag + b' '): return out
c = Z(socket.create_connection((host, port)))
c.wire = 0
if len(sys.argv) > 2:
    ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
    c.s = ctx.wrap_socket(c.s)
print(c.line())
print(c.cmd(b'a', b'LOGIN joe secret')[-1])
"#;

fn run(ts: &TestServer, tls: bool, script: &str) -> String {
    let mut args = vec![if tls { ts.imaps.unwrap() } else { ts.addr }.to_string()];
    if tls {
        args.push("tls".into());
    }
    python(&format!("{PY_CLIENT}{script}"), &args)
}

fn start(driver: Driver) -> TestServer {
    TestServer::start(driver, |c| c.imap.imaps = vec!["127.0.0.1:0".parse().unwrap()])
}

/// Commands and responses of every size go through compressed, beneath TLS
/// too; a second COMPRESS is refused with COMPRESSIONACTIVE (RFC 4978
/// section 3); the logout's BYE arrives compressed.
fn round_trip(driver: Driver) {
    let ts = start(driver);
    for tls in [false, true] {
        let out = run(
            &ts,
            tls,
            r#"
print('caps', b'COMPRESS=DEFLATE' in c.cmd(b'b', b'CAPABILITY')[0])
r = c.cmd(b'c', b'COMPRESS DEFLATE'); print(r[-1]); c.start()
body = b''.join(b'line %d of a long message body\r\n' % i for i in range(20000))
msg = b'Subject: squeeze\r\n\r\n' + body
print(c.cmd(b'd', b'APPEND INBOX {%d+}\r\n' % len(msg) + msg)[-1][:4])
c.cmd(b'e', b'SELECT INBOX')
r = c.cmd(b'f', b'FETCH * (BODY[])')
print('same', msg in r[0], 'wire', c.wire < len(msg) // 4)
print(c.cmd(b'g', b'COMPRESS DEFLATE')[-1])
print(c.cmd(b'h', b'NOOP')[-1])
print(c.cmd(b'i', b'LOGOUT')[0])
"#,
        );
        assert!(out.contains("caps True\n"), "{out}");
        assert!(out.contains("b'c OK DEFLATE active'\n"), "{out}");
        assert!(out.contains("b'd OK'\n"), "{out}");
        assert!(out.contains("same True wire True\n"), "tls={tls}: {out}");
        assert!(out.contains("b'g NO [COMPRESSIONACTIVE] DEFLATE is already active.'\n"), "{out}");
        assert!(out.contains("b'h OK"), "{out}");
        assert!(out.contains("b'* BYE"), "{out}");
    }
}

/// An update for an idling compressed client is flushed to it at once,
/// not held in the compressor (RFC 4978 section 4: flush at the end of
/// every response).
fn idle_updates_arrive(driver: Driver) {
    let ts = start(driver);
    let out = run(
        &ts,
        false,
        r#"
c.cmd(b'c', b'COMPRESS DEFLATE'); c.start()
c.cmd(b'd', b'SELECT INBOX')
c.send(b'e IDLE\r\n'); print(c.line())
o = Z(socket.create_connection((host, port))); o.line(); o.cmd(b'a', b'LOGIN joe secret')
o.cmd(b'b', b'APPEND INBOX {9+}\r\nSubject: \r\n')
c.s.settimeout(5)
t = time.time(); print(c.line(), time.time() - t < 2)
c.send(b'DONE\r\n')
while not (l := c.line()).startswith(b'e '): pass
print(l)
"#,
    );
    assert!(out.contains("b'+ idling'\n"), "{out}");
    assert!(out.contains("b'* 1 EXISTS' True\n"), "{out}");
    assert!(out.contains("b'e OK"), "{out}");
}

/// A stream that is not deflate ends that connection with a BYE; a compressed flood
/// without a line end is refused like an uncompressed one; the server
/// keeps serving others.
fn hostile_streams(driver: Driver) {
    let ts = start(driver);
    let out = run(
        &ts,
        false,
        r#"
c.cmd(b'c', b'COMPRESS DEFLATE'); c.start()
c.s.sendall(b'\xff' * 64)
try:
    print('garbage answered', c.line())
except (EOFError, ConnectionResetError):
    print('garbage closed')
b = Z(socket.create_connection((host, port))); b.wire = 0; b.line(); b.cmd(b'a', b'LOGIN joe secret')
b.cmd(b'c', b'COMPRESS DEFLATE'); b.start()
zc = zlib.compressobj(9, zlib.DEFLATED, -15)
bomb = zc.compress(b'x NOOP ' + b'a' * (64 << 20)) + zc.flush(zlib.Z_SYNC_FLUSH)
print('bomb bytes', len(bomb) < 200000)
try:
    b.s.sendall(bomb)
except (BrokenPipeError, ConnectionResetError):
    pass
try:
    while b'\r\n' not in b.buf: b.fill()
    print('bomb answered', b.buf.split(b'\r\n')[0][:40])
except (EOFError, ConnectionResetError):
    print('bomb closed')
d = Z(socket.create_connection((host, port))); d.line(); print('still', d.cmd(b'a', b'LOGIN joe secret')[-1])
"#,
    );
    assert!(out.contains("garbage answered b'* BYE Invalid compressed data'\n"), "{out}");
    assert!(out.contains("bomb bytes True\n"), "{out}");
    assert!(out.contains("bomb answered b'* BYE") || out.contains("bomb answered b'x BAD") || out.contains("bomb closed"), "{out}");
    assert!(out.contains("still b'a OK"), "{out}");
    // The server is still whole and answers promptly.
    let mut c = ts.client();
    c.r.get_ref().set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.login("joe", "secret");
}

both_drivers! {
    compressed_round_trip_plain_and_tls => round_trip;
    compressed_idle_updates_arrive_at_once => idle_updates_arrive;
    compressed_hostile_streams_end_only_their_connection => hostile_streams;
}
