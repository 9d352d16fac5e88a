//! Where an import's operations go: straight into the store when no server
//! runs (the command holds the data directory's lock meanwhile, as
//! `ringmail deliver` does), or to the running server's control socket,
//! whose worker for the user runs the same [`super::apply`] code while
//! sessions go on.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use super::model::{Op, Reply};
use super::{apply, wire};
use crate::config::Config;
use crate::datadir::DataDirLock;
use crate::store::{RealIo, Settings, Store};

pub trait Target {
    /// Runs `op` (with an Append's message bytes), durably.
    fn call(&mut self, op: Op, data: Vec<Vec<u8>>) -> Result<Reply, String>;
    /// Says where the operations go, for the summary.
    fn describe(&self) -> String;
    /// The most bytes and messages to store in one operation.
    fn batch_limits(&self) -> (u64, usize) {
        (32 << 20, 5000)
    }
}

/// Opens the store of `config`: directly if no server holds it, else
/// through the server's control socket.
pub fn open(config: &Config) -> Result<Box<dyn Target>, String> {
    match DataDirLock::acquire(&config.data_dir, Duration::ZERO)? {
        Some(lock) => Ok(Box::new(Local::new(config, lock))),
        None => Ok(Box::new(Remote::connect(&config.data_dir)?)),
    }
}

/// A store to read from, for an admin command (`export`, `user quota`):
/// without a server, the store itself under the data directory's lock
/// (kept in the answer for as long as the store is used); beside a running
/// one, a read-only look at what it has written, which tidies nothing.
pub fn read_view(config: &Config) -> Result<(Store, Option<DataDirLock>), String> {
    let lock = DataDirLock::acquire(&config.data_dir, Duration::ZERO)?;
    let io: Rc<dyn crate::store::Io> = if lock.is_some() { Rc::new(RealIo::inline()) } else { Rc::new(crate::store::ReadOnlyIo) };
    Ok((Store::new(io, &config.data_dir.join("mail"), Settings::configured(&config.store)), lock))
}

/// The store itself, with no server running.
pub struct Local {
    store: Store,
    _lock: Option<DataDirLock>,
}

impl Local {
    pub fn new(config: &Config, lock: DataDirLock) -> Local {
        Self::with_store(Store::new(Rc::new(RealIo::inline()), &config.data_dir.join("mail"), Settings::configured(&config.store)), Some(lock))
    }

    pub fn with_store(store: Store, lock: Option<DataDirLock>) -> Local {
        Local { store, _lock: lock }
    }
}

impl Target for Local {
    fn call(&mut self, op: Op, data: Vec<Vec<u8>>) -> Result<Reply, String> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let a = apply::execute(&self.store, op, data, now)?;
        self.store.run_pending();
        for t in a.tickets {
            crate::store::exec::block_on(t).map_err(|e| format!("cannot make the import durable: {e}"))?;
        }
        Ok(a.reply)
    }

    fn describe(&self) -> String {
        "the data directory (no server running)".into()
    }
}

impl Drop for Local {
    /// Folds the logs into the indexes, so that the server opening the
    /// store next starts from checkpoints.
    fn drop(&mut self) {
        self.store.close();
    }
}

/// A running server, through its control socket.
pub struct Remote {
    stream: UnixStream,
}

impl Remote {
    pub fn connect(data_dir: &Path) -> Result<Remote, String> {
        let path = data_dir.join(wire::SOCKET);
        let stream = UnixStream::connect(&path).map_err(|e| {
            format!("{} is locked (a server or another import runs) and its control socket {} does not answer: {e}", data_dir.display(), path.display())
        })?;
        Ok(Remote { stream })
    }
}

impl Target for Remote {
    fn call(&mut self, op: Op, data: Vec<Vec<u8>>) -> Result<Reply, String> {
        let io = |e: std::io::Error| format!("control socket: {e}");
        wire::write_request(&mut self.stream, &wire::Request::Import(op), &data).map_err(io)?;
        match wire::read_reply(&mut self.stream, 0).map_err(io)?.0 {
            Ok(wire::Answer::Import(r)) => Ok(r),
            Ok(wire::Answer::Move(_)) => Err("the control socket answered something else".into()),
            Err(e) => Err(e),
        }
    }

    fn describe(&self) -> String {
        "the running server".into()
    }

    /// The user's worker stores a batch between serving its sessions:
    /// smaller batches keep that pause to a few milliseconds.
    fn batch_limits(&self) -> (u64, usize) {
        (8 << 20, 1000)
    }
}
