//! Plots of the results, as SVG (plotters' SVG backend needs no system fonts or libraries).

use std::path::Path;

use plotters::prelude::*;

use crate::error::BenchError;
use crate::programming::{Measurement, Peer, Step};

const COLOURS: [RGBColor; 4] = [
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x2c, 0xa0, 0x2c),
];

fn colour(peer: Peer) -> RGBColor {
    match peer {
        Peer::IptablesNft => COLOURS[0],
        Peer::IptablesLegacy => COLOURS[1],
        Peer::Nftables => COLOURS[2],
        Peer::Switchyard => COLOURS[3],
    }
}

/// One series: a peer's median wall time for one step over the number of Services, for the
/// clusters with `endpoints_per_service` endpoints each.
fn series(
    measurements: &[Measurement],
    peer: Peer,
    step: Step,
    endpoints_per_service: usize,
) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = measurements
        .iter()
        .filter(|m| {
            m.peer == peer && m.step == step && m.endpoints_per_service == endpoints_per_service
        })
        .filter_map(|m| m.median_seconds.map(|s| (m.services as f64, s)))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

/// Programming time against the number of Services (log–log), one line per peer and step;
/// clusters with other endpoint counts are drawn as separate marked series.
pub fn programming_chart(
    path: &Path,
    title: &str,
    measurements: &[Measurement],
    steps: &[Step],
) -> Result<(), BenchError> {
    let plot_error = |e: &dyn std::fmt::Display| BenchError::Plot {
        path: path.display().to_string(),
        detail: e.to_string(),
    };
    let mut all = Vec::new();
    let mut endpoint_counts: Vec<usize> =
        measurements.iter().map(|m| m.endpoints_per_service).collect();
    endpoint_counts.sort_unstable();
    endpoint_counts.dedup();
    for &peer in &Peer::ALL {
        for &step in steps {
            for &endpoints in &endpoint_counts {
                let points = series(measurements, peer, step, endpoints);
                if !points.is_empty() {
                    all.push((peer, step, endpoints, points));
                }
            }
        }
    }
    let xs = all.iter().flat_map(|s| s.3.iter().map(|p| p.0));
    let ys = all.iter().flat_map(|s| s.3.iter().map(|p| p.1));
    let x_max = xs.fold(10.0_f64, f64::max) * 1.5;
    let x_min =
        all.iter().flat_map(|s| s.3.iter().map(|p| p.0)).fold(f64::MAX, f64::min).min(x_max / 20.0)
            / 1.5;
    let y_max = ys.fold(0.01_f64, f64::max) * 2.0;
    let y_min =
        all.iter().flat_map(|s| s.3.iter().map(|p| p.1)).fold(f64::MAX, f64::min).min(y_max / 10.0)
            / 2.0;

    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_error(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d((x_min..x_max).log_scale(), (y_min..y_max).log_scale())
        .map_err(|e| plot_error(&e))?;
    chart
        .configure_mesh()
        .x_desc("Services")
        .y_desc("seconds (median wall clock)")
        .draw()
        .map_err(|e| plot_error(&e))?;
    for (peer, step, endpoints, points) in all {
        let colour = colour(peer);
        let dashed = matches!(step, Step::ChangeFullRewrite | Step::FullResync);
        let style = if dashed { colour.stroke_width(1) } else { colour.stroke_width(2) };
        let label = format!("{} {:?} (×{endpoints})", peer.label(), step);
        chart
            .draw_series(LineSeries::new(points.clone(), style))
            .map_err(|e| plot_error(&e))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
            });
        if endpoints == 10 {
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))
                .map_err(|e| plot_error(&e))?;
        } else {
            chart
                .draw_series(points.iter().map(|&p| TriangleMarker::new(p, 6, colour.filled())))
                .map_err(|e| plot_error(&e))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| plot_error(&e))?;
    root.present().map_err(|e| plot_error(&e))?;
    Ok(())
}

/// Latency against the number of Services (log x) on one path, p50 solid and p99 thin, one
/// colour per peer.
pub fn latency_chart(
    path: &Path,
    points: &[crate::latency::LatencyPoint],
    via: crate::latency::LatencyPath,
) -> Result<(), BenchError> {
    let plot_error = |e: &dyn std::fmt::Display| BenchError::Plot {
        path: path.display().to_string(),
        detail: e.to_string(),
    };
    type Pick = fn(&crate::latency::LatencyPoint) -> Option<f64>;
    let quantiles: [(&str, Pick, u32); 2] = [("p50", |p| p.p50_us, 2), ("p99", |p| p.p99_us, 1)];
    let mut all = Vec::new();
    for &peer in &Peer::ALL {
        for (name, pick, width) in quantiles {
            let mut series: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.peer == peer && p.path == via)
                .filter_map(|p| pick(p).map(|v| (p.services as f64, v)))
                .collect();
            series.sort_by(|a, b| a.0.total_cmp(&b.0));
            if !series.is_empty() {
                all.push((peer, name, width, series));
            }
        }
    }
    let x_max = all.iter().flat_map(|s| s.3.iter().map(|p| p.0)).fold(10.0_f64, f64::max) * 1.5;
    let y_max = all.iter().flat_map(|s| s.3.iter().map(|p| p.1)).fold(100.0_f64, f64::max) * 1.2;

    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_error(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{} of the last Service: TCP connect + 1-byte request/response",
                match via {
                    crate::latency::LatencyPath::PodToClusterIp => "Pod → ClusterIP",
                    crate::latency::LatencyPath::ExternalToNodePort => "External client → NodePort",
                }
            ),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d((0.7..x_max).log_scale(), 0.0..y_max)
        .map_err(|e| plot_error(&e))?;
    chart
        .configure_mesh()
        .x_desc("Services")
        .y_desc("microseconds")
        .draw()
        .map_err(|e| plot_error(&e))?;
    for (peer, name, width, series) in all {
        let colour = colour(peer);
        chart
            .draw_series(LineSeries::new(series.clone(), colour.stroke_width(width)))
            .map_err(|e| plot_error(&e))?
            .label(format!(
                "{} {name}",
                if peer == Peer::Switchyard { via.switchyard_label() } else { peer.label() }
            ))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(width))
            });
        chart
            .draw_series(series.iter().map(|&p| Circle::new(p, 3, colour.filled())))
            .map_err(|e| plot_error(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| plot_error(&e))?;
    root.present().map_err(|e| plot_error(&e))?;
    Ok(())
}
