//! What every OCSF event cork writes has: class, category, activity and type ids and
//! captions, `time`, severity, `metadata` (product, schema version, profiles, the line's
//! layer, event word, time and chain) and `unmapped`; plus the pieces several classes share
//! (verdict → action and disposition, endpoints, the connection).

use std::net::IpAddr;

use serde_json::{Map, Value, json};

use super::fields::{Fields, Head};

/// The OCSF version every event claims and the test suite validates against.
pub const SCHEMA_VERSION: &str = "1.8.0";

/// The profiles whose attributes cork's events use: `security_control` (action,
/// disposition, firewall_rule, is_alert) and `host` (actor).
const PROFILES: [&str; 2] = ["host", "security_control"];

/// An OCSF event class and its category.
pub(crate) struct Class {
    pub uid: u32,
    pub name: &'static str,
    pub category_uid: u32,
    pub category_name: &'static str,
}

pub(crate) const NETWORK_ACTIVITY: Class = Class {
    uid: 4001,
    name: "Network Activity",
    category_uid: 4,
    category_name: "Network Activity",
};
pub(crate) const HTTP_ACTIVITY: Class = Class {
    uid: 4002,
    name: "HTTP Activity",
    category_uid: 4,
    category_name: "Network Activity",
};
pub(crate) const DNS_ACTIVITY: Class = Class {
    uid: 4003,
    name: "DNS Activity",
    category_uid: 4,
    category_name: "Network Activity",
};
pub(crate) const APPLICATION_LIFECYCLE: Class = Class {
    uid: 6002,
    name: "Application Lifecycle",
    category_uid: 6,
    category_name: "Application Activity",
};
pub(crate) const BASE_EVENT: Class = Class {
    uid: 0,
    name: "Base Event",
    category_uid: 0,
    category_name: "Uncategorized",
};

/// `activity_id` 99 in every class.
pub(crate) const OTHER: u32 = 99;

/// OCSF `severity_id` values cork uses.
pub(crate) mod severity {
    pub const INFORMATIONAL: u32 = 1;
    pub const LOW: u32 = 2;
    pub const MEDIUM: u32 = 3;
    pub const HIGH: u32 = 4;
    pub const CRITICAL: u32 = 5;
}

fn severity_name(id: u32) -> &'static str {
    match id {
        1 => "Informational",
        2 => "Low",
        3 => "Medium",
        4 => "High",
        5 => "Critical",
        6 => "Fatal",
        99 => "Other",
        _ => "Unknown",
    }
}

/// One OCSF event being built: the class, what happened, and the class's own attributes.
pub(crate) struct Envelope {
    pub class: &'static Class,
    pub activity_id: u32,
    /// The activity's caption; for [`OTHER`], cork's own word for it.
    pub activity_name: String,
    pub severity_id: u32,
    pub body: Map<String, Value>,
}

impl Envelope {
    pub(crate) fn new(class: &'static Class, activity_id: u32, activity_name: &str) -> Self {
        Envelope {
            class,
            activity_id,
            activity_name: activity_name.to_owned(),
            severity_id: severity::INFORMATIONAL,
            body: Map::new(),
        }
    }

    pub(crate) fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.body.insert(key.to_owned(), value.into());
    }

    /// The finished event: the envelope, `metadata`, and what is left of `rest` (with the
    /// head's bottle and chain) as `unmapped`.
    pub(crate) fn finish(self, head: Head, rest: Fields) -> Value {
        let mut unmapped = rest.into_unmapped();
        if let Some(bottle) = &head.bottle {
            unmapped.insert("bottle".into(), bottle.clone().into());
        }
        let mut metadata = json!({
            "version": SCHEMA_VERSION,
            "product": product(),
            "profiles": PROFILES,
            "log_name": "cork audit",
            "original_time": head.ts,
        });
        if let Some(layer) = &head.layer {
            metadata["log_source"] = layer.clone().into();
        }
        if let Some(event) = &head.event {
            metadata["event_code"] = event.clone().into();
        }
        if let Some(chain) = head.chain {
            metadata["uid"] = chain.clone().into();
            unmapped.insert("chain".into(), chain.into());
        }
        let class = self.class;
        let mut out = json!({
            "category_uid": class.category_uid,
            "category_name": class.category_name,
            "class_uid": class.uid,
            "class_name": class.name,
            "activity_id": self.activity_id,
            "activity_name": self.activity_name,
            "type_uid": u64::from(class.uid) * 100 + u64::from(self.activity_id),
            "type_name": format!("{}: {}", class.name, self.activity_name),
            "time": head.time_ms,
            "severity_id": self.severity_id,
            "severity": severity_name(self.severity_id),
            "metadata": metadata,
        });
        if let Value::Object(map) = &mut out {
            map.extend(self.body);
            if !unmapped.is_empty() {
                map.insert("unmapped".into(), Value::Object(unmapped));
            }
        }
        out
    }
}

