//! A whole logged-in IMAP session on any client bytes (see ringmail::fuzzing::session).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringmail::fuzzing::session(data));
