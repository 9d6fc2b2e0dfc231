//! The JSON one bench writes: [`Report`] (one file per bench, `<dir>/<bench>.json`), its
//! [`Row`]s (one figure each, with samples and an optional ratio to a baseline row) and
//! [`Series`] (the points a figure is drawn from), and the [`Machine`] it ran on.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;

/// The machine a report was measured on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// CPUs this process may run on.
    pub cpus: usize,
    /// `uname -r`.
    pub kernel: String,
    /// The first `model name` of /proc/cpuinfo, if any.
    pub cpu_model: String,
}

impl Machine {
    /// This machine, from the kernel's own files; what cannot be read stays empty (a
    /// report is still worth writing without the CPU model).
    pub fn this() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpu_model = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "model name").then(|| v.trim().to_owned())
            })
            .unwrap_or_default();
        Self {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            cpu_model,
        }
    }
}

/// One figure of a bench.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Stable identifier within the bench (`outside`, `inside`, `p50_added`…): what the
    /// smoke check and the plots look rows up by.
    pub key: String,
    /// What a reader sees in the table.
    pub name: String,
    /// Unit of `value` and `samples` (`1/s`, `us`, `ms`, `ns`, `MiB`, `GB/s`).
    pub unit: String,
    /// The figure (a median when there are several samples).
    pub value: f64,
    /// Every measurement the value summarises (one per round), for the range.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<f64>,
    /// The key of the row this one is compared with, and `value / that value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<Ratio>,
}

/// A row's ratio to its baseline row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    /// The baseline row's key.
    pub to: String,
    /// This row's value over the baseline's.
    pub value: f64,
}

/// What a series is drawn as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeriesKind {
    /// `(value, cumulative fraction)` points, fractions rising from 0 to 1.
    Cdf,
    /// `(x, y)` points in x order.
    Xy,
}

/// The points behind a figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Stable identifier within the bench (`direct`, `cork`…).
    pub key: String,
    /// The legend's text.
    pub name: String,
    pub kind: SeriesKind,
    pub x_unit: String,
    pub y_unit: String,
    pub points: Vec<(f64, f64)>,
}

/// Everything one bench measured in one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The bench's name, also the file's stem: `connect`, `dns`, `kernel`, `scale`,
    /// `daemon`, `proxy`, `dlp`.
    pub bench: String,
    /// A line saying what was measured and how.
    pub title: String,
    /// The command that produced it.
    pub command: String,
    pub machine: Machine,
    /// Seconds since the epoch when it was written.
    pub unix_time: u64,
    pub rows: Vec<Row>,
    #[serde(default)]
    pub series: Vec<Series>,
}

impl Report {
    /// An empty report of `bench` on this machine, run by this process's command line.
    pub fn new(bench: &str, title: impl Into<String>) -> Self {
        let command = std::env::args()
            .map(|a| {
                // Only the binary's name: its directory says nothing about the run.
                Path::new(&a)
                    .file_name()
                    .filter(|_| a.contains('/') && !a.starts_with('-'))
                    .map_or(a.clone(), |n| n.to_string_lossy().into_owned())
            })
            .collect::<Vec<_>>()
            .join(" ");
        Self {
            bench: bench.to_owned(),
            title: title.into(),
            command,
            machine: Machine::this(),
            unix_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            rows: Vec::new(),
            series: Vec::new(),
        }
    }

    /// Adds a row whose value is the median of `samples` (which must not be empty).
    pub fn row(&mut self, key: &str, name: &str, unit: &str, samples: &[f64]) -> &mut Self {
        self.rows.push(Row {
            key: key.to_owned(),
            name: name.to_owned(),
            unit: unit.to_owned(),
            value: median(samples),
            samples: if samples.len() > 1 {
                samples.to_vec()
            } else {
                Vec::new()
            },
            ratio: None,
        });
        self
    }

    /// Gives the last row added its ratio to the row keyed `to` (added before it).
    pub fn ratio_to(&mut self, to: &str) -> &mut Self {
        let base = self.get(to).map(|r| r.value);
        if let (Some(base), Some(last)) = (base, self.rows.last_mut()) {
            last.ratio = Some(Ratio {
                to: to.to_owned(),
                value: last.value / base,
            });
        }
        self
    }

    /// Adds a series.
    pub fn series(&mut self, series: Series) -> &mut Self {
        self.series.push(series);
        self
    }

