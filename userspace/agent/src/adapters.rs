//! The bottle's kernel maps, seen through the interfaces the proxies define: the DNS
//! proxy learns addresses through [`cork_dns::Learner`], the inspecting proxy asks where a
//! connection was going through [`cork_inspect::Redirects`]. Neither proxy crate depends
//! on the bpf crate; this is where they meet.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::BorrowedFd;
use std::sync::Arc;

use cork_bpf::learned::MapLearner;
use cork_bpf::redirects::RedirectMap;
use cork_policy::Slot;

/// The bottle's prefix tries, written by the DNS proxy. The learner judges the name again
/// by the policy generation in force (an update may have come between the query and its
/// answer), so the proxy's slots are not used.
pub struct KernelLearner(pub Arc<MapLearner>);

impl cork_dns::Learner for KernelLearner {
    fn learn(
        &self,
        addr: IpAddr,
        name: &str,
        _slots: &[Slot],
        ttl: u32,
    ) -> Result<(), cork_dns::LearnFailed> {
        self.0.learn(addr, name, ttl).map_err(Into::into)
    }
}

/// The bottle's `cork_redirects` map, read by the inspecting proxy.
pub struct KernelRedirects(pub RedirectMap);

impl cork_inspect::Redirects for KernelRedirects {
    fn take(&self, peer: SocketAddr, _conn: BorrowedFd<'_>) -> Option<cork_inspect::Original> {
        self.0.take(peer).map(|o| cork_inspect::Original {
            dst: o.dst,
            rule_id: o.rule_id,
            pid: Some(o.pid),
            sock_cookie: o.sock_cookie,
        })
    }
}
