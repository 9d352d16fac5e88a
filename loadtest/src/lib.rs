//! `ringmail-load`: a load generator for IMAP servers (and LMTP), built to
//! measure the server rather than itself: thread-per-core on monoio,
//! replies parsed without copying message bodies, latencies in
//! hdrhistogram, open-loop schedules free of coordinated omission.

pub mod commands;
pub mod conn;
pub mod procmem;
pub mod reply;
pub mod report;
pub mod run;
pub mod scale;
pub mod scenario;
pub mod stats;
pub mod tls;
