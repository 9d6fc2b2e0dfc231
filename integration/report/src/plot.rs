//! The figures: SVG files drawn with plotters' SVG backend from the reports' series and
//! rows. Text is written as SVG `<text>` elements (plotters without its font features
//! estimates their size itself), so drawing needs no font files and the output depends
//! on the data alone.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::Error;
use crate::model::{Report, Series};

const SIZE: (u32, u32) = (760, 440);

/// One bar of a bar chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub label: String,
    pub value: f64,
}

/// The colour a series or bar is drawn in, by its key: the same peer is the same colour
/// in every figure.
fn colour(key: &str, i: usize) -> RGBColor {
    let peer = key.rsplit('.').next().unwrap_or(key);
    match peer {
        "direct" | "bare" | "outside" => RGBColor(110, 110, 110),
        "cork" | "inside" | "connects" => RGBColor(31, 99, 180),
        "squid" => RGBColor(220, 120, 20),
        "mitmproxy" => RGBColor(40, 150, 70),
        _ => [
            RGBColor(150, 60, 160),
            RGBColor(190, 40, 50),
            RGBColor(20, 150, 160),
            RGBColor(120, 100, 40),
        ][i % 4],
    }
}

fn plot_err(figure: &str) -> impl Fn(DrawingAreaErrorKind<std::io::Error>) -> Error + '_ {
    move |source| Error::Plot {
        figure: figure.to_owned(),
        source,
    }
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// CDFs of `series` (x: the value on a log axis, y: the cumulative fraction).
pub fn cdf_svg(title: &str, x_desc: &str, series: &[&Series]) -> Result<String, Error> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        draw_cdf(&root, title, x_desc, series).map_err(plot_err(title))?;
        root.present().map_err(plot_err(title))?;
    }
    Ok(svg)
}

fn draw_cdf(
    root: &Area<'_>,
    title: &str,
    x_desc: &str,
    series: &[&Series],
) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    root.fill(&WHITE)?;
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (lo, hi) = bounds(xs.filter(|x| *x > 0.0));
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(52)
        .build_cartesian_2d((lo / 1.2..hi * 1.2).log_scale(), 0f64..1f64)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("fraction of requests at or below")
        .x_label_formatter(&|x| crate::table::number(*x))
        .y_label_formatter(&|y| format!("{y:.1}"))
        .draw()?;
    for (i, s) in series.iter().enumerate() {
        let c = colour(&s.key, i);
        let pts = s.points.iter().map(|&(x, y)| (x.max(lo), y));
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(2)))?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// `series` as lines over a log x axis (`x_desc`) and a linear y axis from 0 (`y_desc`).
pub fn xy_svg(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[&Series],
) -> Result<String, Error> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        draw_xy(&root, title, x_desc, y_desc, series).map_err(plot_err(title))?;
        root.present().map_err(plot_err(title))?;
    }
    Ok(svg)
}

fn draw_xy(
    root: &Area<'_>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[&Series],
) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    root.fill(&WHITE)?;
    let (xlo, xhi) = bounds(series.iter().flat_map(|s| s.points.iter().map(|p| p.0)));
    let (_, yhi) = bounds(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(64)
        .build_cartesian_2d((xlo / 1.5..xhi * 1.5).log_scale(), 0f64..yhi * 1.15)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&|x| crate::table::number(*x))
        .y_label_formatter(&|y| crate::table::number(*y))
        .draw()?;
    for (i, s) in series.iter().enumerate() {
        let c = colour(&s.key, i);
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(2)))?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 4, c.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// Bar charts side by side, one per `(title, y_desc, bars)` panel.
pub fn bars_svg(title: &str, panels: &[(&str, &str, Vec<Bar>)]) -> Result<String, Error> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err(title))?;
        let root = root
            .titled(title, ("sans-serif", 18))
            .map_err(plot_err(title))?;
        let areas = root.split_evenly((1, panels.len().max(1)));
        for (area, (sub, y_desc, bars)) in areas.iter().zip(panels) {
            draw_bars(area, sub, y_desc, bars).map_err(plot_err(title))?;
        }
        root.present().map_err(plot_err(title))?;
    }
    Ok(svg)
}

