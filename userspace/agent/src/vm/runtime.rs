//! [`BottleRuntime::enforce_vm`]: a VM bottle enforced on its tap with the same policy
//! maps, DNS proxy, inspecting proxy, DLP, credentials and audit as a cgroup bottle. Only
//! what differs lives here: the fence is a tap (tc + nftables) instead of a cgroup, the
//! proxies listen on the gateway addresses instead of loopback, and the guest's CA and
//! placeholders are handed over as files instead of an environment.

use std::sync::{Arc, Mutex};

use cork_audit::{AuditSink, EnforcedEvent};
use cork_bpf::LoadConstants;
use cork_dns::BoundDnsProxy;
use cork_policy::Policy;

use crate::mounts;
use crate::runtime::{BottleRuntime, Fence, Parts, RuntimeError};
use crate::vm::{GuestAddressing, Pools, TapFence, TapLink};
use crate::web::{self, WebSetup};

impl BottleRuntime {
    /// Enforces `policy` on a new VM bottle in the calling thread's network namespace:
    /// when this returns, the tap `cork<id>` exists with its gateway addresses, the tc
    /// program and nftables chains are installed and read back, the proxies are bound on
    /// the gateway addresses, and no guest exists yet. [`BottleRuntime::start`] then
    /// starts the proxies and the guest's DHCPv4/RA service; QEMU gets
    /// [`BottleRuntime::tap`]. Writes the `enforced` lifecycle event.
    pub fn enforce_vm(
        policy: Arc<Policy>,
        sink: Arc<Mutex<AuditSink>>,
        pools: &Pools,
    ) -> Result<Self, RuntimeError> {
        let (upstreams, lease, key) = Self::identity(&policy)?;
        let link = TapLink::create(pools, lease.id())?;
        let (gw4, gw6) = (link.addressing.gateway4, link.addressing.gateway6);
        // nftables DNATs the guest's DNS (any resolver) and inspected flows here.
        let dns = BoundDnsProxy::bind_on(gw4, gw6, 0).map_err(RuntimeError::DnsBind)?;
        let web = WebSetup::prepare(&policy, &key, web::Listen::On(gw4, gw6))?;
        let guest = web.as_ref().map(WebSetup::guest_files).unwrap_or_default();
        let bpffs = mounts::ensure_bpffs()?;
        let ifname = link.tap.name().to_owned();
        let fence = TapFence::create(
            &key,
            link,
            LoadConstants {
                bottle_id: lease.id().get(),
                dns_port: dns.port(),
                proxy_port: web.as_ref().map_or(0, WebSetup::port),
                guest: None,
            },
            &bpffs,
            policy.plan(),
            &policy.host_ports,
        )?;
        let addressing = fence.addressing();
        let this = Self::assemble(
            Parts {
                policy,
                key,
                sink,
                fence: Fence::Tap(fence),
                dns,
                web,
                upstreams,
                masks: Vec::new(),
                guest: Some(guest),
            },
            lease,
        );
        let detail = match addressing {
            Some(a) => format!(
                "bottle {}: tap {ifname} enforced (tc ingress + nftables), pins in {}; guest \
                 {} / {}::/64 via {} / {}",
                this.key(),
                this.key().pin_dir(&bpffs).display(),
                a.guest4,
                a.prefix6.to_string().trim_end_matches("::"),
                a.gateway4,
                a.gateway6
            ),
            None => format!("bottle {}: tap {ifname} enforced", this.key()),
        };
        this.write_event(&EnforcedEvent {
            head: cork_audit::EventHead::now(&this.policy().name, "cork", "enforced"),
            detail,
            masked: Vec::new(),
        })?;
        Ok(this)
    }

    /// A VM bottle's guest addressing (MAC, addresses, gateway); `None` for a cgroup
    /// bottle or once stopped.
    pub fn guest_addressing(&self) -> Option<GuestAddressing> {
        match &self.fence {
            Fence::Tap(t) => t.addressing(),
            Fence::Cgroup(_) => None,
        }
    }
}
