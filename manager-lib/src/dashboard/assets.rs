//! The dashboard's files, built into the binary: the style sheet, the
//! script (auto-refresh, confirm dialogs, bulk selection) and the icon. Each is
//! served under a name holding a hash of its content, so it can be cached
//! for a year: a new build with a changed file has a new name.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// The style sheet.
pub const STYLE: &str = include_str!("assets/style.css");
/// The script.
pub const SCRIPT: &str = include_str!("assets/app.js");
/// The icon (pages name it, so browsers do not ask for `/favicon.ico`).
pub const ICON: &str = include_str!("assets/icon.svg");

/// A built-in file: its hashed name and its bytes.
struct Asset {
    name: String,
    body: &'static str,
    content_type: &'static str,
}

fn hashed(stem: &str, ext: &str, body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    format!("{stem}.{}.{ext}", &hex::encode(digest)[..16])
}

static ASSETS: LazyLock<[Asset; 3]> = LazyLock::new(|| {
    [
        Asset {
            name: hashed("style", "css", STYLE),
            body: STYLE,
            content_type: "text/css; charset=utf-8",
        },
        Asset {
            name: hashed("app", "js", SCRIPT),
            body: SCRIPT,
            content_type: "text/javascript; charset=utf-8",
        },
        Asset {
            name: hashed("icon", "svg", ICON),
            body: ICON,
            content_type: "image/svg+xml",
        },
    ]
});

/// The URL of the style sheet.
pub fn style_url() -> String {
    format!("/ui/assets/{}", ASSETS[0].name)
}

/// The URL of the script.
pub fn script_url() -> String {
    format!("/ui/assets/{}", ASSETS[1].name)
}

/// The URL of the icon.
pub fn icon_url() -> String {
    format!("/ui/assets/{}", ASSETS[2].name)
}

/// `GET /ui/assets/{file}`: the file of that hashed name, cached for a
/// year; any other name is 404 (an old build's name included).
pub(super) async fn serve(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == file) {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, asset.content_type),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            asset.body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}
