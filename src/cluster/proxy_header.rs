//! The PROXY protocol (HAProxy's, versions 1 and 2) that a proxy in front
//! (nginx's `proxy_protocol on;`, HAProxy's `send-proxy`) puts before the
//! client's first byte, so that per-IP limits, login penalties and logs see
//! the client and not the proxy. Accepted only from configured addresses:
//! from anyone else the same bytes would let a client claim any address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Version 2's signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// A version 1 line is at most 107 bytes, CRLF included.
const V1_MAX: usize = 107;
/// Version 2's address block is at most this long (TLVs included) here.
const V2_MAX_LEN: usize = 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum Header {
    /// More bytes are needed.
    Incomplete,
    /// The header ends after `len` bytes; `source` is the client, or None
    /// for a proxy's own connection (v1 UNKNOWN, v2 LOCAL, or a family
    /// other than TCP over IPv4/IPv6), which keeps the proxy's address.
    Done { len: usize, source: Option<SocketAddr> },
    /// Not a PROXY header: the connection is refused.
    Invalid(&'static str),
}

/// Parses the header at the start of `b`.
pub fn parse(b: &[u8]) -> Header {
    if b.is_empty() {
        return Header::Incomplete;
    }
    if b[0] == b'\r' {
        return parse_v2(b);
    }
    if b[0] == b'P' {
        return parse_v1(b);
    }
    Header::Invalid("no PROXY header")
}

fn parse_v1(b: &[u8]) -> Header {
    let prefix = &b"PROXY "[..b.len().min(6)];
    if !b.starts_with(prefix) {
        return Header::Invalid("no PROXY header");
    }
    let Some(end) = memchr::memmem::find(&b[..b.len().min(V1_MAX)], b"\r\n") else {
        return if b.len() >= V1_MAX { Header::Invalid("PROXY line too long") } else { Header::Incomplete };
    };
    let Ok(line) = std::str::from_utf8(&b[6..end]) else { return Header::Invalid("PROXY line is not text") };
    let f: Vec<&str> = line.split(' ').collect();
    match f.first().copied() {
        Some("UNKNOWN") => Header::Done { len: end + 2, source: None },
        Some(fam @ ("TCP4" | "TCP6")) if f.len() == 5 => {
            let (Ok(ip), Ok(_dst), Ok(port), Ok(_dport)) = (f[1].parse::<IpAddr>(), f[2].parse::<IpAddr>(), f[3].parse::<u16>(), f[4].parse::<u16>()) else {
                return Header::Invalid("bad PROXY addresses");
            };
            if (fam == "TCP4") != ip.is_ipv4() {
                return Header::Invalid("PROXY family and address differ");
            }
            Header::Done { len: end + 2, source: Some(SocketAddr::new(ip, port)) }
        }
        _ => Header::Invalid("bad PROXY line"),
    }
}

fn parse_v2(b: &[u8]) -> Header {
    let n = b.len().min(12);
    if b[..n] != V2_SIGNATURE[..n] {
        return Header::Invalid("no PROXY header");
    }
    if b.len() < 16 {
        return Header::Incomplete;
    }
    let (ver_cmd, fam) = (b[12], b[13]);
    let len = u16::from_be_bytes([b[14], b[15]]) as usize;
    if ver_cmd >> 4 != 2 {
        return Header::Invalid("PROXY version is not 2");
    }
    if len > V2_MAX_LEN {
        return Header::Invalid("PROXY header too long");
    }
    if b.len() < 16 + len {
        return Header::Incomplete;
    }
    let a = &b[16..16 + len];
    let total = 16 + len;
    match ver_cmd & 0x0f {
        0 => return Header::Done { len: total, source: None },
        1 => {}
        _ => return Header::Invalid("unknown PROXY command"),
    }
    let source = match fam {
        0x11 if a.len() >= 12 => Some(SocketAddr::new(Ipv4Addr::new(a[0], a[1], a[2], a[3]).into(), u16::from_be_bytes([a[8], a[9]]))),
        0x21 if a.len() >= 36 => {
            let ip: [u8; 16] = a[..16].try_into().expect("16 bytes");
            Some(SocketAddr::new(Ipv6Addr::from(ip).into(), u16::from_be_bytes([a[32], a[33]])))
        }
        0x11 | 0x21 => return Header::Invalid("PROXY addresses too short"),
        // UDP, UNIX sockets, unspecified: the proxy's own address stands.
        _ => None,
    };
    Header::Done { len: total, source }
}

/// A version 1 header, as a proxy sends it (tests, the load generator).
pub fn v1(source: SocketAddr, dest: SocketAddr) -> String {
    let fam = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    format!("PROXY {fam} {} {} {} {}\r\n", source.ip(), dest.ip(), source.port(), dest.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_1_lines() {
        let src: SocketAddr = "192.0.2.7:51000".parse().unwrap();
        let line = v1(src, "10.0.0.2:143".parse().unwrap());
        let mut b = line.clone().into_bytes();
        b.extend_from_slice(b"a1 LOGIN x y\r\n");
        assert_eq!(parse(&b), Header::Done { len: line.len(), source: Some(src) });
        for cut in 0..line.len() {
            assert_eq!(parse(&line.as_bytes()[..cut]), Header::Incomplete, "{cut}");
        }
        let v6 = "PROXY TCP6 2001:db8::1 2001:db8::2 4000 143\r\n";
        assert_eq!(parse(v6.as_bytes()), Header::Done { len: v6.len(), source: Some("[2001:db8::1]:4000".parse().unwrap()) });
        assert_eq!(parse(b"PROXY UNKNOWN\r\n"), Header::Done { len: 15, source: None });
        assert!(matches!(parse(b"a1 LOGIN x y\r\n"), Header::Invalid(_)));
        assert!(matches!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n"), Header::Invalid(_)));
        assert!(matches!(parse(b"PROXY TCP4 ::1 ::1 1 1\r\n"), Header::Invalid(_)));
        assert!(matches!(parse(&[b'P'; 200]), Header::Invalid(_)));
        assert!(matches!(parse(format!("PROXY TCP4 {}\r\n", "1".repeat(120)).as_bytes()), Header::Invalid(_)));
    }

    #[test]
    fn version_2_headers() {
        let mut b = V2_SIGNATURE.to_vec();
        b.extend_from_slice(&[0x21, 0x11, 0, 12, 192, 0, 2, 9, 10, 0, 0, 2, 0xC3, 0x50, 0, 143]);
        assert_eq!(parse(&b), Header::Done { len: 28, source: Some("192.0.2.9:50000".parse().unwrap()) });
        for cut in 0..b.len() {
            assert_eq!(parse(&b[..cut]), Header::Incomplete, "{cut}");
        }
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(parse(&local), Header::Done { len: 16, source: None });
        let mut bad = V2_SIGNATURE.to_vec();
        bad.extend_from_slice(&[0x11, 0x11, 0, 0]);
        assert!(matches!(parse(&bad), Header::Invalid(_)));
        let mut short = V2_SIGNATURE.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0, 4, 1, 2, 3, 4]);
        assert!(matches!(parse(&short), Header::Invalid(_)));
    }

    proptest::proptest! {
        /// Any bytes: an answer without a panic, and a length inside them.
        #[test]
        fn any_bytes(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            if let Header::Done { len, .. } = parse(&b) {
                proptest::prop_assert!(len <= b.len());
            }
        }
    }
}
