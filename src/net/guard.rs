//! Containing a panic to the one connection it happened in. Input should
//! never make the server panic (fuzzing and audits see to that); if it
//! does anyway, the task that panicked ends (its connection is closed and
//! the panic logged) and the worker goes on serving everyone else. Before,
//! one malformed LMTP command killed a worker: every later connection the
//! kernel handed to that core hung.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A task that ends, instead of unwinding into the runtime, when it panics.
struct Contained<F> {
    inner: Pin<Box<F>>,
    what: &'static str,
}

impl<F: Future<Output = ()>> Future for Contained<F> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let what = self.what;
        match catch_unwind(AssertUnwindSafe(|| self.inner.as_mut().poll(cx))) {
            Ok(p) => p,
            Err(payload) => {
                let msg = payload.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| payload.downcast_ref::<String>().cloned()).unwrap_or_default();
                tracing::error!(task = what, panic = %msg, "a connection's task panicked; it was closed, the worker goes on");
                Poll::Ready(())
            }
        }
    }
}

/// Spawns a task that handles client input (a connection, a delivery).
pub fn spawn<F: Future<Output = ()> + 'static>(what: &'static str, f: F) {
    monoio::spawn(Contained { inner: Box::pin(f), what });
}

/// Ends a connection so the client reads what was last sent (a BYE, a
/// 421): the write side is shut (FIN after the data), then what the client
/// still sends is read and dropped for a bounded time and amount before
/// the socket closes. Closing with unread input makes the kernel answer
/// with a reset, which can destroy the BYE before the client reads it.
pub async fn linger_close(stream: &mut monoio::net::TcpStream) {
    use monoio::io::{AsyncReadRent, AsyncWriteRent};
    /// At most this long, and this much, is read after the shutdown.
    const LINGER: std::time::Duration = std::time::Duration::from_secs(2);
    const LINGER_BYTES: usize = 1 << 20;
    if stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut buf = Vec::with_capacity(16 << 10);
        let mut total = 0;
        while total < LINGER_BYTES {
            buf.clear();
            let (r, b) = stream.read(buf).await;
            buf = b;
            match r {
                Ok(0) | Err(_) => return,
                Ok(n) => total += n,
            }
        }
    };
    let _ = monoio::time::timeout(LINGER, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    #[test]
    fn a_panicking_task_ends_alone() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().build().unwrap();
        let done = Rc::new(Cell::new(0));
        rt.block_on(async {
            let d = done.clone();
            spawn("panics", async move {
                monoio::time::sleep(std::time::Duration::from_millis(5)).await;
                let v: Vec<u8> = Vec::new();
                let _ = v[3];
                d.set(100);
            });
            let d = done.clone();
            spawn("survives", async move {
                monoio::time::sleep(std::time::Duration::from_millis(20)).await;
                d.set(d.get() + 1);
            });
            monoio::time::sleep(std::time::Duration::from_millis(50)).await;
        });
        assert_eq!(done.get(), 1, "the other task ran to its end; the runtime lived");
    }
}
