//! Credential swapping at the proxy: placeholder → real value in the credential's header
//! on its domain; real value → placeholder in anything the upstream sends back (headers and
//! streamed body), so an echoed credential never reaches the bottle. The swappers are
//! built once per bottle (`Credentials::new`), before the command starts.

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

use super::return_body::SwapBack;
use super::server::LoadedCredential;
use cork_dlp::swap::{SwapError, SwapStream, Swapper};

/// One credential and its forward swapper.
pub struct Inject {
    pub credential: LoadedCredential,
    pub header: HeaderName,
    forward: Swapper,
}

/// The credentials of one host and the swapper that takes their real values back out.
pub struct HostCredentials {
    pub inject: Vec<Inject>,
    pub back: Arc<Swapper>,
}

/// Every host's credentials.
#[derive(Default)]
pub struct Credentials {
    by_host: HashMap<String, Arc<HostCredentials>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("credential {env}: header {header:?} is not a valid header name")]
    Header { env: String, header: String },
    #[error("credential {env}")]
    Swap {
        env: String,
        #[source]
        source: SwapError,
    },
}

impl Credentials {
    pub fn new(loaded: &[LoadedCredential]) -> Result<Self, CredentialError> {
        let mut grouped: HashMap<String, Vec<&LoadedCredential>> = HashMap::new();
        for c in loaded {
            grouped
                .entry(c.credential.domain.clone())
                .or_default()
                .push(c);
        }
        let mut by_host = HashMap::new();
        for (host, creds) in grouped {
            let swap_err = |c: &LoadedCredential| {
                let env = c.credential.env.clone();
                move |source| CredentialError::Swap { env, source }
            };
            let mut inject = Vec::new();
            for c in &creds {
                let header =
                    HeaderName::from_bytes(c.credential.header.as_bytes()).map_err(|_| {
                        CredentialError::Header {
                            env: c.credential.env.clone(),
                            header: c.credential.header.clone(),
                        }
                    })?;
                let forward = Swapper::new(vec![(
                    c.credential.placeholder.as_bytes().to_vec(),
                    c.real.as_bytes().to_vec(),
                )])
                .map_err(swap_err(c))?;
                inject.push(Inject {
                    credential: (*c).clone(),
                    header,
                    forward,
                });
            }
            let back = Swapper::new(
                creds
                    .iter()
                    .map(|c| {
                        (
                            c.real.as_bytes().to_vec(),
                            c.credential.placeholder.as_bytes().to_vec(),
                        )
                    })
                    .collect(),
            )
            .map_err(swap_err(creds[0]))?;
            by_host.insert(
                host,
                Arc::new(HostCredentials {
                    inject,
                    back: Arc::new(back),
                }),
            );
        }
        Ok(Credentials { by_host })
    }

    pub fn for_host(&self, host: &str) -> Option<Arc<HostCredentials>> {
        self.by_host.get(host).cloned()
    }
}

impl Inject {
    /// Swaps the placeholder for the real value in every value of this credential's
    /// header; true when one was swapped.
    pub fn apply(&self, headers: &mut HeaderMap) -> bool {
        let values: Vec<HeaderValue> = headers.get_all(&self.header).iter().cloned().collect();
        let mut swapped = false;
        let mut out = Vec::with_capacity(values.len());
        for v in values {
            match self
                .forward
                .swap_all(v.as_bytes())
                .and_then(|new| HeaderValue::from_bytes(&new).ok())
            {
                Some(new) => {
                    swapped = true;
                    out.push(new);
                }
                None => out.push(v),
            }
        }
        if swapped {
            headers.remove(&self.header);
            for v in out {
                headers.append(self.header.clone(), v);
            }
        }
        swapped
    }
}

impl HostCredentials {
    /// Real values in response headers become placeholders again.
    pub fn headers_back(&self, headers: &mut HeaderMap) {
        for v in headers.values_mut() {
            if let Some(new) = self.back.swap_all(v.as_bytes())
                && let Ok(nv) = HeaderValue::from_bytes(&new)
            {
                *v = nv;
            }
        }
    }

    pub fn stream_back(&self) -> Box<dyn SwapBack> {
        Box::new(Back(Some(self.back.stream_shared())))
    }
}

struct Back(Option<SwapStream>);

impl SwapBack for Back {
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        match self.0.as_mut() {
            Some(s) => s.feed(chunk),
            None => chunk.to_vec(),
        }
    }

    fn finish(&mut self) -> Vec<u8> {
        self.0.take().map(SwapStream::finish).unwrap_or_default()
    }
}
