//! Probes of what cork puts in the command's environment: the CA bundle variables
//! (each names a readable PEM bundle holding the bottle's CA, found by its subject) and the
//! credential placeholders (the placeholder is there, the variable holding the real value
//! is not) — or, in a VM guest, in the fw_cfg files `cork vm` hands over.
//!
//! The limit of the credential probe, said plainly: the bottle never learns the real value,
//! so the probe cannot search the environment for it. It checks what cork promises — the
//! placeholder variable holds exactly the placeholder, and the variable cork reads the real
//! value from (`value_env`) is absent.

use std::fs;
use std::path::Path;

use x509_parser::pem::Pem;

use super::report::{Outcome, Trace};

/// Subjects (common names) of the certificates in PEM `text`, and how many blocks did not
/// parse as certificates.
pub fn bundle_subjects(text: &[u8]) -> (Vec<String>, usize) {
    let mut names = Vec::new();
    let mut bad = 0;
    for pem in Pem::iter_from_buffer(text) {
        let Ok(pem) = pem else {
            bad += 1;
            break;
        };
        if pem.label != "CERTIFICATE" {
            continue;
        }
        match pem.parse_x509() {
            Ok(cert) => {
                let cns: Vec<String> = cert
                    .subject()
                    .iter_common_name()
                    .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
                    .collect();
                names.push(cns.join(","));
            }
            Err(_) => bad += 1,
        }
    }
    (names, bad)
}

pub fn ca_bundle_probe(var: &str, subject: &str, trace: &mut Trace) -> Outcome {
    let Some(path) = std::env::var_os(var) else {
        trace.step(format!("${var} is not set"));
        return Outcome::fail(
            "unset",
            format!("${var} is not set: the client that reads it will not trust the bottle's CA"),
        );
    };
    let shown = path.to_string_lossy().into_owned();
    trace.step(format!("${var} = {shown}"));
    let text = match fs::read(&path) {
        Ok(t) => t,
        Err(e) => {
            trace.step(format!("read {shown} = {e}"));
            return Outcome::fail(
                format!("{shown} unreadable"),
                format!("${var} names {shown}, which the bottle cannot read: {e}"),
            );
        }
    };
    let (subjects, bad) = bundle_subjects(&text);
    trace.step(format!(
        "{shown}: {} certificate(s), {bad} unparsable block(s)",
        subjects.len()
    ));
    trace.detail(|| format!("subjects in {shown}: {subjects:?}"));
    if subjects.iter().any(|s| s == subject) {
        Outcome::pass(format!("{subject:?} in {shown}"))
    } else {
        Outcome::fail(
            format!("{subject:?} not in {shown}"),
            format!(
                "the bundle ${var} names holds {} certificates but not the bottle's CA \
                 {subject:?}: TLS through cork's inspecting proxy will fail verification",
                subjects.len()
            ),
        )
    }
}

/// A PEM file (not a variable naming one) holds the bottle's CA: a guest's fw_cfg
/// `opt/cork/ca.pem`.
pub fn ca_file_probe(path: &Path, subject: &str, trace: &mut Trace) -> Outcome {
    let shown = path.display();
    let text = match fs::read(path) {
        Ok(t) => t,
        Err(e) => {
            trace.step(format!("read {shown} = {e}"));
            return Outcome::fail(
                format!("{shown} unreadable"),
                format!(
                    "{shown} cannot be read ({e}): cork vm did not hand over the bottle's CA,                      or the guest lacks the qemu_fw_cfg module"
                ),
            );
        }
    };
    let (subjects, bad) = bundle_subjects(&text);
    trace.step(format!(
        "{shown}: {} certificate(s), {bad} unparsable block(s)",
        subjects.len()
    ));
    if subjects.iter().any(|s| s == subject) {
        Outcome::pass(format!("{subject:?} in {shown}"))
    } else {
        Outcome::fail(
            format!("{subject:?} not in {shown}"),
            format!("{shown} holds {subjects:?}, not the bottle's CA {subject:?}"),
        )
    }
}

