//! QR codes as inline SVG, drawn on the server so the subscription page
//! needs no script, no image request and no outside service.
//!
//! `qrcode` encodes; we draw its module matrix ourselves because its SVG
//! renderer writes one path segment of about 16 bytes per dark module and
//! an XML prolog that does not belong inside HTML: here each run of dark
//! modules in a row is one segment. For a REALITY link (65 × 65 modules,
//! 2,092 dark) that is 15 KB against about 33 KB.
//!
//! Two things keep a code cheap, as the page is served to anyone holding a
//! token (about 20 requests a second per client address):
//!
//! - One fixed mask instead of the best of eight. `qrcode` scores all eight
//!   with the standard's penalty rules, about 3 ms for a 300-byte link and
//!   nearly all of the page's time; encoding with one mask takes about
//!   40 µs. Any mask makes a valid code that every reader decodes; the
//!   penalty only steers away from patterns that may confuse a camera, and
//!   the mask fixed here is the one the scoring picks most often for links.
//! - A bounded cache of finished codes by their exact text ([`QrCache`]),
//!   so a page its user reloads costs no QR work at all.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use qrcode::canvas::{Canvas, MaskPattern};
use qrcode::{Color, EcLevel, bits, ec};

/// Light modules around the code, as the QR standard asks for (4): phone
/// cameras find the code by its finder patterns against this margin.
const QUIET_ZONE: usize = 4;

/// The mask every code gets: pattern 010, dark where `x % 3 == 0`. Over 560
/// link-shaped texts of 40 to 2,000 bytes, `qrcode`'s best-of-eight scoring
/// chose it 203 times, the next most often 153; every one of its codes
/// decoded with `rqrr`, where masks 000, 011 and 100 each lost one.
const MASK: MaskPattern = MaskPattern::VerticalLines;

/// The byte budget of the [`svg`] cache: about 2,000 codes of REALITY links
/// (15 KB each), the pages of some 60 users of 30 links each viewed at the
/// same time. A miss costs about 40 µs a link, so the budget only has to
/// cover the pages being reloaded right now, not every user.
pub const CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// What one cached code costs besides its text and SVG bytes: the cache's
/// bookkeeping and the two heap allocations, on the high side.
const ENTRY_OVERHEAD_BYTES: u64 = 160;

/// `text` as an SVG QR code of `pixels` × `pixels` (the code scales to it),
/// or `None` when the text is too long for any QR code (about 2.3 KB at the
/// medium error correction tried first, 2.9 KB at the lowest).
///
/// Medium error correction survives a glare or a scratch on a screen; the
/// lowest is tried only when the text does not fit. Codes are kept in one
/// process-wide [`QrCache`] of [`CACHE_BYTES`].
pub fn svg(text: &str, pixels: u32) -> Option<String> {
    static SHARED: OnceLock<QrCache> = OnceLock::new();
    SHARED
        .get_or_init(|| QrCache::new(CACHE_BYTES))
        .svg(text, pixels)
}

/// Finished QR codes by their exact text, bounded by bytes (texts, SVGs and
/// an estimate of the per-entry overhead) rather than by count, as a code's
/// size grows with its text's. S3-FIFO (`quick_cache`): a code drawn once
/// leaves before the ones drawn again, so a stream of one-off pages does not
/// push out the pages being reloaded. Callers asking for the same missing
/// text at once wait for one drawing instead of each doing it.
///
/// The texts are share links, which hold the users' credentials: the cache
/// is never printed, logged or exposed beyond [`QrCache::svg`].
pub struct QrCache {
    codes: quick_cache::sync::Cache<String, Code, ByBytes>,
}

/// A drawn code without its display size (which the caller picks per call),
/// or `None` for a text too long for any code: asking again costs nothing.
#[derive(Clone)]
struct Code(Option<Arc<Drawn>>);

struct Drawn {
    /// Modules a side, quiet zone included: the `viewBox`.
    size: usize,
    /// The SVG after its size attributes, to its end.
    tail: String,
}

#[derive(Clone)]
struct ByBytes;

impl quick_cache::Weighter<String, Code> for ByBytes {
    fn weight(&self, text: &String, code: &Code) -> u64 {
        let drawn = code.0.as_ref().map_or(0, |d| d.tail.len());
        (text.len() + drawn) as u64 + ENTRY_OVERHEAD_BYTES
    }
}

