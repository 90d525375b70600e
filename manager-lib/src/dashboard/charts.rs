//! Bar charts drawn on the server as inline SVG, from the same numbers the
//! API serves (bytes by day): no chart library, no script, nothing loaded.

use maud::{Markup, html};

use super::format;

const WIDTH: u32 = 600;
const HEIGHT: u32 = 160;
/// Room under the bars for the first and last labels.
const AXIS: u32 = 18;

/// A bar per `(label, bytes)`, left to right, scaled to the largest; each
/// bar's label and value in its tooltip and in a table for screen readers.
pub(super) fn bars(title: &str, points: &[(String, u64)]) -> Markup {
    let max = points.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let n = u32::try_from(points.len()).unwrap_or(u32::MAX).max(1);
    let slot = WIDTH / n;
    let bar = (slot * 4 / 5).max(1);
    let plot = HEIGHT - AXIS;
    html! {
        figure class="chart" {
            svg viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(title) {
                @for (i, (label, value)) in points.iter().enumerate() {
                    @let i = u32::try_from(i).unwrap_or(0);
                    // u64 -> f64 loses precision only past 2^53 bytes, far below what shows.
                    @let h = ((*value as f64 / max as f64) * f64::from(plot - 2)).round() as u32;
                    @let h = if *value > 0 { h.max(1) } else { 0 };
                    rect x=(i * slot + (slot - bar) / 2) y=(plot - h) width=(bar) height=(h) {
                        title { (label) ": " (format::bytes(*value)) }
                    }
                }
                line x1="0" y1=(plot) x2=(WIDTH) y2=(plot) class="axis" {}
                @if let (Some((first, _)), Some((last, _))) = (points.first(), points.last()) {
                    text x="0" y=(HEIGHT - 4) { (first) }
                    text x=(WIDTH) y=(HEIGHT - 4) text-anchor="end" { (last) }
                }
            }
            figcaption { (title) ", highest " (format::bytes(max)) }
            details {
                summary { "As a table" }
                table {
                    thead { tr { th scope="col" { "Day" } th scope="col" { "Traffic" } } }
                    tbody {
                        @for (label, value) in points {
                            tr { td { (label) } td { (format::bytes(*value)) } }
                        }
                    }
                }
            }
        }
    }
}
