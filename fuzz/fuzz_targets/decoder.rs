//! The IMAP decoder on any bytes, cut where the first input byte says:
//! it must not panic, must not buffer past its limits, and must give the
//! same commands whether the input arrives whole or in two pieces.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use ringmail::proto::{Decoder, Event, Limits};

fn commands(chunks: &[&[u8]]) -> Vec<String> {
    let mut d = Decoder::new(Arc::new(Limits::DEFAULT));
    let mut out = Vec::new();
    for c in chunks {
        d.feed(c);
        loop {
            match d.next() {
                Event::NeedMore => break,
                Event::Command(c) => out.push(format!("{} {:?}", c.tag, c.body)),
                Event::AppendStart(_) => d.accept_append(),
                Event::Bad { tag, .. } => out.push(format!("bad {tag:?}")),
                Event::Fatal(m) => {
                    out.push(m.to_string());
                    return out;
                }
                _ => {}
            }
        }
        assert!(d.pending().len() <= Limits::DEFAULT.line_max + 64 * 1024, "decoder buffered past its limits");
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else { return };
    let at = (cut as usize * rest.len()) / 255;
    assert_eq!(commands(&[rest]), commands(&[&rest[..at], &rest[at..]]));
});
