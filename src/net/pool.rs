//! Per-worker pool of I/O buffers (and compressors). A connection holds a
//! read or write buffer only while it has bytes in flight; waiting
//! connections hold none, which is what keeps an idle connection at a few
//! hundred bytes.

use std::cell::RefCell;

use ringmail_kit::deflate::Deflater;

/// Size of a pooled buffer: one read usually brings a whole command.
pub const BUF_SIZE: usize = 16 * 1024;
/// Buffers kept for reuse; more are freed. Enough for the connections
/// that have bytes in flight at one moment, not for all of them.
const KEEP: usize = 64;
/// Compressors kept for reuse (about 330 KiB each): enough for the
/// compressed connections writing at one moment.
const KEEP_DEFLATERS: usize = 4;

#[derive(Default)]
pub struct Pool {
    free: RefCell<Vec<Vec<u8>>>,
    deflaters: RefCell<Vec<Deflater>>,
}

impl Pool {
    pub fn get(&self) -> Vec<u8> {
        self.free.borrow_mut().pop().unwrap_or_else(|| Vec::with_capacity(BUF_SIZE))
    }

    /// Takes a buffer back (cleared). Oversized ones are freed so one huge
    /// command does not pin memory forever.
    pub fn put(&self, mut b: Vec<u8>) {
        if b.capacity() == 0 || b.capacity() > 4 * BUF_SIZE {
            return;
        }
        b.clear();
        let mut free = self.free.borrow_mut();
        if free.len() < KEEP {
            free.push(b);
        }
    }

    /// A compressor with no history (COMPRESS=DEFLATE).
    pub fn get_deflater(&self) -> Deflater {
        self.deflaters.borrow_mut().pop().unwrap_or_default()
    }

    /// Takes a compressor back, reset, so nothing of what it compressed
    /// reaches the next connection that borrows it.
    pub fn put_deflater(&self, mut d: Deflater) {
        let mut free = self.deflaters.borrow_mut();
        if free.len() < KEEP_DEFLATERS {
            d.reset();
            free.push(d);
        }
    }
}
