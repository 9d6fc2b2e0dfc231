//! The transparent TLS proxy will live here: it accepts the TCP flows the kernel redirects
//! from a bottle (ports 80/443 by default), reads the SNI, and by policy passes the flow
//! through, inspects it (terminates TLS with a leaf certificate from the bottle's CA, checks
//! Host/:authority against the SNI, runs DLP, swaps credentials) or denies it.
//!
//! What is here so far:
//! - [`client_hello`]: a pure parser for the first bytes a client sends, used before any TLS
//!   is terminated to decide pass-through / inspect / deny by SNI, and to refuse flows that
//!   have no SNI, hide it (ECH), or are not TLS at all (plain HTTP on 443).
//! - [`websocket`]: a frame reader for relayed WebSocket traffic, so DLP can scan each
//!   message's payload as one stream while the original bytes are forwarded.

pub mod client_hello;
pub mod websocket;

pub use client_hello::{
    ClientHelloInfo, HelloError, MAX_PEEK_LEN, NameError, normalize_host_name, peek_client_hello,
};
