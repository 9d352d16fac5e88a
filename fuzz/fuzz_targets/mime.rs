//! Message analysis at delivery (see ringmail::fuzzing::mime).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringmail::fuzzing::mime(data));
