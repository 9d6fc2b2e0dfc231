//! cork-daemon: the agent that real hosts run — standing bottles held by one long-running
//! process and driven over a host-only control socket.
//!
//! - [`api`]: the protocol, HTTP/1.1 + JSON over a unix socket (documented in the README):
//!   request and response bodies, typed errors.
//! - [`gate`]: who may talk to the socket — decided from kernel facts about the peer
//!   (`SO_PEERCRED`, and the cgroup of the peer process): root on the host, never a
//!   process inside a bottle.
//! - [`server`]: `cork daemon` — the lock that keeps a second daemon out, the socket, the
//!   bottles (each a `cork_agent::BottleRuntime`), the router; `bottle_routes` holds
//!   create, remove and update, `exec_route` the daemon's half of `cork exec` (the
//!   caller's environment judged with the bottle's policy and scanner).
//! - [`audit_query`]: `GET /v1/audit`'s parameters, parsed by the daemon and built by
//!   `cork audit`; the route itself streams the daemon's `cork_audit::AuditHistory`.
//! - [`state_dir`]: one file per standing bottle, for a restarted daemon; `restore`
//!   takes the saved bottles back at start (or lists them fenced, saying why).
//! - [`client`]: what the CLI verbs use; a daemon that is not running is a clear error,
//!   never a hang.

pub mod api;
mod approval_routes;
pub mod audit_query;
mod audit_route;
mod bottle_routes;
pub mod client;
mod exec_route;
pub mod gate;
pub mod notify;
mod origin;
mod restore;
pub mod server;
pub mod state_dir;

/// Where the daemon listens unless told otherwise (`--socket`, `CORK_SOCKET`). Bottles can
/// never connect to it: every bottle's kernel unix gate denies this path whatever its
/// manifest says, and `cork check` refuses a manifest that lists it (`cork_policy`'s
/// `[unix]` rules, which own the constant).
pub const DEFAULT_SOCKET: &str = cork_policy::CONTROL_SOCKET;
/// The daemon's lock: one daemon per host.
pub const LOCK_PATH: &str = "/run/cork/daemon.lock";
