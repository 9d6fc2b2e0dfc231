//! The inspecting proxy. The kernel redirects a bottle's TCP to inspected ports (80/443 of
//! domain rules by default) to the bottle's proxy listener and records where each
//! connection was going; the proxy reads the SNI before any TLS is terminated and, by
//! policy, refuses the flow, passes it through by SNI, or terminates TLS with a leaf from
//! the bottle's CA, checks every request's Host/:authority against the SNI, applies L7
//! routes, runs DLP on URL, headers and streamed bodies, swaps placeholder credentials for
//! real ones, and streams the response back. Every decision is an audit event.
//!
//! - [`client_hello`]: pure parser of the first bytes (SNI, ALPN, ECH, plain HTTP).
//! - [`ca`]: the per-bottle CA and leaf cache. [`setup`]: credentials, scanner, bundle.
//! - `server` (listeners, runtime), `flow` (per connection), `http` (per request),
//!   `body` (streamed request bodies), `return_body` (responses and their audit event),
//!   `upstream` (verified TLS to the real server), `pool` (upstream connections kept
//!   between the bottle's connections), `codings`, `swap`, `websocket_relay`,
//!   [`events`], [`approvals`] (requests held for an operator under `supervise`).

pub mod approvals;
mod approvals_store;
mod body;
pub mod ca;
pub mod client_hello;
mod codings;
pub mod dlp_rules;
pub mod events;
pub mod fallback;
mod flow;
mod http;
mod pool;
mod redirects;
mod return_body;
mod server;
pub mod setup;
pub mod swap;
pub mod upstream;
pub mod websocket;
mod websocket_relay;

pub use client_hello::{
    ClientHelloInfo, HelloError, MAX_PEEK_LEN, NameError, normalize_host_name, peek_client_hello,
};
pub use redirects::{Original, Redirects};
pub use server::{BoundInspectingProxy, InspectConfig, LoadedCredential, RunningInspectingProxy};

/// Errors that end a body or an upstream exchange.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