/// A guest's fw_cfg env file (`NAME=VALUE` lines) sets `env` to the placeholder and
/// carries no `value_env`; the probe's own environment has no `value_env` either.
pub fn fw_cfg_env_probe(
    path: &Path,
    env: &str,
    placeholder: &str,
    value_env: &str,
    trace: &mut Trace,
) -> Outcome {
    let shown = path.display();
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            trace.step(format!("read {shown} = {e}"));
            return Outcome::fail(
                format!("{shown} unreadable"),
                format!("{shown} cannot be read ({e}): cork vm did not hand over the placeholders"),
            );
        }
    };
    let value = |name: &str| {
        text.lines().find_map(|l| {
            l.split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v)
        })
    };
    if value(value_env).is_some() || std::env::var_os(value_env).is_some() {
        trace.step(format!("{value_env} is set (not shown)"));
        return Outcome::fail(
            format!("{value_env} set"),
            format!(
                "{value_env}, where cork reads the real value of {env}'s credential, reached                  the guest: the real credential is there"
            ),
        );
    }
    match value(env) {
        Some(v) if v == placeholder => Outcome::pass("placeholder present"),
        Some(v) => {
            // Never print the value: it may be the real credential.
            trace.step(format!(
                "{env} is set in {shown}, {} bytes, not the placeholder",
                v.len()
            ));
            Outcome::fail(
                "another value",
                format!("{shown} sets {env} to something other than the manifest's placeholder"),
            )
        }
        None => Outcome::fail(
            "unset",
            format!("{shown} does not set {env}: the guest gets no placeholder"),
        ),
    }
}

pub fn placeholder_probe(env: &str, placeholder: &str, trace: &mut Trace) -> Outcome {
    match std::env::var(env) {
        Ok(v) if v == placeholder => {
            trace.step(format!(
                "${env} = the manifest's placeholder ({} bytes)",
                v.len()
            ));
            Outcome::pass("placeholder present")
        }
        Ok(v) => {
            // Never print the value: it may be the real credential.
            trace.step(format!(
                "${env} is set, {} bytes, not the placeholder",
                v.len()
            ));
            Outcome::fail(
                "another value",
                format!(
                    "${env} holds something other than the manifest's placeholder (not shown: \
                     it may be a real credential)"
                ),
            )
        }
        Err(std::env::VarError::NotPresent) => {
            trace.step(format!("${env} is not set"));
            Outcome::fail(
                "unset",
                format!("${env} is not set: cork did not give the bottle the placeholder"),
            )
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            trace.step(format!("${env} is not UTF-8"));
            Outcome::fail(
                "another value",
                format!("${env} holds bytes that are not the placeholder"),
            )
        }
    }
}

pub fn real_absent_probe(value_env: &str, env: &str, trace: &mut Trace) -> Outcome {
    match std::env::var_os(value_env) {
        None => {
            trace.step(format!("${value_env} is not set"));
            Outcome::pass(format!("${value_env} absent"))
        }
        Some(v) => {
            trace.step(format!(
                "${value_env} is set ({} bytes, not shown)",
                v.len()
            ));
            Outcome::fail(
                "set",
                format!(
                    "${value_env}, where cork reads the real value of ${env}'s credential, \
                     reached the bottle: the real credential is in its environment"
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_of_a_bundle() {
        let ca = cork_inspect::ca::BottleCa::new("probe-test").expect("a CA");
        let text = format!("garbage line\n{}", ca.cert_pem());
        let (names, bad) = bundle_subjects(text.as_bytes());
        assert_eq!(names, [cork_inspect::ca::subject("probe-test")]);
        assert_eq!(bad, 0);
        assert_eq!(bundle_subjects(b"").0.len(), 0);
    }
}
