//! cork's benchmark results as data. Every bench (`cork-bench`, `cork-proxy-bench`,
//! the DLP throughput report) writes one [`Report`] as `<dir>/<bench>.json`: its rows
//! (named figures with units, per-round samples and ratios to a baseline row), the
//! series its figures are drawn from, and the machine it ran on. `cargo xtask bench`
//! reads them back to print one [`table::render`] of every row and to draw
//! [`plot::write_figures`]; `cargo xtask bench-smoke` checks each has every row
//! ([`Report::check`]). Pure: no root, no network, no fonts.

pub mod model;
pub mod plot;
pub mod table;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use model::{
    BENCH_ORDER, Machine, Ratio, Report, Row, Series, SeriesKind, cdf_probabilities, cdf_series,
    format_list, median, parse_list, quantiles,
};

/// What can go wrong reading, writing or drawing reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: bad report JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("bench {bench}: report lacks {}", missing.join(", "))]
    Incomplete { bench: String, missing: Vec<String> },
    #[error("drawing {figure:?}: {source}")]
    Plot {
        figure: String,
        #[source]
        source: plotters::drawing::DrawingAreaErrorKind<std::io::Error>,
    },
}
