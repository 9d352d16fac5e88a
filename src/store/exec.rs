//! Running the store's futures without a runtime: [`block_on`] for one
//! future, [`Deferred`] for tasks spawned by the store (command-line tools,
//! tests, the in-memory driver). The server hands the store a [`Spawner`]
//! onto its own runtime instead.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Wake, Waker};

/// Spawns a task on the caller's runtime.
pub type Spawner = Box<dyn Fn(Pin<Box<dyn Future<Output = ()>>>)>;

/// Polls a future to completion on this thread, sleeping until woken
/// (command-line tools and tests; the server never blocks like this).
pub fn block_on<F: Future>(f: F) -> F::Output {
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(std::sync::Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// A spawner that runs tasks only when asked ([`Deferred::run`]): for
/// command-line tools and tests that drive the store without a runtime.
#[derive(Clone, Default)]
pub struct Deferred(Rc<RefCell<Vec<LocalTask>>>);

type LocalTask = Pin<Box<dyn Future<Output = ()>>>;

/// Wakes by setting a flag and unparking the polling thread.
struct Flag(std::sync::atomic::AtomicBool, std::thread::Thread);

impl Wake for Flag {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        self.1.unpark();
    }
}

impl Deferred {
    pub fn spawner(&self) -> Spawner {
        let q = self.0.clone();
        Box::new(move |f| q.borrow_mut().push(f))
    }

    /// Runs every spawned task (and what they spawn) to completion,
    /// interleaved, on this thread.
    pub fn run(&self) {
        let flag = std::sync::Arc::new(Flag(std::sync::atomic::AtomicBool::new(false), std::thread::current()));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut tasks: Vec<LocalTask> = Vec::new();
        loop {
            tasks.append(&mut self.0.borrow_mut());
            if tasks.is_empty() {
                return;
            }
            flag.0.store(false, std::sync::atomic::Ordering::SeqCst);
            tasks.retain_mut(|t| t.as_mut().poll(&mut cx).is_pending());
            let spawned = !self.0.borrow().is_empty();
            if !tasks.is_empty() && !spawned && !flag.0.load(std::sync::atomic::Ordering::SeqCst) {
                // Waiting for another thread (a sync helper) to wake us.
                std::thread::park_timeout(std::time::Duration::from_millis(5));
            }
        }
    }

    /// Polls `f` to completion, running spawned tasks whenever it waits.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        let flag = std::sync::Arc::new(Flag(std::sync::atomic::AtomicBool::new(false), std::thread::current()));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut f = std::pin::pin!(f);
        loop {
            flag.0.store(false, std::sync::atomic::Ordering::SeqCst);
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
            let spawned = !self.0.borrow().is_empty();
            self.run();
            if !spawned && !flag.0.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::park_timeout(std::time::Duration::from_millis(5));
            }
        }
    }
}