    /// The row keyed `key`.
    pub fn get(&self, key: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.key == key)
    }

    /// The series keyed `key`.
    pub fn get_series(&self, key: &str) -> Option<&Series> {
        self.series.iter().find(|s| s.key == key)
    }

    /// `<dir>/<bench>.json`.
    pub fn path_in(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.json", self.bench))
    }

    /// Writes `<dir>/<bench>.json` (creating `dir`) and returns its path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, Error> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_owned(),
            source,
        })?;
        let path = self.path_in(dir);
        let text = serde_json::to_string_pretty(self).map_err(|source| Error::Json {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&path, text + "\n").map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }

    /// Reads one report.
    pub fn read(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| Error::Json {
            path: path.to_owned(),
            source,
        })
    }

    /// Every `*.json` report in `dir`, in [`BENCH_ORDER`] (unknown benches last, by name).
    pub fn read_dir(dir: &Path) -> Result<Vec<Self>, Error> {
        let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
            path: dir.to_owned(),
            source,
        })?;
        let mut reports = Vec::new();
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json") {
                reports.push(Self::read(&p)?);
            }
        }
        reports.sort_by_key(|r| {
            let i = BENCH_ORDER.iter().position(|b| *b == r.bench);
            (i.unwrap_or(BENCH_ORDER.len()), r.bench.clone())
        });
        Ok(reports)
    }

    /// Checks that every key in `keys` is a row with a finite value, and every key in
    /// `series` a series with points: what a smoke run proves about a bench.
    pub fn check(&self, keys: &[&str], series: &[&str]) -> Result<(), Error> {
        let mut missing = Vec::new();
        for k in keys {
            match self.get(k) {
                Some(r) if r.value.is_finite() => {}
                Some(r) => missing.push(format!("{k} (value {})", r.value)),
                None => missing.push((*k).to_owned()),
            }
        }
        for k in series {
            match self.get_series(k) {
                Some(s) if !s.points.is_empty() => {}
                Some(_) => missing.push(format!("series {k} (no points)")),
                None => missing.push(format!("series {k}")),
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::Incomplete {
                bench: self.bench.clone(),
                missing,
            })
        }
    }
}

/// The order benches run in and the table lists them.
pub const BENCH_ORDER: &[&str] = &[
    "connect", "kernel", "scale", "daemon", "dns", "proxy", "dlp", "vm",
];

/// The median of `v` (the upper one for an even count; NaN when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The probabilities a latency CDF is sampled at: every percent, then 99.9 %.
pub fn cdf_probabilities() -> Vec<f64> {
    (1..=99)
        .map(|p| f64::from(p) / 100.0)
        .chain([0.999])
        .collect()
}

/// The value at each of `probs` in the sorted sample `sorted` (nearest rank).
pub fn quantiles(sorted: &[u64], probs: &[f64]) -> Vec<u64> {
    if sorted.is_empty() {
        return vec![0; probs.len()];
    }
    probs
        .iter()
        .map(|p| {
            let rank = (sorted.len() as f64 * p).ceil() as usize;
            sorted[rank.clamp(1, sorted.len()) - 1]
        })
        .collect()
}

/// A CDF series from quantile values at [`cdf_probabilities`]. Several runs' quantiles
/// are combined by taking each probability's median across runs (a non-decreasing
/// sequence stays non-decreasing), so one noisy round does not draw the curve.
pub fn cdf_series(key: &str, name: &str, unit: &str, runs: &[Vec<u64>]) -> Series {
    let probs = cdf_probabilities();
    let points = probs
        .iter()
        .enumerate()
        .filter_map(|(i, &p)| {
            let at: Vec<f64> = runs
                .iter()
                .filter_map(|q| q.get(i).map(|&v| v as f64))
                .collect();
            (!at.is_empty()).then(|| (median(&at), p))
        })
        .collect();
    Series {
        key: key.to_owned(),
        name: name.to_owned(),
        kind: SeriesKind::Cdf,
        x_unit: unit.to_owned(),
        y_unit: "fraction".to_owned(),
        points,
    }
}

/// The `key=v1,v2,…` word in a line of client output (how the bench clients print
/// quantiles), parsed.
pub fn parse_list(text: &str, key: &str) -> Option<Vec<u64>> {
    let prefix = format!("{key}=");
    let list = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix(prefix.as_str()))?;
    list.split(',').map(|v| v.parse().ok()).collect()
}

/// `key=v1,v2,…` for [`parse_list`].
pub fn format_list(key: &str, values: &[u64]) -> String {
    let list: Vec<String> = values.iter().map(u64::to_string).collect();
    format!("{key}={}", list.join(","))
}
