//! The bottle-side DNS and connect client (`dns_client.py`, one output line per operation;
//! its header lists the operations) and the command line that runs it.

/// The client's source, run as `python3 -c SCRIPT OPS...`.
pub const SCRIPT: &str = include_str!("dns_client.py");

/// `python3 -c SCRIPT OPS...`.
pub fn argv(ops: &[&str]) -> Vec<String> {
    let mut v = vec![
        crate::probe::python3().to_string(),
        "-c".into(),
        SCRIPT.into(),
    ];
    v.extend(ops.iter().map(|s| s.to_string()));
    v
}
