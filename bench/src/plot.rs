//! The requests-in-flight plot: throughput and p99 latency against requests in
//! flight, one line per series, drawn as SVG with `plotters`.

use std::path::Path;

use plotters::prelude::*;

use crate::{BenchError, Report};

/// One line of the plot: a name and its runs, in order of requests in flight.
#[derive(Debug, Clone)]
pub struct Series {
    /// The legend.
    pub name: String,
    /// The runs (x: `in_flight`, y: `requests_per_second` and `latency.p99_ms`).
    pub reports: Vec<Report>,
}

/// One line's points, (log₂ in flight, value).
type Line = Vec<(f64, f64)>;

const COLORS: [RGBColor; 4] = [BLUE, RED, GREEN, MAGENTA];

/// Draws two panels side by side into the SVG file `path`: requests/s and p99
/// (ms), each against requests in flight on a log₂ axis.
pub fn draw_in_flight(path: &Path, title: &str, series: &[Series]) -> Result<(), BenchError> {
    let err = |e: &dyn std::fmt::Display| BenchError::Plot(e.to_string());
    let root = SVGBackend::new(path, (1200, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(title, ("sans-serif", 22))
        .map_err(|e| err(&e))?;
    let (left, right) = root.split_horizontally(600);
    let points = |f: fn(&Report) -> f64| -> Vec<Line> {
        series
            .iter()
            .map(|s| {
                s.reports
                    .iter()
                    .map(|r| ((r.in_flight.max(1) as f64).log2(), f(r)))
                    .collect()
            })
            .collect()
    };
    let panels = [
        (left, "requests/s", points(|r| r.requests_per_second)),
        (right, "p99 latency (ms)", points(|r| r.latency.p99_ms)),
    ];
    let max_x = series
        .iter()
        .flat_map(|s| s.reports.iter())
        .map(|r| (r.in_flight.max(1) as f64).log2())
        .fold(1.0_f64, f64::max);
    for (area, y_label, lines) in panels {
        let max_y = lines
            .iter()
            .flatten()
            .map(|&(_, y)| y)
            .fold(0.0_f64, f64::max)
            * 1.15;
        let mut chart = ChartBuilder::on(&area)
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..max_x, 0.0..max_y.max(1.0))
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("requests in flight")
            .y_desc(y_label)
            .x_label_formatter(&|x| format!("{:.0}", 2f64.powf(*x)))
            .draw()
            .map_err(|e| err(&e))?;
        for (i, (line, s)) in lines.iter().zip(series).enumerate() {
            let color = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(s.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
            chart
                .draw_series(line.iter().map(|&p| Circle::new(p, 4, color.filled())))
                .map_err(|e| err(&e))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
