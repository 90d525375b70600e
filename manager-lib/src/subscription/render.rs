//! One listing written in one format, with the content type it is served
//! with.

use super::html::{PageOptions, render_page};
use super::{Format, Listing, clash, links, singbox, xray};
use crate::domain::Timestamp;

/// A subscription written out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub body: String,
    pub content_type: &'static str,
}

/// `listing` as `format`; `page` is what only the HTML page shows.
pub fn render(format: Format, listing: &Listing<'_>, page: &PageOptions<'_>) -> Rendered {
    let (body, content_type) = match format {
        Format::Base64 => (links::base64_links(listing), "text/plain; charset=utf-8"),
        Format::Links => (links::links_text(listing), "text/plain; charset=utf-8"),
        Format::Xray => (xray::render(listing), "application/json"),
        Format::SingBox => (singbox::render(listing), "application/json"),
        Format::Clash => (clash::render(listing), "text/yaml; charset=utf-8"),
        Format::Html => (
            render_page(listing, Timestamp::now(), page),
            "text/html; charset=utf-8",
        ),
    };
    Rendered { body, content_type }
}
