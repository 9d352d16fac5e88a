//! A message through delivery, MIME analysis and FETCH on a small stack (see ringmail::fuzzing::message).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringmail::fuzzing::message(data));
