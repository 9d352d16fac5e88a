//! See ringmail::fuzzing::dovecot_auth.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringmail::fuzzing::dovecot_auth(data));
