//! Writing an [`Out`] with one vectored write: the response text from the
//! output buffer and message bodies straight from their memory mappings.
//!
//! This is the one place outside the tokenizer and the store with `unsafe`:
//! monoio's owned-buffer API needs an `IoVecBuf` that keeps the iovec array
//! and every buffer it points into alive and in place while the kernel
//! reads them. `OutVec` owns the `Out` (heap buffers that do not move when
//! the struct moves) and the iovec array built over them.

use monoio::io::{AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use crate::proto::Out;

/// Writes everything in `out` (encrypted by `tls` once it is on), from its
/// buffer and its shared mappings, and leaves it empty.
pub async fn send(stream: &mut TcpStream, tls: Option<&mut rustls::ServerConnection>, out: &mut Out) -> std::io::Result<()> {
    if let Some(t) = tls {
        let r = ringmail_kit::tls::write_parts(stream, t, out.parts()).await;
        out.clear();
        return r;
    }
    if out.splices.is_empty() {
        let buf = std::mem::take(&mut out.buf);
        let (r, buf) = stream.write_all(buf).await;
        out.buf = buf;
        out.clear();
        return r.map(|_| ());
    }
    let mut v = OutVec::new(std::mem::take(out));
    let mut result = Ok(());
    while v.remaining() > 0 {
        let (r, back) = stream.writev(v).await;
        v = back;
        match r {
            Ok(0) => {
                result = Err(std::io::ErrorKind::WriteZero.into());
                break;
            }
            Ok(n) => v.advance(n),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    *out = v.into_out();
    out.clear();
    result
}

/// Linux accepts at most this many iovecs per writev.
const IOV_MAX: usize = 1024;

pub struct OutVec {
    out: Out,
    iov: Vec<libc::iovec>,
    /// Bytes of `out` already written.
    done: usize,
}

impl OutVec {
    pub fn new(out: Out) -> OutVec {
        let mut v = OutVec { out, iov: Vec::new(), done: 0 };
        v.rebuild();
        v
    }

    pub fn remaining(&self) -> usize {
        self.out.len() - self.done
    }

    pub fn into_out(self) -> Out {
        self.out
    }

    /// Marks `n` bytes written and rebuilds the iovecs for the rest.
    pub fn advance(&mut self, n: usize) {
        self.done += n;
        self.rebuild();
    }

    fn rebuild(&mut self) {
        self.iov.clear();
        let mut skip = self.done;
        let mut push = |iov: &mut Vec<libc::iovec>, s: &[u8]| {
            if iov.len() >= IOV_MAX {
                return;
            }
            if skip >= s.len() {
                skip -= s.len();
                return;
            }
            let s = &s[skip..];
            skip = 0;
            if !s.is_empty() {
                iov.push(libc::iovec { iov_base: s.as_ptr() as *mut libc::c_void, iov_len: s.len() });
            }
        };
        for part in self.out.parts() {
            push(&mut self.iov, part);
        }
    }
}

// SAFETY: every iovec points into `self.out` (its Vec buffer or the shared
// mappings it holds an Rc to), all heap memory that stays put while `self`
// is moved into and back out of the I/O operation and is not modified while
// the operation runs (`OutVec` gives no mutable access until it is returned).
// `iov` itself is a Vec whose heap array also stays put.
unsafe impl monoio::buf::IoVecBuf for OutVec {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.iov.as_ptr()
    }

    fn read_iovec_len(&self) -> usize {
        self.iov.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Shared;

    fn gather(v: &OutVec) -> Vec<u8> {
        let mut b = Vec::new();
        for i in &v.iov {
            // SAFETY: the iovecs point into v.out, alive for this borrow.
            b.extend_from_slice(unsafe { std::slice::from_raw_parts(i.iov_base as *const u8, i.iov_len) });
        }
        b
    }

    #[test]
    fn iovecs_cover_the_output_and_advance() {
        let mut out = Out::new();
        out.raw(b"* 1 FETCH (BODY[] ").literal_shared(Shared::from_vec(vec![b'x'; 1000]), false).raw(b")\r\n");
        let flat = out.flatten();
        let mut v = OutVec::new(out);
        assert_eq!(gather(&v), flat);
        v.advance(10);
        assert_eq!(gather(&v), &flat[10..]);
        v.advance(1000);
        assert_eq!(gather(&v), &flat[1010..]);
        assert_eq!(v.remaining(), flat.len() - 1010);
    }
}
