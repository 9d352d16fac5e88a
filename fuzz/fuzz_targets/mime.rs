//! Message analysis at delivery (ENVELOPE, BODYSTRUCTURE, part offsets) on
//! arbitrary bytes: no panic, and every part offset stays inside the message.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let a = ringmail::mime::structure::analyze(data);
    assert!(a.header_len as usize <= data.len());
    let _ = ringmail::mime::analyze(data);
});
