//! The control socket's client side, for the CLI verbs: one request per call on a fresh
//! connection, bounded in time. A daemon that is not there is
//! [`ClientError::NotRunning`] (the socket is missing or nobody accepts on it), never a
//! hang; an answer with an error body is [`ClientError::Api`] with the daemon's kind and
//! message. [`lines`] reads a streamed answer (`GET /v1/audit`) line by line as it comes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
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
    let resp = send(socket, method, path, body).await?;
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| proto(socket, format!("reading the answer: {e}")))?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| proto(socket, format!("answer: {e}")))
}

fn proto(socket: &Path, why: String) -> ClientError {
    ClientError::Protocol {
        socket: socket.to_owned(),
        why,
    }
}

/// How a streamed answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The daemon ended the answer.
    Finished,
    /// SIGINT or SIGTERM came, or the line handler asked to stop.
    Stopped,
}

/// Sends `GET path` and hands each line of the answer (without its `\n`) to `line` as it
/// arrives, until the answer ends, `line` returns false, or SIGINT/SIGTERM comes. The
/// answer must start within the usual bound; after that it may go on for as long as the
/// daemon streams it (`follow=1`). The connection breaking mid-answer is
/// [`ClientError::NotRunning`]: the daemon went away.
pub fn lines(
    socket: &Path,
    path: &str,
    line: impl FnMut(&[u8]) -> bool,
) -> Result<StreamEnd, ClientError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| proto(socket, e.to_string()))?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| proto(socket, format!("installing a SIGTERM handler: {e}")))?;
        tokio::select! {
            read = read_lines(socket, path, line) => read,
            _ = term.recv() => Ok(StreamEnd::Stopped),
            _ = tokio::signal::ctrl_c() => Ok(StreamEnd::Stopped),
        }
    })
}

async fn read_lines(
    socket: &Path,
    path: &str,
    mut line: impl FnMut(&[u8]) -> bool,
) -> Result<StreamEnd, ClientError> {
    let resp = tokio::time::timeout(TIMEOUT, send(socket, Method::GET, path, None))
        .await
        .map_err(|_| ClientError::Timeout {
            socket: socket.to_owned(),
        })??;
    let mut body = resp.into_body();
    let mut partial: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ClientError::NotRunning {
            socket: socket.to_owned(),
            why: format!("the connection broke mid-answer: {e}"),
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        partial.extend_from_slice(&data);
        let mut start = 0;
        while let Some(nl) = partial[start..].iter().position(|&b| b == b'\n') {
            if !line(&partial[start..start + nl]) {
                return Ok(StreamEnd::Stopped);
            }
            start += nl + 1;
        }
        partial.drain(..start);
    }
    if !partial.is_empty() && !line(&partial) {
        return Ok(StreamEnd::Stopped);
    }
    Ok(StreamEnd::Finished)
}

/// Connects, sends, and returns a successful answer's head (the body still to read); an
/// error answer is read whole and becomes [`ClientError::Api`].
async fn send(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<Response<Incoming>, ClientError> {
    let proto = |why: String| proto(socket, why);
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
    if status.is_success() {
        return Ok(resp);
    }
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| proto(format!("reading the answer: {e}")))?
        .to_bytes();
    match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(body) => Err(ClientError::Api(body.error)),
        Err(_) => Err(proto(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&bytes)
        ))),
    }
}
