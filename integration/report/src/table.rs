//! The summary table `cargo xtask bench` prints at the end: one line per row of every
//! report, with its range over the rounds and its ratio to its baseline.

use std::fmt::Write as _;

use crate::model::{Machine, Report};

/// A number the way the README writes them: three significant digits at most below
/// 100, whole numbers above, thousands grouped with spaces.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    let text = if a >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    };
    let (sign, digits) = text.strip_prefix('-').map_or(("", &text[..]), |d| ("-", d));
    let (int, frac) = digits.split_once('.').map_or((digits, ""), |(i, f)| (i, f));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(' ');
        }
        grouped.push(c);
    }
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

/// One line describing the machine(s) the reports ran on.
pub fn machine_line(reports: &[Report]) -> String {
    let mut machines: Vec<&Machine> = Vec::new();
    for r in reports {
        if !machines.contains(&&r.machine) {
            machines.push(&r.machine);
        }
    }
    let each: Vec<String> = machines
        .iter()
        .map(|m| {
            let model = if m.cpu_model.is_empty() {
                String::new()
            } else {
                format!(" ({})", m.cpu_model)
            };
            format!("{} CPUs{model}, kernel {}", m.cpus, m.kernel)
        })
        .collect();
    format!("machine: {}", each.join("; "))
}

/// What a ratio is against, short: the first part of the baseline's dotted key that
/// the row's key lacks (`max_rps.cork` to `max_rps.direct`: `direct`;
/// `x.16k` to `baseline.x.16k`: `baseline`).
fn ratio_label<'a>(row: &str, to: &'a str) -> &'a str {
    let own: Vec<&str> = row.split('.').collect();
    to.split('.').find(|p| !own.contains(p)).unwrap_or(to)
}

/// The table: a header, then for each report its rows.
pub fn render(reports: &[Report]) -> String {
    let mut lines: Vec<[String; 5]> = vec![[
        "bench".into(),
        "figure".into(),
        "value".into(),
        "range".into(),
        "ratio".into(),
    ]];
    for r in reports {
        for row in &r.rows {
            let range = if row.samples.len() > 1 {
                let lo = row.samples.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = row
                    .samples
                    .iter()
                    .copied()
                    .fold(f64::NEG_INFINITY, f64::max);
                format!("{}–{}", number(lo), number(hi))
            } else {
                String::new()
            };
            let ratio = row.ratio.as_ref().map_or(String::new(), |q| {
                format!("{:.2} vs {}", q.value, ratio_label(&row.key, &q.to))
            });
            lines.push([
                r.bench.clone(),
                row.name.clone(),
                format!("{} {}", number(row.value), row.unit),
                range,
                ratio,
            ]);
        }
    }
    let mut width = [0usize; 5];
    for l in &lines {
        for (w, cell) in width.iter_mut().zip(l) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = machine_line(reports);
    out.push('\n');
    for l in &lines {
        let mut line = String::new();
        for (i, (cell, w)) in l.iter().zip(width).enumerate() {
            let pad = w - cell.chars().count();
            // Values right-aligned, the rest left.
            if i == 2 {
                let _ = write!(line, "{}{cell}  ", " ".repeat(pad));
            } else {
                let _ = write!(line, "{cell}{}  ", " ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
