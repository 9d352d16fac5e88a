//! Modified UTF-7 decoding and re-encoding (see ringmail::fuzzing::utf7).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringmail::fuzzing::utf7(data));
