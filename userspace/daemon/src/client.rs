//! The control socket's client side, for the CLI verbs: one request per call on a fresh
//! connection, bounded in time. A daemon that is not there is
//! [`ClientError::NotRunning`] (the socket is missing or nobody accepts on it), never a
//! hang; an answer with an error body is [`ClientError::Api`] with the daemon's kind and
//! message.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use crate::api::{ApiError, ErrorBody};

/// A request, answer included, must not take longer (creating a bottle with a large
/// policy loads and verifies programs: seconds, not minutes).
const TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the cork daemon is not running at {} ({why}); start it with `cork daemon`", socket.display())]
    NotRunning { socket: PathBuf, why: String },
    #[error("talking to the cork daemon at {}: {why}", socket.display())]
    Protocol { socket: PathBuf, why: String },
    #[error("no answer from the cork daemon at {} within {TIMEOUT:?}", socket.display())]
    Timeout { socket: PathBuf },
    #[error("{0}")]
    Api(ApiError),
}

/// Sends `method path` with an optional JSON `body`; the answer's JSON on success.
pub fn call(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<serde_json::Value, ClientError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClientError::Protocol {
            socket: socket.to_owned(),
            why: e.to_string(),
        })?;
    rt.block_on(async {
        tokio::time::timeout(TIMEOUT, exchange(socket, method, path, body))
            .await
            .map_err(|_| ClientError::Timeout {
                socket: socket.to_owned(),
            })?
    })
}

async fn exchange(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<serde_json::Value, ClientError> {
    let proto = |why: String| ClientError::Protocol {
        socket: socket.to_owned(),
        why,
    };
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                ClientError::NotRunning {
                    socket: socket.to_owned(),
                    why: e.to_string(),
                }
            }
            _ => proto(format!("connect: {e}")),
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| proto(format!("handshake: {e}")))?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, "cork")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| proto(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| proto(format!("request: {e}")))?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| proto(format!("reading the answer: {e}")))?
        .to_bytes();
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|e| proto(format!("answer: {e}")));
    }
    match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(body) => Err(ClientError::Api(body.error)),
        Err(_) => Err(proto(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&bytes)
        ))),
    }
}
