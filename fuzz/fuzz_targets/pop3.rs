//! See ringmail::fuzzing::pop3.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringmail::fuzzing::pop3(data));
