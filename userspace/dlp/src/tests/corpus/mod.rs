//! The labelled corpus: generated positives for every built-in detector, near-miss
//! negatives, and benign developer payloads, scanned with the default scanner. Asserts
//! the targets (recall ≥ 95 % on specific formats and ≥ 80 % on context-dependent ones;
//! false blocks ≤ 1 % of benign payloads and ≤ 5 % of near misses) and prints recall and
//! precision per family: `cargo test -p cork-dlp corpus -- --nocapture`.

pub(super) mod benign;
pub(super) mod generate;
mod negatives;
pub(super) mod positives;

use std::collections::BTreeMap;

use generate::{Rng, expand};

use super::{scan, scanner};
use crate::{Config, Detector, Family, Kind, Scanner, builtin_detectors};

/// Variants generated per detector template.
const VARIANTS: usize = 8;
/// Variants per near-miss template.
const NEAR_MISS_VARIANTS: usize = 3;
const BENIGN: usize = 420;

/// A credential placed in text: where it is and what should find it.
struct Positive {
    detector: String,
    family: Family,
    kind: Kind,
    text: String,
    span: std::ops::Range<usize>,
}

/// Ways a specific token appears in traffic.
const WRAPPERS: &[(&str, &str)] = &[
    ("", ""),
    ("token: ", "\n"),
    ("{\"value\": \"", "\"}"),
    ("curl -H 'X-Auth: ", "' https://api.example.test/v1"),
    ("GET /hook?v=", "&x=1 HTTP/1.1"),
    ("<td>", "</td>"),
    ("ENV ", "\n"),
    ("(", ")"),
];

/// A name to assign a context value to, from the detector's keywords.
fn name_for(d: &Detector, rng: &mut Rng) -> Option<String> {
    let names: Vec<&String> = d
        .keywords
        .iter()
        .filter(|k| {
            k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        })
        .collect();
    (!names.is_empty()).then(|| rng.pick(&names).to_string())
}

/// `name` and `value` in one of the styles configs and code use.
fn assign(name: &str, value: &str, style: usize) -> (String, usize) {
    let upper = name.to_ascii_uppercase();
    let (text, prefix) = match style % 6 {
        0 => (format!("{upper}={value}\n"), format!("{upper}=")),
        1 => (
            format!("export {upper}=\"{value}\"\n"),
            format!("export {upper}=\""),
        ),
        2 => (
            format!("{{\"{name}\": \"{value}\", \"region\": \"eu\"}}"),
            format!("{{\"{name}\": \""),
        ),
        3 => (format!("  {name}: {value}\n"), format!("  {name}: ")),
        4 => (format!("{name} = '{value}'\n"), format!("{name} = '")),
        _ => (
            format!("settings.{name} := \"{value}\""),
            format!("settings.{name} := \""),
        ),
    };
    (text.clone(), prefix.len())
}

fn positives() -> Vec<Positive> {
    let detectors = builtin_detectors();
    let mut rng = Rng::new(1);
    let mut out = Vec::new();
    for d in &detectors {
        let template = positives::TEMPLATES
            .iter()
            .find(|(id, _)| *id == d.name)
            .map(|(_, t)| *t)
            .unwrap_or_else(|| panic!("no corpus template for {}", d.name));
        let mut templates = vec![template.to_string()];
        if d.name == "generic-secret-assignment" {
            templates.extend(positives::GENERIC.iter().map(|t| format!("!{t}")));
        }
        for (i, t) in (0..VARIANTS * templates.len()).map(|i| (i, &templates[i % templates.len()]))
        {
            let (text, span) = if let Some(whole) = t.strip_prefix('!') {
                let v = expand(whole, &mut rng);
                let (pre, post) = WRAPPERS[i % 2];
                let text = format!("{pre}{v}{post}");
                (text, pre.len()..pre.len() + v.len())
            } else if d.kind == Kind::Context {
                let v = expand(t, &mut rng);
                let name =
                    name_for(d, &mut rng).unwrap_or_else(|| panic!("{} has no name", d.name));
                let (text, at) = assign(&name, &v, i);
                (text, at..at + v.len())
            } else {
                let v = expand(t, &mut rng);
                let (pre, post) = WRAPPERS[i % WRAPPERS.len()];
                (format!("{pre}{v}{post}"), pre.len()..pre.len() + v.len())
            };
            out.push(Positive {
                detector: d.name.clone(),
                family: d.family,
                kind: d.kind,
                text,
                span,
            });
        }
    }
    out
}

/// Every text of the corpus, one after another: positives, near misses, benign payloads.
pub(super) fn all_text() -> String {
    let mut parts: Vec<String> = positives().into_iter().map(|p| p.text).collect();
    parts.extend(near_misses());
    parts.extend(benign::payloads(BENIGN, &mut Rng::new(3)));
    parts.join("\n")
}