/// cork as an OCSF product (`metadata.product`, and the app of lifecycle events).
pub(crate) fn product() -> Value {
    json!({
        "name": "cork",
        "vendor_name": "cork",
        "version": env!("CARGO_PKG_VERSION"),
    })
}

/// cork's `allow`/`deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allow,
    Deny,
}

impl Verdict {
    /// Takes `verdict` when it is `allow` or `deny` (anything else stays for `unmapped`).
    pub(crate) fn take(f: &mut Fields) -> Option<Verdict> {
        match f.word("verdict", &["allow", "deny"])? {
            "allow" => Some(Verdict::Allow),
            _ => Some(Verdict::Deny),
        }
    }

    pub(crate) fn word(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        }
    }
}

/// `action_id`/`action` and `disposition_id`/`disposition` (profile `security_control`)
/// and `status_id` for a verdict: allow is Allowed/Allowed/Success, deny is
/// Denied/Blocked/Failure.
pub(crate) fn decide(env: &mut Envelope, verdict: Option<Verdict>) {
    let (action, disposition, status) = match verdict {
        Some(Verdict::Allow) => ((1, "Allowed"), (1, "Allowed"), (1, "Success")),
        Some(Verdict::Deny) => ((2, "Denied"), (2, "Blocked"), (2, "Failure")),
        None => ((0, "Unknown"), (0, "Unknown"), (0, "Unknown")),
    };
    env.set("action_id", action.0);
    env.set("action", action.1);
    env.set("disposition_id", disposition.0);
    env.set("disposition", disposition.1);
    env.set("status_id", status.0);
    env.set("status", status.1);
}

/// An OCSF `network_endpoint`.
#[derive(Default)]
pub(crate) struct Endpoint {
    pub ip: Option<IpAddr>,
    pub port: Option<u16>,
    pub hostname: Option<String>,
    pub name: Option<String>,
}

impl Endpoint {
    /// The endpoint object; `None` when it would name nothing (OCSF asks for at least
    /// one of ip, name, hostname...).
    pub(crate) fn to_value(&self) -> Option<Value> {
        let mut m = Map::new();
        if let Some(ip) = self.ip {
            m.insert("ip".into(), ip.to_string().into());
        }
        if let Some(hostname) = &self.hostname {
            m.insert("hostname".into(), hostname.clone().into());
        }
        if let Some(name) = &self.name {
            m.insert("name".into(), name.clone().into());
        }
        if m.is_empty() {
            return None;
        }
        if let Some(port) = self.port {
            m.insert("port".into(), port.into());
        }
        Some(Value::Object(m))
    }
}

/// Sets `key` to `endpoint` when it names something.
pub(crate) fn set_endpoint(env: &mut Envelope, key: &str, endpoint: &Endpoint) {
    if let Some(v) = endpoint.to_value() {
        env.set(key, v);
    }
}

/// `connection_info` of a connection the bottle made (always outbound: cork judges egress).
pub(crate) fn connection(proto: Option<&str>, family: Option<u8>, cookie: Option<u64>) -> Value {
    let mut c = json!({"direction_id": 2, "direction": "Outbound"});
    if let Some(proto) = proto {
        c["protocol_name"] = proto.into();
        let num = match proto {
            "tcp" => Some(6),
            "udp" => Some(17),
            "icmp" => Some(1),
            "icmpv6" => Some(58),
            other => other.parse::<u8>().ok(),
        };
        if let Some(num) = num {
            c["protocol_num"] = num.into();
        }
    }
    if let Some(family) = family {
        c["protocol_ver_id"] = family.into();
        c["protocol_ver"] = if family == 6 {
            "Internet Protocol version 6 (IPv6)"
        } else {
            "Internet Protocol version 4 (IPv4)"
        }
        .into();
    }
    if let Some(cookie) = cookie {
        // The socket cookie: the kernel's id of the socket, the same in the kernel's and
        // the proxy's events of one connection.
        c["uid"] = cookie.to_string().into();
    }
    c
}

/// 4 or 6.
pub(crate) fn family(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 4 } else { 6 }
}

/// `actor.process` for the process that acted, when the event names it.
pub(crate) fn set_actor(env: &mut Envelope, pid: Option<u64>, comm: Option<String>) {
    let Some(pid) = pid else {
        if let Some(comm) = comm {
            // A name without a pid is no OCSF process (it needs pid, uid or cpid).
            env.set("actor", json!({"app_name": comm}));
        }
        return;
    };
    let mut process = json!({"pid": pid});
    if let Some(comm) = comm {
        process["name"] = comm.into();
    }
    env.set("actor", json!({"process": process}));
}

/// `firewall_rule` for the manifest rule that decided (`egress.allow[0]`).
pub(crate) fn set_rule(env: &mut Envelope, rule: Option<String>) {
    if let Some(rule) = rule {
        env.set(
            "firewall_rule",
            json!({"name": rule, "type": "cork manifest"}),
        );
    }
}
