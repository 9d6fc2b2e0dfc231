//! Relays an upgraded WebSocket connection.

use std::sync::Arc;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::body::AuditOnEnd;
use super::server::Shared;

pub async fn relay(_shared: Arc<Shared>, down: OnUpgrade, up: OnUpgrade, audit: AuditOnEnd) {
    let (Ok(down), Ok(up)) = (down.await, up.await) else {
        return;
    };
    let mut down = TokioIo::new(down);
    let mut up = TokioIo::new(up);
    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
    drop(audit);
}
