//! QR codes as inline SVG, drawn on the server so the subscription page
//! needs no script, no image request and no outside service.
//!
//! `qrcode` encodes; we draw its module matrix ourselves because its SVG
//! renderer writes one path segment of about 16 bytes per dark module and
//! an XML prolog that does not belong inside HTML: here each run of dark
//! modules in a row is one segment. For a REALITY link (65 × 65 modules,
//! 2,092 dark) that is 15 KB against about 33 KB.

use std::fmt::Write as _;

use qrcode::{Color, EcLevel, QrCode};

/// Light modules around the code, as the QR standard asks for (4): phone
/// cameras find the code by its finder patterns against this margin.
const QUIET_ZONE: usize = 4;

/// `text` as an SVG QR code of `pixels` × `pixels` (the code scales to it),
/// or `None` when the text is too long for any QR code (about 2.3 KB at the
/// medium error correction tried first, 2.9 KB at the lowest).
///
/// Medium error correction survives a glare or a scratch on a screen; the
/// lowest is tried only when the text does not fit.
pub fn svg(text: &str, pixels: u32) -> Option<String> {
    let code = QrCode::with_error_correction_level(text, EcLevel::M)
        .or_else(|_| QrCode::with_error_correction_level(text, EcLevel::L))
        .ok()?;
    let width = code.width();
    let modules = code.to_colors();
    let size = width + 2 * QUIET_ZONE;
    let mut out = String::with_capacity(256 + modules.len() * 4);
    write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" width="{pixels}" height="{pixels}" shape-rendering="crispEdges" role="img" aria-label="QR code"><rect width="{size}" height="{size}" fill="#fff"/><path fill="#000" d=""##
    )
    .expect("writing into a String cannot fail");
    for (y, row) in modules.chunks(width).enumerate() {
        let mut x = 0;
        while x < width {
            if row[x] == Color::Light {
                x += 1;
                continue;
            }
            let start = x;
            while x < width && row[x] == Color::Dark {
                x += 1;
            }
            let run = x - start;
            write!(
                out,
                "M{} {}h{run}v1h-{run}z",
                start + QUIET_ZONE,
                y + QUIET_ZONE
            )
            .expect("writing into a String cannot fail");
        }
    }
    out.push_str(r#""/></svg>"#);
    Some(out)
}

/// Test support: reads an SVG written by [`svg`] back the way a camera
/// would, drawing its rectangles into a bitmap and decoding that with
/// `rqrr`, a QR reader independent of the encoder.
#[cfg(test)]
pub(crate) fn decode(svg: &str) -> String {
    let view = svg
        .split_once("viewBox=\"0 0 ")
        .and_then(|(_, rest)| rest.split_once(' '))
        .map(|(size, _)| size.parse::<usize>().expect("a size"))
        .expect("a viewBox");
    let path = svg
        .split_once(" d=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(d, _)| d)
        .expect("a path");
    let mut dark = vec![false; view * view];
    for rect in path.split('z').filter(|r| !r.is_empty()) {
        // M{x} {y}h{run}v1h-{run}
        let rect = rect.strip_prefix('M').expect("a move");
        let (x, rest) = rect.split_once(' ').expect("x y");
        let (y, rest) = rest.split_once('h').expect("a run");
        let (run, _) = rest.split_once('v').expect("a height");
        let (x, y, run): (usize, usize, usize) =
            (x.parse().unwrap(), y.parse().unwrap(), run.parse().unwrap());
        dark[y * view + x..y * view + x + run].fill(true);
    }
    // Four pixels a module, as a screen shows it.
    let scale = 4;
    let px = view * scale;
    let mut img = rqrr::PreparedImage::prepare_from_bitmap(px, px, |x, y| {
        dark[(y / scale) * view + x / scale]
    });
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the picture");
    grids[0].decode().expect("a readable QR code").1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_decodes_to_its_text() {
        let text = "vless://6b6d1a8e-64c5-4b3c-9f02-3c1f1e6a9d4e@nl.example.com:443\
                    ?type=tcp&security=reality#Amsterdam%20%F0%9F%87%B3";
        assert_eq!(decode(&svg(text, 240).unwrap()), text);
    }

    #[test]
    fn a_long_text_still_fits_and_decodes() {
        let text = "x".repeat(1500);
        assert_eq!(decode(&svg(&text, 240).unwrap()), text);
    }

    #[test]
    fn text_too_long_for_any_code_has_none() {
        assert!(svg(&"x".repeat(4000), 240).is_none());
    }

    #[test]
    fn the_svg_is_inline_markup_sized_as_asked() {
        let svg = svg("hello", 180).unwrap();
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>"));
        assert!(svg.contains(r#"width="180" height="180""#));
        assert!(!svg.contains("<?xml"));
    }
}
