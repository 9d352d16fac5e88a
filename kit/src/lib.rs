//! What the server and the load generator share, so that the load tool
//! does not link the server: the deterministic test-message corpus (both
//! servers in a comparison hold the same mail), TLS driven over a monoio
//! socket, and the DEFLATE streams of IMAP COMPRESS.

pub mod corpus;
pub mod deflate;
pub mod tls;
