//! Unit tests of the report model, the table and the figures (pure: strings in, strings
//! out, one temp dir for the file round trip).

use crate::model::{Report, Series, SeriesKind};
use crate::{plot, table};

fn report() -> Report {
    let mut r = Report::new("connect", "connect()+close");
    r.row("outside", "outside a bottle", "1/s", &[100.0, 300.0, 200.0])
        .row("inside", "inside cork run", "1/s", &[150.0])
        .ratio_to("outside");
    r
}

#[test]
fn rows_take_the_median_and_ratio_to_their_baseline() {
    let r = report();
    let out = r.get("outside").expect("outside row");
    assert_eq!(out.value, 200.0);
    assert_eq!(out.samples, vec![100.0, 300.0, 200.0]);
    let inside = r.get("inside").expect("inside row");
    assert!(inside.samples.is_empty(), "one sample is the value itself");
    let ratio = inside.ratio.as_ref().expect("ratio");
    assert_eq!((ratio.to.as_str(), ratio.value), ("outside", 0.75));
}

#[test]
fn reports_round_trip_through_files_in_bench_order() {
    let dir = std::env::temp_dir().join(format!("cork-bench-report-{}", std::process::id()));
    let mut dns = Report::new("dns", "dns");
    dns.row("p50_added", "p50 added", "us", &[36.0]);
    let mut zzz = Report::new("zzz", "unknown bench");
    zzz.row("x", "x", "1/s", &[1.0]);
    for r in [&zzz, &dns, &report()] {
        r.write(&dir).expect("write report");
    }
    let back = Report::read_dir(&dir).expect("read reports");
    std::fs::remove_dir_all(&dir).expect("remove temp dir");
    let benches: Vec<&str> = back.iter().map(|r| r.bench.as_str()).collect();
    assert_eq!(benches, ["connect", "dns", "zzz"]);
    assert_eq!(back[0], report_with_same_header(&back[0]));
}

/// [`report`] with `of`'s header (time, command, machine), for comparing the rest.
fn report_with_same_header(of: &Report) -> Report {
    Report {
        unix_time: of.unix_time,
        command: of.command.clone(),
        machine: of.machine.clone(),
        ..report()
    }
}

#[test]
fn check_names_every_missing_row_and_series() {
    let r = report();
    r.check(&["outside", "inside"], &[]).expect("complete");
    let err = r
        .check(&["outside", "gone"], &["cdf"])
        .expect_err("incomplete")
        .to_string();
    assert!(err.contains("gone") && err.contains("series cdf"), "{err}");
    let mut nan = Report::new("x", "x");
    nan.row("v", "v", "1/s", &[]);
    assert!(
        nan.check(&["v"], &[]).is_err(),
        "a NaN value is not a figure"
    );
}

#[test]
fn quantiles_use_the_nearest_rank() {
    let sorted: Vec<u64> = (1..=200).collect();
    assert_eq!(
        crate::quantiles(&sorted, &[0.5, 0.99, 0.999]),
        [100, 198, 200]
    );
    assert_eq!(crate::quantiles(&[], &[0.5]), [0]);
    let probs = crate::cdf_probabilities();
    assert_eq!(probs.len(), 100);
    assert_eq!((probs[0], probs[98], probs[99]), (0.01, 0.99, 0.999));
}

#[test]
fn cdf_series_takes_each_quantiles_median_across_runs() {
    let probs = crate::cdf_probabilities();
    let run = |k: u64| -> Vec<u64> { (0..probs.len() as u64).map(|i| i * k).collect() };
    let s = crate::cdf_series("cork", "cork", "us", &[run(1), run(3), run(2)]);
    assert_eq!(s.kind, SeriesKind::Cdf);
    assert_eq!(s.points.len(), probs.len());
    assert_eq!(s.points[10], (20.0, probs[10]));
    assert!(
        s.points
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 < w[1].1)
    );
}

#[test]
fn lists_round_trip_through_client_output() {
    let line = format!("rate=1/s {} p50=3us", crate::format_list("q", &[1, 2, 30]));
    assert_eq!(crate::parse_list(&line, "q"), Some(vec![1, 2, 30]));
    assert_eq!(crate::parse_list("rate=1/s", "q"), None);
    assert_eq!(crate::parse_list("q=1,x", "q"), None);
}

#[test]
fn numbers_are_grouped_like_the_readme() {
    assert_eq!(table::number(40_000.4), "40 000");
    assert_eq!(table::number(1_234_567.0), "1 234 567");
    assert_eq!(table::number(-2500.0), "-2 500");
    assert_eq!(table::number(36.44), "36.4");
    assert_eq!(table::number(0.654), "0.654");
    assert_eq!(table::number(1.5), "1.50");
    assert_eq!(table::number(10.0), "10");
    assert_eq!(table::number(0.0), "0");
    assert_eq!(table::number(f64::NAN), "NaN");
}

