//! The page a browser gets for a subscription (`Accept: text/html`): who it
//! is for, the usage, the expiry and the state, then every link with its
//! remark, a field to copy it from and a QR code to scan it with.
//!
//! Written with `maud`: the template is Rust checked at compile time, every
//! value is escaped unless wrapped in `PreEscaped` (only our own SVG is), and
//! the page is one `String` with no template files to ship. The page needs
//! no script, no image request and nothing from outside the server: the QR
//! codes are inline SVG ([`super::qr`]), the style is inline. Served with
//! `Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'`,
//! nothing on it can load or run anything.

use bytesize::ByteSize;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use time::OffsetDateTime;

use super::{Listing, links, qr};
use crate::domain::{Timestamp, User, UserState};

/// The side, in CSS pixels, of each QR code on the page: large enough for
/// a phone camera at arm's length from a laptop screen.
pub const QR_PIXELS: u32 = 240;

/// What the page shows besides the listing.
#[derive(Clone, Copy, Debug, Default)]
pub struct PageOptions<'a> {
    /// The operator's announcement, shown above everything else.
    pub announce: Option<&'a str>,
    /// Why this device gets no links (the device limit, …): shown instead
    /// of the links, whatever the listing holds.
    pub refusal: Option<&'a str>,
    /// The subscription's own address, shown first with its QR code, for
    /// apps that import the whole list.
    pub subscription_url: Option<&'a str>,
}

/// The page for `listing` as of `now`.
pub fn render_page(listing: &Listing<'_>, now: Timestamp, options: &PageOptions<'_>) -> String {
    let user = listing.user;
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex";
                title { "Subscription: " (user.name) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                main {
                    @if let Some(text) = options.announce.filter(|t| !t.trim().is_empty()) {
                        p.announce { (text) }
                    }
                    h1 { (user.name) }
                    p.state.(state_class(user.state())) { (state_text(user)) }
                    dl {
                        dt { "Data used" }
                        dd { (usage_text(user)) }
                        dt { "Expires" }
                        dd { (expiry_text(user, now)) }
                    }
                    @if let Some(url) = options.subscription_url {
                        section.entry {
                            h2 { "Whole subscription" }
                            (copyable(url, "Subscription address"))
                        }
                    }
                    @if let Some(reason) = options.refusal {
                        p.notice.refused {
                            "This device gets no servers: " (reason)
                        }
                    } @else if listing.entries.is_empty() {
                        p.notice {
                            "No server is available to you right now. Come back later, \
                             or ask the operator if it lasts."
                        }
                    } @else {
                        @for (entry, credential) in listing.entries.iter().zip(&listing.credentials) {
                            section.entry {
                                h2 { (entry.remark) }
                                (copyable(&links::credential_link(credential, entry), &entry.remark))
                            }
                        }
                    }
                }
            }
        }
    };
    markup.into_string()
}

/// A text to copy (a read-only field, selectable without script), a link
/// that opens it in the app registered for its scheme, and its QR code.
fn copyable(text: &str, label: &str) -> Markup {
    html! {
        textarea readonly rows="3" aria-label=(label) { (text) }
        @if openable(text) {
            p { a href=(text) { "Open in app" } }
        }
        @match qr::svg(text, QR_PIXELS) {
            // Our own markup, built from numbers only: nothing to escape.
            Some(svg) => div.qr { (PreEscaped(svg)) },
            None => p.notice { "Too long for a QR code: copy the text instead." },
        }
    }
}

/// Whether `text` may be a link's target: only the schemes we write (and
/// the web's), so no `javascript:` text can ever become one.
fn openable(text: &str) -> bool {
    const SCHEMES: [&str; 6] = [
        "vless://",
        "vmess://",
        "trojan://",
        "ss://",
        "https://",
        "http://",
    ];
    SCHEMES.iter().any(|s| {
        text.get(..s.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(s))
    })
}

fn state_class(state: UserState) -> &'static str {
    match state {
        UserState::Active | UserState::OnHold => "ok",
        UserState::Limited | UserState::Expired | UserState::Disabled => "off",
    }
}

fn state_text(user: &User) -> &'static str {
    match user.state() {
        UserState::Active => "Active",
        UserState::OnHold => "On hold: the time starts with your first connection",
        UserState::Limited => "Data limit reached",
        UserState::Expired => "Expired",
        UserState::Disabled => "Disabled by the operator",
    }
}

/// `1.5 GiB of 50.0 GiB (3%)`, or `1.5 GiB (no limit)`.
fn usage_text(user: &User) -> String {
    let used = user.used();
    let shown = ByteSize(used).display().iec();
    match user.plan.data_limit {
        Some(limit) if limit > 0 => {
            let percent = (u128::from(used) * 100 / u128::from(limit)).min(999);
            let limit = ByteSize(limit).display().iec();
            format!("{shown} of {limit} ({percent}%)")
        }
        _ => format!("{shown} (no limit)"),
    }
}

const DAY_MS: i64 = 86_400_000;

/// `2027-01-05 00:00 UTC (30 days left)`, `… (expired)`, `never`, or the
/// length of a hold that has not started.
fn expiry_text(user: &User, now: Timestamp) -> String {
    let Some(expire) = user.plan.expire_at else {
        return match user.plan.on_hold {
            Some(secs) => {
                let days = secs.div_ceil(86_400);
                format!("{days} {} after your first connection", plural(days, "day"))
            }
            None => "never".into(),
        };
    };
    let date = utc_text(expire);
    let left = expire.0.saturating_sub(now.0);
    if left <= 0 {
        return format!("{date} (expired)");
    }
    let days = left / DAY_MS;
    if days == 0 {
        format!("{date} (less than a day left)")
    } else {
        format!("{date} ({days} {} left)", plural(days as u64, "day"))
    }
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        word.into()
    } else {
        format!("{word}s")
    }
}

/// `YYYY-MM-DD HH:MM UTC`; a timestamp outside the calendar's range (not
/// one a plan can hold) as its milliseconds.
fn utc_text(at: Timestamp) -> String {
    match OffsetDateTime::from_unix_timestamp(at.0.div_euclid(1000)) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => format!("{} ms after 1970", at.0),
    }
}

const STYLE: &str = "\
body{font-family:system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}\
main{max-width:40rem;margin:0 auto;padding:1rem}\
h1{margin:.5rem 0;word-break:break-word}\
h2{font-size:1.1rem;margin:0 0 .5rem;word-break:break-word}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem}\
dt{font-weight:600}dd{margin:0}\
.state{font-weight:600}.state.ok{color:#16794a}.state.off{color:#b42318}\
.announce,.notice{background:#fff7e0;border:1px solid #f0c36d;border-radius:.5rem;padding:.75rem}\
.refused{background:#fdecea;border-color:#f5a3a3}\
.entry{background:#fff;border-radius:.5rem;padding:1rem;margin:1rem 0;box-shadow:0 1px 3px #0002}\
textarea{width:100%;box-sizing:border-box;font-family:monospace;font-size:.8rem}\
.qr svg{max-width:100%;height:auto;display:block;margin:.5rem auto}\
@media (prefers-color-scheme:dark){body{background:#15181e;color:#e6e8ec}\
.entry{background:#1f232b}.announce,.notice{background:#3a3120;border-color:#7a6430}\
.refused{background:#3b1f1f;border-color:#7a3030}a{color:#8ab4f8}}";

#[cfg(test)]
#[path = "html_tests.rs"]
mod tests;
