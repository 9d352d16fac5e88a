//! A one-task wake-up flag: the store fires it when a mailbox changes, the
//! server fires it to shut down, and the connection waiting in IDLE (or
//! between commands) wakes. Single-threaded; no locks.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
pub struct Signal {
    fired: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Signal {
    pub fn new() -> Rc<Signal> {
        Rc::new(Signal::default())
    }

    /// Marks the signal and wakes its waiter, if any.
    pub fn fire(&self) {
        self.fired.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Whether it fired since the last `take` (and clears it).
    pub fn take(&self) -> bool {
        self.fired.replace(false)
    }

    /// Resolves once the signal fires (immediately if it already has); clears it.
    pub fn wait(&self) -> Wait<'_> {
        Wait { s: self }
    }
}

pub struct Wait<'a> {
    s: &'a Signal,
}

impl Future for Wait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.s.fired.replace(false) {
            return Poll::Ready(());
        }
        self.s.waker.set(Some(cx.waker().clone()));
        Poll::Pending
    }
}

/// Lets every other ready task of this thread run once before continuing.
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
