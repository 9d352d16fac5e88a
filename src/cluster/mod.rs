//! Many ringmail backends as one service, on proven engines in front:
//! nginx's mail proxy asks [`auth_http`] where a user lives, Postfix asks
//! [`socketmap`] where a recipient's mail goes, [`proxy_header`] carries the
//! client's address from the proxy, and [`map`] says which backend is a
//! user's home (rendezvous hashing, with overrides, and [`moves`] made by
//! `ringmail user move`, whose backends prove themselves to each other with
//! [`control_auth`]).
//!
//! Everything here is sans-io: bytes and facts in, answers out; the
//! listeners live in `net/`.

pub mod auth_http;
pub mod control_auth;
pub mod map;
pub mod moves;
pub mod proxy_header;
pub mod socketmap;

pub use map::{Backend, ClusterMap};
pub use moves::{Moved, Moves};