#[test]
fn the_table_lists_every_row_with_range_and_ratio() {
    let text = table::render(&[report()]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("machine: "), "{text}");
    assert!(
        lines[1].starts_with("bench") && lines[1].contains("ratio"),
        "{text}"
    );
    assert!(
        lines[2].contains("outside a bottle") && lines[2].contains("100–300"),
        "{text}"
    );
    assert!(
        lines[3].contains("150 1/s") && lines[3].contains("0.75 vs outside"),
        "{text}"
    );
    let mut proxy = Report::new("proxy", "proxy");
    proxy
        .row("max_rps.direct", "direct", "1/s", &[2.0])
        .row("max_rps.cork", "cork", "1/s", &[1.0])
        .ratio_to("max_rps.direct")
        .row("baseline.x.16k", "baseline", "GB/s", &[1.0])
        .row("x.16k", "scan", "GB/s", &[2.0])
        .ratio_to("baseline.x.16k");
    let text = table::render(&[proxy]);
    assert!(
        text.contains("0.50 vs direct") && text.contains("2.00 vs baseline"),
        "{text}"
    );
    // Values line up on the right.
    let end = |l: &str| l.find("1/s").expect("unit") + 3;
    assert_eq!(end(lines[2]), end(lines[3]), "{text}");
}

fn cdf(key: &str, scale: f64) -> Series {
    Series {
        key: key.into(),
        name: format!("{key} peer"),
        kind: SeriesKind::Cdf,
        x_unit: "us".into(),
        y_unit: "fraction".into(),
        points: crate::cdf_probabilities()
            .into_iter()
            .map(|p| (scale * (1.0 + 10.0 * p), p))
            .collect(),
    }
}

fn all_reports() -> Vec<Report> {
    let mut dns = Report::new("dns", "dns");
    dns.series(cdf("direct", 10.0)).series(cdf("cork", 40.0));
    let mut proxy = Report::new("proxy", "proxy");
    proxy
        .row("max_rps.direct", "direct", "1/s", &[86_000.0])
        .row("max_rps.cork", "cork", "1/s", &[36_000.0])
        .row("tls_cps.direct", "direct", "1/s", &[2_000.0])
        .row("tls_cps.cork", "cork", "1/s", &[900.0])
        .series(cdf("latency.direct", 100.0))
        .series(cdf("latency.cork", 300.0));
    let mut scale = Report::new("scale", "scale");
    scale.series(Series {
        key: "connects".into(),
        name: "in a bottle".into(),
        kind: SeriesKind::Xy,
        x_unit: "rules".into(),
        y_unit: "1/s".into(),
        points: vec![(10.0, 20_000.0), (1000.0, 19_000.0), (100_000.0, 18_500.0)],
    });
    vec![report(), dns, proxy, scale]
}

#[test]
fn figures_are_svg_with_their_series_and_labels() {
    let figs = plot::figures(&all_reports()).expect("figures draw");
    let names: Vec<&str> = figs.iter().map(|f| f.0).collect();
    assert_eq!(
        names,
        [
            "dns-latency-cdf.svg",
            "https-latency-cdf.svg",
            "https-rate-per-peer.svg",
            "connects-vs-rules.svg"
        ]
    );
    for (name, svg) in &figs {
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{name}"
        );
        assert!(svg.contains("<text"), "{name} has text");
    }
    let get = |n: &str| &figs.iter().find(|f| f.0 == n).expect(n).1;
    assert!(get("dns-latency-cdf.svg").contains("cork peer"));
    assert!(get("dns-latency-cdf.svg").contains("<polyline"));
    assert!(get("https-rate-per-peer.svg").contains("86 000"));
    assert!(get("https-rate-per-peer.svg").contains("new TLS connections"));
    assert!(get("connects-vs-rules.svg").contains("outside a bottle (connect bench)"));
    // One bar alone still draws.
    let one = vec![plot::Bar {
        label: "cork".into(),
        value: 3.0,
    }];
    plot::bars_svg("one", &[("one", "1/s", one)]).expect("one bar draws");
}

#[test]
fn no_data_draws_no_figure() {
    assert!(plot::figures(&[report()]).expect("no figures").is_empty());
    // A single point or a flat line still gets an axis.
    let flat = Series {
        key: "connects".into(),
        name: "flat".into(),
        kind: SeriesKind::Xy,
        x_unit: "rules".into(),
        y_unit: "1/s".into(),
        points: vec![(10.0, 5.0)],
    };
    plot::xy_svg("flat", "x", "y", &[&flat]).expect("one point draws");
}