fn near_misses() -> Vec<String> {
    let mut rng = Rng::new(2);
    negatives::NEAR_MISSES
        .iter()
        .flat_map(|t| {
            (0..NEAR_MISS_VARIANTS)
                .map(|_| expand(t, &mut rng))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[derive(Default)]
struct Tally {
    positives: usize,
    found: usize,
    found_by_own: usize,
    /// Findings of this family's detectors on a positive's credential.
    true_findings: usize,
    /// Findings of this family's detectors anywhere else.
    false_findings: usize,
}

fn family_of(sc: &Scanner, detector: &str) -> Family {
    sc.detector(detector).map_or(Family::Custom, |d| d.family)
}

#[test]
fn corpus_meets_the_precision_and_recall_targets() {
    let sc = scanner(Config::default());
    let mut families: BTreeMap<Family, Tally> = BTreeMap::new();
    let mut by_kind: BTreeMap<Kind, (usize, usize)> = BTreeMap::new();
    let mut missed: BTreeMap<String, usize> = BTreeMap::new();

    for p in positives() {
        let found = scan(&sc, p.text.as_bytes());
        let hit = |f: &crate::Finding| {
            (f.start as usize) < p.span.end && (f.end() as usize) > p.span.start
        };
        let any = found.iter().any(hit);
        let own = found.iter().any(|f| hit(f) && f.detector == p.detector);
        for f in &found {
            let t = families.entry(family_of(&sc, &f.detector)).or_default();
            if hit(f) {
                t.true_findings += 1;
            } else {
                t.false_findings += 1;
            }
        }
        let t = families.entry(p.family).or_default();
        t.positives += 1;
        t.found += usize::from(any);
        t.found_by_own += usize::from(own);
        let k = by_kind.entry(p.kind).or_default();
        k.0 += 1;
        k.1 += usize::from(any);
        if !own {
            *missed.entry(p.detector.clone()).or_default() += 1;
        }
    }

    let blocked = |texts: &[String], what: &str, families: &mut BTreeMap<Family, Tally>| {
        let mut n = 0;
        for text in texts {
            let found = scan(&sc, text.as_bytes());
            if !found.is_empty() {
                n += 1;
                let names: Vec<&str> = found.iter().map(|f| f.detector.as_str()).collect();
                println!("false block ({what}): {names:?} in {:?}", excerpt(text));
            }
            for f in &found {
                families
                    .entry(family_of(&sc, &f.detector))
                    .or_default()
                    .false_findings += 1;
            }
        }
        n
    };
    let near = near_misses();
    let near_blocked = blocked(&near, "near miss", &mut families);
    let benign = benign::payloads(BENIGN, &mut Rng::new(3));
    let benign_blocked = blocked(&benign, "benign", &mut families);

    println!(
        "\n| family | detectors | samples | recall (any detector) | recall (own detector) | precision |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    let counts = detector_counts();
    for (family, t) in &families {
        if t.positives == 0 {
            continue;
        }
        let findings = t.true_findings + t.false_findings;
        println!(
            "| {} | {} | {} | {:.1} % | {:.1} % | {:.1} % |",
            family.as_str(),
            counts.get(family).copied().unwrap_or(0),
            t.positives,
            pct(t.found, t.positives),
            pct(t.found_by_own, t.positives),
            pct(t.true_findings, findings),
        );
    }
    for (kind, (n, found)) in &by_kind {
        println!(
            "recall, {kind:?} formats: {found}/{n} = {:.1} %",
            pct(*found, *n)
        );
    }
    println!(
        "false blocks: near misses {near_blocked}/{} = {:.1} %, benign payloads {benign_blocked}/{} = {:.1} %",
        near.len(),
        pct(near_blocked, near.len()),
        benign.len(),
        pct(benign_blocked, benign.len())
    );
    if !missed.is_empty() {
        println!("missed by their own detector: {missed:?}");
    }

    let recall = |k: Kind| by_kind.get(&k).map_or(0.0, |(n, f)| pct(*f, *n));
    assert!(
        recall(Kind::Specific) >= 95.0,
        "specific recall {:.1} %",
        recall(Kind::Specific)
    );
    assert!(
        recall(Kind::Context) >= 80.0,
        "context recall {:.1} %",
        recall(Kind::Context)
    );
    assert!(
        pct(near_blocked, near.len()) <= 5.0,
        "near-miss false blocks"
    );
    assert!(
        pct(benign_blocked, benign.len()) <= 1.0,
        "benign false blocks"
    );
}

#[test]
fn every_builtin_finds_most_of_its_own_samples() {
    let sc = scanner(Config::default());
    let mut per: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for p in positives() {
        let own = scan(&sc, p.text.as_bytes()).iter().any(|f| {
            f.detector == p.detector
                && (f.start as usize) < p.span.end
                && (f.end() as usize) > p.span.start
        });
        let e = per.entry(p.detector).or_default();
        e.0 += 1;
        e.1 += usize::from(own);
    }
    let weak: Vec<_> = per
        .iter()
        .filter(|(_, (n, found))| found * 4 < n * 3)
        .collect();
    assert!(
        weak.is_empty(),
        "detectors finding < 75 % of their samples: {weak:?}"
    );
}

#[test]
fn at_least_150_builtins_with_unique_ids() {
    let detectors = builtin_detectors();
    assert!(detectors.len() >= 150, "{}", detectors.len());
    let mut ids: Vec<&str> = detectors.iter().map(|d| d.name.as_str()).collect();
    ids.sort_unstable();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "duplicate ids");
}

fn detector_counts() -> BTreeMap<Family, usize> {
    let mut out = BTreeMap::new();
    for d in builtin_detectors() {
        *out.entry(d.family).or_default() += 1;
    }
    out
}

fn pct(a: usize, b: usize) -> f64 {
    if b == 0 {
        100.0
    } else {
        100.0 * a as f64 / b as f64
    }
}

fn excerpt(text: &str) -> String {
    text.chars().take(160).collect()
}
