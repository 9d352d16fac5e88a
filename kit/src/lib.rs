//! What the server and the load generator share, so that the load tool
//! does not link the server: the deterministic test-message corpus (both
//! servers in a comparison hold the same mail) and TLS driven over a
//! monoio socket.

pub mod corpus;
pub mod tls;
