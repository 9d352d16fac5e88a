//! The LMTP/SMTP engine on any client bytes (see ringmail::fuzzing::smtp).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringmail::fuzzing::smtp(data));
