//! Credential swapping at the proxy: placeholder → real value in the credential's header
//! on its domain; real value → placeholder in anything the upstream sends back, so an
//! echoed credential never reaches the bottle.

use http::HeaderMap;
use http::header::HeaderValue;

use super::body::SwapBack;
use super::server::LoadedCredential;

/// Pairs of (from, to), replaced leftmost-first.
pub struct Swapper {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// `input` with every `from` replaced by `to`; `None` when there is none.
pub fn replace_all(input: &[u8], from: &[u8], to: &[u8]) -> Option<Vec<u8>> {
    Swapper {
        pairs: vec![(from.to_vec(), to.to_vec())],
    }
    .swap_all(input)
}

impl Swapper {
    pub fn swap_all(&self, input: &[u8]) -> Option<Vec<u8>> {
        let (out, n) = self.swap(input, input.len());
        (n > 0).then_some(out)
    }

    /// Replaces matches starting before `limit`; returns the output and how many.
    fn swap(&self, input: &[u8], limit: usize) -> (Vec<u8>, usize) {
        let mut out = Vec::with_capacity(input.len());
        let mut i = 0;
        let mut n = 0;
        'outer: while i < input.len() {
            if i < limit {
                for (from, to) in &self.pairs {
                    if !from.is_empty() && input[i..].starts_with(from) {
                        out.extend_from_slice(to);
                        i += from.len();
                        n += 1;
                        continue 'outer;
                    }
                }
            }
            out.push(input[i]);
            i += 1;
        }
        (out, n)
    }

    fn longest(&self) -> usize {
        self.pairs.iter().map(|(f, _)| f.len()).max().unwrap_or(0)
    }
}

/// Real → placeholder for the credentials of one host; `None` when it has none.
pub fn back_for(creds: &[&LoadedCredential]) -> Option<Swapper> {
    if creds.is_empty() {
        return None;
    }
    Some(Swapper {
        pairs: creds
            .iter()
            .map(|c| {
                (
                    c.real.as_bytes().to_vec(),
                    c.credential.placeholder.as_bytes().to_vec(),
                )
            })
            .collect(),
    })
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
    Box::new(Stream {
        sw,
        carry: Vec::new(),
    })
}

/// Streaming replacement: the last (longest − 1) bytes wait for the next chunk, since a
/// match may start there and end in it.
struct Stream {
    sw: Swapper,
    carry: Vec<u8>,
}

impl SwapBack for Stream {
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.carry.extend_from_slice(chunk);
        let keep = self.sw.longest().saturating_sub(1).min(self.carry.len());
        let cut = self.carry.len() - keep;
        // Matches may start only before `cut`; one that starts there may run into the
        // kept tail, so emit up to where the replacement pass stopped consuming.
        let mut out = Vec::new();
        let mut i = 0;
        'outer: while i < cut {
            for (from, to) in &self.sw.pairs {
                if !from.is_empty() && self.carry[i..].starts_with(from) {
                    out.extend_from_slice(to);
                    i += from.len();
                    continue 'outer;
                }
            }
            out.push(self.carry[i]);
            i += 1;
        }
        self.carry.drain(..i);
        out
    }

    fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.carry);
        self.sw.swap(&rest, rest.len()).0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sw() -> Swapper {
        Swapper {
            pairs: vec![(b"REALSECRET".to_vec(), b"placeholder".to_vec())],
        }
    }

    #[test]
    fn streaming_equals_whole_for_every_split() {
        let input = b"xxREALSECRETyyREALSECRETREALSECRzz".to_vec();
        let whole = sw().swap_all(&input).unwrap();
        for a in 0..=input.len() {
            for b in a..=input.len() {
                let mut s = stream_back(sw());
                let mut out = s.feed(&input[..a]);
                out.extend(s.feed(&input[a..b]));
                out.extend(s.feed(&input[b..]));
                out.extend(s.finish());
                assert_eq!(out, whole, "split at {a},{b}");
            }
        }
    }
}
