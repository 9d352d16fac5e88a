//! The IMAP decoder on any bytes, cut in two anywhere (see ringmail::fuzzing::decoder).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringmail::fuzzing::decoder(data));
