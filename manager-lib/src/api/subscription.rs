//! The user's subscription on the API: `GET /sub/{token}`, answered in the
//! format the client imports, with the headers client apps read (usage,
//! expiry, title, refresh interval, links, announce), and the device limit
//! (`x-hwid`) applied.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::{
    ACCEPT, CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderMap,
    HeaderName, HeaderValue, USER_AGENT,
};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::ApiError;
use super::responses::ServerError;
use super::state::ApiState;
use crate::domain::{DeviceSighting, DeviceVerdict, User};
use crate::manager::ManagerError;
use crate::subscription::html::PageOptions;
use crate::subscription::{Format, Listing, render};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct SubscriptionQuery {
    /// `base64`, `links`, `xray`, `sing-box`, `clash` or `html`; absent:
    /// chosen from the User-Agent (the rule table), then `Accept`.
    format: Option<String>,
}

fn header(headers: &HeaderMap, name: HeaderName) -> &str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// `subscription-userinfo`: every key always (OpenClash breaks without
/// `expire`); 0 means none.
fn user_info(user: &User) -> String {
    format!(
        "upload={}; download={}; total={}; expire={}",
        user.used_up,
        user.used_down,
        user.plan.data_limit.unwrap_or(0),
        user.plan
            .expire_at
            .map(|t| t.0.div_euclid(1000).max(0))
            .unwrap_or(0)
    )
}

/// `content-disposition` with an ASCII file name and the exact one in
/// RFC 5987 form.
fn attachment(title: &str, format: Format) -> String {
    let ext = match format {
        Format::Base64 | Format::Links => "txt",
        Format::Xray | Format::SingBox => "json",
        Format::Clash => "yaml",
        Format::Html => "html",
    };
    let ascii: String = title
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ' ') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let exact = url::form_urlencoded::byte_serialize(format!("{title}.{ext}").as_bytes())
        .collect::<String>()
        .replace('+', "%20");
    format!("attachment; filename=\"{ascii}.{ext}\"; filename*=UTF-8''{exact}")
}

/// What a device over the user's limit is told (clients show the
/// announce; Happ up to 200 characters).
pub const DEVICE_LIMIT_TEXT: &str =
    "Device limit reached: this app is not one of your devices. Remove one to add it.";

/// The device a request names, if its `x-hwid` follows the rule.
fn sighting(headers: &HeaderMap) -> Option<DeviceSighting> {
    let get = |name: &'static str| header(headers, HeaderName::from_static(name));
    DeviceSighting::new(
        get("x-hwid"),
        get("x-device-os"),
        get("x-ver-os"),
        get("x-device-model"),
        header(headers, USER_AGENT),
    )
    .ok()
}

fn base64_text(text: &str) -> String {
    format!("base64:{}", STANDARD.encode(text))
}

#[utoipa::path(
    get,
    path = "/sub/{token}",
    tag = "user",
    summary = "A user's subscription, in the format the client app imports",
    description = "The nodes that can serve the user now, exactly as the node-list call decides, each inbound as the chosen format has it. A request with `x-hwid` (and `x-device-os`, `x-ver-os`, `x-device-model`) is counted against the user's device limit (settings `device_limit`, or the user's own): a device over it gets no nodes, `x-hwid-limit: true` and an `announce` saying why. The format comes from `?format=`, else the User-Agent rule table (settings), else `Accept: text/html` (an HTML page with QR codes), else the base64 link list. Headers: `subscription-userinfo`, `profile-title`, `profile-update-interval`, `content-disposition`, and `support-url`, `profile-web-page-url`, `announce` when set. A disabled or blocked user gets an empty list, not an error.",
    params(
        ("token" = String, Path, description = "The user's subscription token (43 characters)"),
        SubscriptionQuery
    ),
    responses(
        (status = 200, description = "The subscription", content_type = "text/plain", body = String),
        (status = 404, description = "`not found`: no subscription has this token (an old token after a rotation included)", body = super::error::ErrorBody),
        (status = 429, description = "`too many requests` from this client", body = super::error::ErrorBody),
        ServerError
    )
)]
pub(super) async fn subscription(
    State(st): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<SubscriptionQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path(token) = path.map_err(|_| ApiError::Manager(ManagerError::SubscriptionNotFound))?;
    let found = st.manager.subscription(&token).await?;
    let api = &st.subscription;
    let asked = query.ok().and_then(|Query(q)| q.format);
    let format = api.rules().choose(
        asked.as_deref(),
        header(&headers, USER_AGENT),
        header(&headers, ACCEPT),
    );
    let settings = api.settings();
    let device = sighting(&headers);
    let verdict = st
        .manager
        .admit_device(&found.user, device.as_ref(), settings.device_policy())
        .await?;
    let refused = verdict == DeviceVerdict::OverLimit;
    let title = settings.title_for(&found.user.name);
    let listing = match refused {
        false => Listing::of_nodes(&found.user, &found.nodes, st.manager.settings().credentials),
        true => Listing::new(&found.user, []),
    };
    // Only the page shows its own URL (with its QR code).
    let url = (format == Format::Html).then(|| settings.url_for(&token));
    let announce = match refused {
        true => Some(DEVICE_LIMIT_TEXT),
        false => settings.announce.as_deref(),
    };
    let page = PageOptions {
        announce: settings.announce.as_deref(),
        refusal: refused.then_some(DEVICE_LIMIT_TEXT),
        subscription_url: url.as_deref(),
    };
    let rendered = render(format, &listing, &page);
    let mut response = rendered.body.into_response();
    let out = response.headers_mut();
    out.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(rendered.content_type),
    );
    // A subscription holds credentials: no shared cache keeps it.
    out.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            out.insert(HeaderName::from_static(name), v);
        }
    };
    set("subscription-userinfo", user_info(&found.user));
    set("profile-title", base64_text(&title));
    set(
        "profile-update-interval",
        settings.update_interval_hours.to_string(),
    );
    if let Some(url) = &settings.support_url {
        set("support-url", url.clone());
    }
    if let Some(url) = &settings.web_page_url {
        set("profile-web-page-url", url.clone());
    }
    if let Some(text) = announce {
        set("announce", base64_text(text));
    }
    if refused {
        set("x-hwid-limit", "true".to_owned());
    }
    if format == Format::Html {
        // The page runs no script and loads nothing: say so, so that a
        // hostile name that slipped through could not either.
        out.insert(
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
            ),
        );
    } else if let Ok(v) = HeaderValue::from_str(&attachment(&title, format)) {
        out.insert(CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Timestamp;
    use crate::subscription::testing;

    #[test]
    fn user_info_always_has_all_four_keys() {
        let mut user = testing::user("a");
        assert_eq!(user_info(&user), "upload=0; download=0; total=0; expire=0");
        user.used_up = 5;
        user.used_down = 7;
        user.plan.data_limit = Some(1 << 30);
        user.plan.expire_at = Some(Timestamp(1_800_000_000_123));
        assert_eq!(
            user_info(&user),
            "upload=5; download=7; total=1073741824; expire=1800000000"
        );
    }

    #[test]
    fn attachment_names_are_header_safe() {
        let v = attachment("Вася \"VPN\"; x", Format::Clash);
        assert!(HeaderValue::from_str(&v).is_ok(), "{v}");
        assert!(
            v.starts_with("attachment; filename=\"____ _VPN__ x.yaml\""),
            "{v}"
        );
        assert!(v.contains("filename*=UTF-8''%D0%92"), "{v}");
    }
}
