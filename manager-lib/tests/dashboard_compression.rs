//! The dashboard's answers are compressed when the browser accepts it
//! (brotli or gzip), read back whole, and assets keep their year-long
//! cache; a page compressed twice never holds the same form token.

mod dashboard_support;

use std::io::Read as _;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use manager_lib::storage::memory::MemoryStorage;
use tower::ServiceExt as _;

use dashboard_support::{BOOT, HOST, get, login, server};

async fn fetch(
    router: &axum::Router,
    path: &str,
    cookie: &str,
    encoding: &str,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let req = Request::builder()
        .uri(path)
        .header(header::HOST, HOST)
        .header(header::COOKIE, cookie)
        .header(header::ACCEPT_ENCODING, encoding)
        .body(Body::empty())
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, bytes.to_vec())
}

fn gunzip(bytes: &[u8]) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .expect("valid gzip");
    text
}

fn encoding(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn pages_are_gzipped_for_a_browser_that_accepts_it_and_read_back_whole() {
    let (router, _, _) = server(Arc::new(MemoryStorage::new()), false);
    let cookie = login(&router, BOOT).await;
    let plain = get(&router, "/ui/nodes", Some(&cookie)).await;
    assert_eq!(encoding(&plain.headers), None, "none asked, none given");
    let (status, headers, body) = fetch(&router, "/ui/nodes", &cookie, "gzip").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(encoding(&headers), Some("gzip"));
    assert!(body.len() < plain.body.len(), "{} bytes", body.len());
    let text = gunzip(&body);
    assert!(text.starts_with("<!DOCTYPE html>"), "{text}");
    assert!(text.ends_with("</html>"));
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
}

#[tokio::test]
async fn brotli_is_preferred_when_offered() {
    let (router, _, _) = server(Arc::new(MemoryStorage::new()), false);
    let cookie = login(&router, BOOT).await;
    let (status, headers, _) = fetch(&router, "/ui/users", &cookie, "gzip, deflate, br").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(encoding(&headers), Some("br"));
}

#[tokio::test]
async fn assets_are_compressed_and_keep_their_year_long_cache() {
    let (router, _, _) = server(Arc::new(MemoryStorage::new()), false);
    let cookie = login(&router, BOOT).await;
    let page = get(&router, "/ui/nodes", Some(&cookie)).await;
    let re = regex::Regex::new(r#"href="(/ui/assets/style\.[0-9a-f]+\.css)""#).unwrap();
    let style = re.captures(&page.body).expect("a style sheet link")[1].to_owned();
    let (status, headers, body) = fetch(&router, &style, "", "gzip").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(encoding(&headers), Some("gzip"));
    assert_eq!(
        headers[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(gunzip(&body), manager_lib::dashboard::assets::STYLE);
}

#[tokio::test]
async fn each_page_holds_another_mask_of_the_form_token() {
    let (router, _, _) = server(Arc::new(MemoryStorage::new()), false);
    let cookie = login(&router, BOOT).await;
    let first = get(&router, "/ui/nodes", Some(&cookie)).await.csrf();
    let second = get(&router, "/ui/nodes", Some(&cookie)).await.csrf();
    assert_ne!(first, second, "a compressed page must not repeat the token");
}