/// Counts only: the texts are credentials.
impl std::fmt::Debug for QrCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QrCache")
            .field("codes", &self.len())
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl QrCache {
    /// An empty cache that holds up to `max_bytes` of codes.
    pub fn new(max_bytes: u64) -> Self {
        // A REALITY link's code is about 15 KB: the table's first size.
        let estimated = usize::try_from(max_bytes / 16_384).unwrap_or(usize::MAX);
        Self {
            codes: quick_cache::sync::Cache::with_weighter(estimated.max(16), max_bytes, ByBytes),
        }
    }

    /// [`svg`] through this cache: drawn on the first call for `text`,
    /// copied from the cache on the next ones while it stays in.
    pub fn svg(&self, text: &str, pixels: u32) -> Option<String> {
        let code = self
            .codes
            .get_or_insert_with(text, || Ok::<_, Infallible>(draw(text)))
            .unwrap_or_else(|never| match never {});
        let drawn = code.0?;
        let size = drawn.size;
        let mut out = String::with_capacity(160 + drawn.tail.len());
        write!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" width="{pixels}" height="{pixels}""#
        )
        .expect("writing into a String cannot fail");
        out.push_str(&drawn.tail);
        Some(out)
    }

    /// How many texts' codes the cache holds.
    pub fn len(&self) -> usize {
        self.codes.len()
    }

    /// Whether the cache holds no code.
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// The bytes the cache holds by its own count (at most the budget).
    pub fn bytes(&self) -> u64 {
        self.codes.weight()
    }
}

/// Encodes `text` at medium error correction, or the lowest if it does not
/// fit, with [`MASK`], and draws it.
fn draw(text: &str) -> Code {
    let Some((modules, width)) = [EcLevel::M, EcLevel::L]
        .into_iter()
        .find_map(|level| encode(text, level))
    else {
        return Code(None);
    };
    let size = width + 2 * QUIET_ZONE;
    let mut tail = String::with_capacity(256 + modules.len() * 4);
    tail.push_str(r##" shape-rendering="crispEdges" role="img" aria-label="QR code">"##);
    write!(
        tail,
        r##"<rect width="{size}" height="{size}" fill="#fff"/><path fill="#000" d=""##
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
                tail,
                "M{} {}h{run}v1h-{run}z",
                start + QUIET_ZONE,
                y + QUIET_ZONE
            )
            .expect("writing into a String cannot fail");
        }
    }
    tail.push_str(r#""/></svg>"#);
    Code(Some(Arc::new(Drawn { size, tail })))
}

/// The modules of `text`'s code (row by row) and its width, or `None` if it
/// does not fit at `level`. `QrCode::with_error_correction_level` with the
/// mask fixed: the same segmenting into modes, the smallest version that
/// fits, the same codewords.
fn encode(text: &str, level: EcLevel) -> Option<(Vec<Color>, usize)> {
    let bits = bits::encode_auto(text.as_bytes(), level).ok()?;
    let version = bits.version();
    let (data, ecc) = ec::construct_codewords(&bits.into_bytes(), version, level).ok()?;
    let mut canvas = Canvas::new(version, level);
    canvas.draw_all_functional_patterns();
    canvas.draw_data(&data, &ecc);
    canvas.apply_mask(MASK);
    let width = usize::try_from(version.width()).ok()?;
    Some((canvas.into_colors(), width))
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
    fn codes_of_every_length_decode_to_their_text() {
        // Link-shaped texts from one version to the largest: the fixed mask
        // has to give a readable code whatever the data.
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_%&=?/#";
        for len in (20..2300).step_by(97) {
            let mut text =
                String::from("vless://6b6d1a8e-64c5-4b3c-9f02-3c1f1e6a9d4e@h.example:443?");
            let mut i = len;
            while text.len() < len {
                i = i.wrapping_mul(31).wrapping_add(7);
                text.push(char::from(alphabet[i % alphabet.len()]));
            }
            assert_eq!(decode(&svg(&text, 240).unwrap()), text, "{len} bytes");
        }
    }

    #[test]
    fn a_cached_code_is_the_code_drawn_first() {
        let cache = QrCache::new(CACHE_BYTES);
        let first = cache.svg("vless://a@b.example:443", 240).unwrap();
        let again = cache.svg("vless://a@b.example:443", 240).unwrap();
        assert_eq!(first, again);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn one_cached_code_serves_every_size() {
        let cache = QrCache::new(CACHE_BYTES);
        let small = cache.svg("hello", 120).unwrap();
        let large = cache.svg("hello", 360).unwrap();
        assert!(small.contains(r#"width="120" height="120""#));
        assert!(large.contains(r#"width="360" height="360""#));
        assert_eq!(decode(&small), "hello");
        assert_eq!(decode(&large), "hello");
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_text_too_long_is_remembered_as_having_no_code() {
        let cache = QrCache::new(CACHE_BYTES);
        let text = "x".repeat(4000);
        assert!(cache.svg(&text, 240).is_none());
        assert!(cache.svg(&text, 240).is_none());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn the_cache_stays_within_its_byte_budget() {
        let budget = 256 * 1024;
        let cache = QrCache::new(budget);
        for i in 0..100 {
            let link = format!("vless://{i:032}@nl.example.com:443?security=reality#{i}");
            assert!(cache.svg(&link, 240).is_some());
        }
        assert!(cache.bytes() <= budget, "{} bytes", cache.bytes());
        assert!(!cache.is_empty() && cache.len() < 100, "{}", cache.len());
    }

    #[test]
    fn the_svg_is_inline_markup_sized_as_asked() {
        let svg = svg("hello", 180).unwrap();
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>"));
        assert!(svg.contains(r#"width="180" height="180""#));
        assert!(!svg.contains("<?xml"));
    }
}