fn draw_bars(
    area: &Area<'_>,
    title: &str,
    y_desc: &str,
    bars: &[Bar],
) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    let n = i32::try_from(bars.len()).unwrap_or(i32::MAX);
    let (_, yhi) = bounds(bars.iter().map(|b| b.value));
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(64)
        // A segmented 0..k has k + 1 segments.
        .build_cartesian_2d((0..(n - 1).max(0)).into_segmented(), 0f64..yhi * 1.15)?;
    let label = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(i) => usize::try_from(*i)
            .ok()
            .and_then(|i| bars.get(i))
            .map_or(String::new(), |b| b.label.clone()),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(y_desc)
        .x_label_formatter(&label)
        .y_label_formatter(&|y| crate::table::number(*y))
        .draw()?;
    chart.draw_series(bars.iter().zip(0..).map(|(b, i)| {
        let c = colour(&b.label, usize::try_from(i).unwrap_or(0));
        let mut r = Rectangle::new(
            [
                (SegmentValue::Exact(i), 0.0),
                (SegmentValue::Exact(i + 1), b.value),
            ],
            c.filled(),
        );
        r.set_margin(0, 0, 12, 12);
        r
    }))?;
    chart.draw_series(bars.iter().zip(0..).map(|(b, i)| {
        Text::new(
            crate::table::number(b.value),
            (SegmentValue::CenterOf(i), b.value),
            ("sans-serif", 12)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Bottom)),
        )
    }))?;
    Ok(())
}

/// The smallest and largest finite value of `v`, never equal (a flat or empty input
/// gets a range around it, so an axis can still be drawn).
fn bounds(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = v
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(x), hi.max(x))
        });
    if !lo.is_finite() {
        (1.0, 10.0)
    } else if lo >= hi {
        (lo * 0.5, hi * 2.0 + 1.0)
    } else {
        (lo, hi)
    }
}

/// The figures the reports hold data for, as `(file name, SVG)`.
pub fn figures(reports: &[Report]) -> Result<Vec<(&'static str, String)>, Error> {
    let find = |b: &str| reports.iter().find(|r| r.bench == b);
    let mut out = Vec::new();
    if let Some(dns) = find("dns") {
        let s: Vec<&Series> = ["direct", "cork"]
            .iter()
            .filter_map(|k| dns.get_series(k))
            .collect();
        if !s.is_empty() {
            let svg = cdf_svg(
                "DNS A query latency: direct vs through cork's DNS proxy",
                "latency (µs, log scale)",
                &s,
            )?;
            out.push(("dns-latency-cdf.svg", svg));
        }
    }
    if let Some(proxy) = find("proxy") {
        let s: Vec<&Series> = proxy
            .series
            .iter()
            .filter(|s| s.key.starts_with("latency."))
            .collect();
        if !s.is_empty() {
            let svg = cdf_svg(
                "HTTPS keep-alive request latency per peer (open loop)",
                "latency (µs, log scale)",
                &s,
            )?;
            out.push(("https-latency-cdf.svg", svg));
        }
        let bars = |prefix: &str| -> Vec<Bar> {
            proxy
                .rows
                .iter()
                .filter_map(|r| {
                    Some(Bar {
                        label: r.key.strip_prefix(prefix)?.to_owned(),
                        value: r.value,
                    })
                })
                .collect()
        };
        let (keep, fresh) = (bars("max_rps."), bars("tls_cps."));
        let mut panels = Vec::new();
        if !keep.is_empty() {
            panels.push(("keep-alive requests", "requests/s", keep));
        }
        if !fresh.is_empty() {
            panels.push(("new TLS connections", "connections/s", fresh));
        }
        if !panels.is_empty() {
            let svg = bars_svg("HTTPS per peer (higher is better)", &panels)?;
            out.push(("https-rate-per-peer.svg", svg));
        }
    }
    if let Some(scale) = find("scale")
        && let Some(s) = scale.get_series("connects")
    {
        let mut series = vec![s.clone()];
        // The bare rate, level across the axis, when the connect bench ran too.
        if let Some(bare) = find("connect").and_then(|c| c.get("outside")) {
            let xs: Vec<f64> = s.points.iter().map(|p| p.0).collect();
            let (lo, hi) = bounds(xs.into_iter());
            series.push(Series {
                key: "bare".into(),
                name: "outside a bottle (connect bench)".into(),
                kind: crate::model::SeriesKind::Xy,
                x_unit: s.x_unit.clone(),
                y_unit: s.y_unit.clone(),
                points: vec![(lo, bare.value), (hi, bare.value)],
            });
        }
        let refs: Vec<&Series> = series.iter().collect();
        let svg = xy_svg(
            "connect()+close per second in a bottle vs policy size",
            "CIDR rules per family (+ 10 000 domain rules), log scale",
            "connects/s",
            &refs,
        )?;
        out.push(("connects-vs-rules.svg", svg));
    }
    Ok(out)
}

/// Writes [`figures`] into `dir` and returns their paths.
pub fn write_figures(reports: &[Report], dir: &Path) -> Result<Vec<PathBuf>, Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_owned(),
        source,
    })?;
    figures(reports)?
        .into_iter()
        .map(|(name, svg)| {
            let path = dir.join(name);
            std::fs::write(&path, svg).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            Ok(path)
        })
        .collect()
}
