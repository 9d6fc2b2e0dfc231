//! Credential swapping at the proxy: placeholder → real value in the credential's header
//! on its domain; real value → placeholder in anything the upstream sends back, so an
//! echoed credential never reaches the bottle.

use http::HeaderMap;
use http::header::HeaderValue;

use super::body::SwapBack;
use super::server::LoadedCredential;
use crate::dlp::{SwapStream, Swapper};

/// `input` with every `from` replaced by `to`; `None` when there is none.
pub fn replace_all(input: &[u8], from: &[u8], to: &[u8]) -> Option<Vec<u8>> {
    Swapper::new(vec![(from.to_vec(), to.to_vec())]).swap_all(input)
}

/// Real → placeholder for the credentials of one host; `None` when it has none.
pub fn back_for(creds: &[&LoadedCredential]) -> Option<Swapper> {
    if creds.is_empty() {
        return None;
    }
    Some(Swapper::new(
        creds
            .iter()
            .map(|c| {
                (
                    c.real.as_bytes().to_vec(),
                    c.credential.placeholder.as_bytes().to_vec(),
                )
            })
            .collect(),
    ))
}

pub fn headers_back(sw: &Swapper, headers: &mut HeaderMap) {
    for v in headers.values_mut() {
        if let Some(new) = sw.swap_all(v.as_bytes())
            && let Ok(nv) = HeaderValue::from_bytes(&new)
        {
            *v = nv;
        }
    }
}

pub fn stream_back(sw: Swapper) -> Box<dyn SwapBack> {
    Box::new(Back(sw.stream()))
}

struct Back(SwapStream);

impl SwapBack for Back {
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.0.feed(chunk)
    }

    fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0).finish()
    }
}
