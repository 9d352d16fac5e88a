//! The sans-io IMAP protocol core: bytes in, commands out; responses in,
//! bytes out. It opens no socket and no file and reads no clock.

pub mod command;
pub mod decoder;
pub mod encode;
pub mod imapurl;
pub mod limits;
pub mod parse;
pub mod percent;
pub mod scan;
pub mod seqset;
pub mod utf7;

pub use command::*;
pub use decoder::{Decoder, Event};
pub use encode::{Completion, Out, Shared, Status};
pub use limits::Limits;
pub use seqset::{ranges_of, Ranges, SeqNum, SeqRange, SequenceSet};
