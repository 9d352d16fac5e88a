//! Modified UTF-7 (RFC 3501 5.1.3): decoding any bytes does not panic, and
//! whatever decodes re-encodes to a name that decodes to the same string.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmail::proto::utf7;

fuzz_target!(|data: &[u8]| {
    if let Some(name) = utf7::decode(data) {
        assert_eq!(utf7::decode(utf7::encode(&name).as_bytes()).as_deref(), Some(name.as_str()));
    }
});
