//! `cork approvals ls`, `cork approve ID [--for 10m]` and `cork deny ID`: the operator's
//! side of `supervise`, as clients of the daemon's control socket (`/v1/approvals`).
//! Exit status as the other client verbs ([`crate::control`]); 4 for an id that is not
//! held (decided already, timed out, or never held).

use std::path::{Path, PathBuf};

use cork_daemon::api::{Decide, Decided, Decision, ErrorKind, HeldRequest};
use cork_daemon::client::{self, ClientError};
use http::Method;

/// `cork approvals`.
#[derive(clap::Args)]
pub struct ApprovalsArgs {
    /// The control socket (default $CORK_SOCKET, else /run/cork/cork.sock).
    #[arg(long, global = true)]
    pub socket: Option<PathBuf>,
    #[command(subcommand)]
    pub command: ApprovalsCmd,
}

#[derive(clap::Subcommand)]
pub enum ApprovalsCmd {
    /// The requests held for an operator, every bottle's, oldest first.
    Ls {
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `cork approve ID` / `cork deny ID`.
#[derive(clap::Args)]
pub struct DecideArgs {
    /// The held request's id (`cork approvals ls`).
    pub id: String,
    /// The control socket (default $CORK_SOCKET, else /run/cork/cork.sock).
    #[arg(long)]
    pub socket: Option<PathBuf>,
}

/// `cork approvals ls`.
pub fn approvals(args: ApprovalsArgs) -> u8 {
    let socket = crate::control::socket(args.socket);
    let ApprovalsCmd::Ls { json } = args.command;
    let list: Vec<HeldRequest> = match call(&socket, Method::GET, "/v1/approvals", None) {
        Ok(l) => l,
        Err(e) => return crate::control::fail("approvals", &e),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string(&list).unwrap_or_else(|e| e.to_string())
        );
        return 0;
    }
    println!(
        "{:<6} {:<20} {:<7} {:<28} {:<24} {:<24} HELD BY",
        "ID", "BOTTLE", "METHOD", "HOST", "PATH", "HELD AT"
    );
    for h in list {
        // Why it waits: the ask rule, then the DLP detectors that found something.
        let why: Vec<&str> = h
            .rule
            .iter()
            .chain(&h.detectors)
            .map(String::as_str)
            .collect();
        println!(
            "{:<6} {:<20} {:<7} {:<28} {:<24} {:<24} {}",
            h.id,
            h.bottle,
            h.method,
            h.host,
            h.path,
            h.held_at,
            why.join(",")
        );
    }
    0
}

/// `cork approve ID [--for D]` (`remember`) or `cork deny ID`.
pub fn decide(args: DecideArgs, decision: Decision, remember: Option<String>) -> u8 {
    let (verb, done) = match decision {
        Decision::Approve => ("approve", "approved"),
        Decision::Deny => ("deny", "denied"),
    };
    let socket = crate::control::socket(args.socket);
    let id_ok = !args.id.is_empty() && args.id.bytes().all(|b| b.is_ascii_digit());
    if !id_ok {
        let e = ClientError::Api(cork_daemon::api::ApiError::new(
            ErrorKind::NotFound,
            format!("{:?} is not a held request's id (ids are numbers)", args.id),
        ));
        return crate::control::fail(verb, &e);
    }
    let body = Decide { decision, remember };
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let path = format!("/v1/approvals/{}", args.id);
    match call::<Decided>(&socket, Method::POST, &path, Some(body)) {
        Ok(d) => {
            let kept = if d.remembered_s > 0 {
                format!(
                    "; remembered for {}s for {} {}",
                    d.remembered_s, d.request.method, d.request.host
                )
            } else {
                String::new()
            };
            println!(
                "{} {done}: {} {} {}{}{kept}",
                d.id, d.request.bottle, d.request.method, d.request.host, d.request.path
            );
            0
        }
        Err(e) => crate::control::fail(verb, &e),
    }
}

fn call<T: serde::de::DeserializeOwned>(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<T, ClientError> {
    let v = client::call(socket, method, path, body)?;
    serde_json::from_value(v).map_err(|e| ClientError::Protocol {
        socket: socket.to_owned(),
        why: format!("unexpected answer: {e}"),
    })
}
