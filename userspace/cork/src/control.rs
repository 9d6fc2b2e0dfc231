//! The daemon's CLI verbs: `cork daemon`, and `cork bottle create|ls|show|rm` and
//! `cork audit` ([`crate::audit_verb`]), which are clients of its control socket (`--socket PATH`, else `$CORK_SOCKET`, else
//! `/run/cork/cork.sock`).
//!
//! Exit status of the client verbs: 0 done; 1 the manifest is invalid (FILE:LINE:COL on
//! stderr, as `cork check`); 2 a bad request; 3 the daemon is not running; 4 no such
//! bottle; 5 a bottle of that name exists; 6 refused by the host-only gate; 7 the update
//! changes what a running bottle cannot change (the policy in force is unchanged); 125 the
//! daemon could not enforce (for an update: the policy in force is unchanged), or the
//! exchange failed.

use std::path::{Path, PathBuf};

use cork_daemon::api::{BottleInfo, CreateBottle, ErrorKind, PolicyUpdated, Removed};
use cork_daemon::client::{self, ClientError};
use http::Method;

/// The socket a verb talks to.
pub fn socket(given: Option<PathBuf>) -> PathBuf {
    given
        .or_else(|| std::env::var_os("CORK_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(cork_daemon::DEFAULT_SOCKET))
}

/// The exit status for a client error, and its message on stderr.
pub fn fail(verb: &str, e: &ClientError) -> u8 {
    eprintln!("cork {verb}: {e}");
    match e {
        ClientError::NotRunning { .. } => 3,
        ClientError::Protocol { .. } | ClientError::Timeout { .. } => 125,
        ClientError::Api(a) => match a.kind {
            ErrorKind::Manifest => 1,
            ErrorKind::BadRequest => 2,
            ErrorKind::NotFound => 4,
            ErrorKind::Exists => 5,
            ErrorKind::Forbidden => 6,
            ErrorKind::UpdateRefused => 7,
            ErrorKind::Enforcement => 125,
        },
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    socket: &Path,
    v: serde_json::Value,
) -> Result<T, ClientError> {
    serde_json::from_value(v).map_err(|e| ClientError::Protocol {
        socket: socket.to_owned(),
        why: format!("unexpected answer: {e}"),
    })
}

/// `cork bottle create --manifest M`.
pub fn create(socket: &Path, manifest: &Path) -> Result<BottleInfo, ClientError> {
    let body = manifest_body(socket, manifest)?;
    decode(
        socket,
        client::call(socket, Method::POST, "/v1/bottles", Some(body))?,
    )
}

/// `cork bottle update NAME --manifest M`.
pub fn update(socket: &Path, name: &str, manifest: &Path) -> Result<PolicyUpdated, ClientError> {
    let body = manifest_body(socket, manifest)?;
    decode(
        socket,
        client::call(socket, Method::PUT, &bottle_path(name)?, Some(body))?,
    )
}

/// The request body carrying a manifest file's text.
fn manifest_body(socket: &Path, manifest: &Path) -> Result<Vec<u8>, ClientError> {
    let text = std::fs::read_to_string(manifest).map_err(|e| {
        ClientError::Api(cork_daemon::api::ApiError::new(
            ErrorKind::BadRequest,
            format!("reading {}: {e}", manifest.display()),
        ))
    })?;
    serde_json::to_vec(&CreateBottle {
        manifest: text,
        origin: manifest.display().to_string(),
    })
    .map_err(|e| ClientError::Protocol {
        socket: socket.to_owned(),
        why: e.to_string(),
    })
}

/// `cork bottle ls`.
pub fn list(socket: &Path) -> Result<Vec<BottleInfo>, ClientError> {
    decode(
        socket,
        client::call(socket, Method::GET, "/v1/bottles", None)?,
    )
}

/// `cork bottle show NAME`.
pub fn show(socket: &Path, name: &str) -> Result<BottleInfo, ClientError> {
    decode(
        socket,
        client::call(socket, Method::GET, &bottle_path(name)?, None)?,
    )
}

/// `cork bottle rm NAME`.
pub fn remove(socket: &Path, name: &str) -> Result<Removed, ClientError> {
    decode(
        socket,
        client::call(socket, Method::DELETE, &bottle_path(name)?, None)?,
    )
}

/// `/v1/bottles/NAME`; a name is `[a-z0-9-]` (a manifest's bottle name), anything else
/// could not name a bottle and is refused here rather than sent.
fn bottle_path(name: &str) -> Result<String, ClientError> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        return Err(ClientError::Api(cork_daemon::api::ApiError::new(
            ErrorKind::BadRequest,
            format!("{name:?} is not a bottle name (lowercase letters, digits and '-')"),
        )));
    }
    Ok(format!("/v1/bottles/{name}"))
}

/// `POST /v1/bottles/NAME/exec`: the caller's environment `env` judged by the daemon, and
/// what else `cork exec` needs.
pub fn exec_plan(
    socket: &Path,
    name: &str,
    env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
) -> Result<cork_daemon::api::ExecPlan, ClientError> {
    let path = format!("{}/exec", bottle_path(name)?);
    let body = serde_json::to_vec(&cork_daemon::api::ExecRequest { env }).map_err(|e| {
        ClientError::Protocol {
            socket: socket.to_owned(),
            why: format!("encoding the environment: {e}"),
        }
    })?;
    decode(
        socket,
        client::call(socket, Method::POST, &path, Some(body))?,
    )
}
