use super::*;
use crate::domain::{BlockReason, ServedInbound, UserStatus};
use crate::subscription::testing;

const NOW: Timestamp = Timestamp(1_800_000_000_000); // 2027-01-15 08:00 UTC

fn page(listing: &Listing<'_>, options: PageOptions<'_>) -> String {
    render_page(listing, NOW, &options)
}

/// `text` as it appears in HTML text and attribute values.
fn escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Every `<svg>…</svg>` on the page, in order.
fn svgs(page: &str) -> Vec<&str> {
    page.match_indices("<svg")
        .map(|(at, _)| {
            let end = page[at..].find("</svg>").expect("a closed svg") + "</svg>".len();
            &page[at..at + end]
        })
        .collect()
}

#[test]
fn hostile_text_is_escaped_everywhere() {
    let user = testing::user("<script>alert('name')</script>");
    let entries = testing::entries();
    let listing = Listing::new(&user, &entries);
    let options = PageOptions {
        announce: Some("<img src=x onerror=alert(1)>"),
        subscription_url: Some("https://sub.example/\"><script>x</script>"),
        refusal: None,
    };
    let html = page(&listing, options);
    let lower = html.to_lowercase();
    assert!(!lower.contains("<script"), "a raw script tag");
    assert!(!lower.contains("<img"), "a raw image tag");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the remark"
    );
    assert!(
        html.contains("&lt;script&gt;alert('name')&lt;/script&gt;"),
        "the name"
    );
    let refused = page(
        &listing,
        PageOptions {
            refusal: Some("<script>too many</script>"),
            ..PageOptions::default()
        },
    );
    assert!(!refused.to_lowercase().contains("<script"));
}

#[test]
fn only_our_schemes_become_clickable() {
    let user = testing::user("alice");
    let listing = Listing::new(&user, []);
    let with_url = |url| {
        page(
            &listing,
            PageOptions {
                subscription_url: Some(url),
                ..PageOptions::default()
            },
        )
    };
    assert!(!with_url("javascript:alert(1)").contains("href="));
    assert!(
        with_url("HTTPS://sub.example.com/s/abc")
            .contains("href=\"HTTPS://sub.example.com/s/abc\"")
    );
}

#[test]
fn every_link_appears_with_a_qr_code() {
    let user = testing::user("alice");
    let entries = testing::entries();
    let listing = Listing::new(&user, &entries);
    let html = page(&listing, PageOptions::default());
    for entry in &entries {
        let link = escaped(&links::link(&user, entry));
        assert!(html.contains(&format!(">{link}</textarea>")), "{link}");
        assert!(html.contains(&format!("href=\"{link}\"")), "{link}");
        assert!(html.contains(&format!("<h2>{}</h2>", escaped(&entry.remark))));
    }
    assert_eq!(svgs(&html).len(), entries.len());
}

#[test]
fn every_qr_code_encodes_exactly_its_link() {
    let user = testing::user("alice");
    let entries = testing::entries();
    let listing = Listing::new(&user, &entries);
    let html = page(&listing, PageOptions::default());
    let decoded: Vec<String> = svgs(&html).into_iter().map(qr::decode).collect();
    let expected: Vec<String> = entries.iter().map(|e| links::link(&user, e)).collect();
    assert_eq!(decoded, expected);
}

#[test]
fn the_subscription_address_comes_first_with_its_own_qr_code() {
    let user = testing::user("alice");
    let entries = testing::entries();
    let listing = Listing::new(&user, &entries);
    let url = "https://sub.example.com/s/abc?x=1&y=2";
    let html = page(
        &listing,
        PageOptions {
            subscription_url: Some(url),
            ..PageOptions::default()
        },
    );
    let codes = svgs(&html);
    assert_eq!(codes.len(), entries.len() + 1);
    assert_eq!(qr::decode(codes[0]), url);
}

#[test]
fn an_empty_listing_says_no_server_is_available() {
    let user = testing::user("alice");
    let html = page(&Listing::new(&user, []), PageOptions::default());
    assert!(html.contains("No server is available to you right now"));
    assert!(!html.contains("<svg"));
}

#[test]
fn a_refusal_is_shown_instead_of_the_links() {
    let user = testing::user("alice");
    let entries = testing::entries();
    let listing = Listing::new(&user, &entries);
    let html = page(
        &listing,
        PageOptions {
            refusal: Some("the device limit (3) is reached"),
            ..PageOptions::default()
        },
    );
    assert!(html.contains("This device gets no servers: the device limit (3) is reached"));
    assert!(!html.contains("No server is available"));
    assert!(!html.contains("<svg") && !html.contains("<textarea"));
}

#[test]
fn the_announcement_is_shown_above_the_name() {
    let user = testing::user("alice");
    let html = page(
        &Listing::new(&user, []),
        PageOptions {
            announce: Some("Maintenance on Sunday"),
            ..PageOptions::default()
        },
    );
    let announce = html
        .find("Maintenance on Sunday")
        .expect("the announcement");
    assert!(announce < html.find("<h1>alice</h1>").expect("the name"));
}

#[test]
fn usage_is_shown_in_binary_units_against_the_limit() {
    let mut user = testing::user("alice");
    user.used_up = 512 * 1024 * 1024;
    user.used_down = 1024 * 1024 * 1024;
    user.plan.data_limit = Some(10 * 1024 * 1024 * 1024);
    let html = page(&Listing::new(&user, []), PageOptions::default());
    assert!(
        html.contains("<dd>1.5 GiB of 10.0 GiB (15%)</dd>"),
        "{html}"
    );
}

#[test]
fn no_limit_and_no_expiry_read_as_such() {
    let user = testing::user("alice");
    let html = page(&Listing::new(&user, []), PageOptions::default());
    assert!(html.contains("<dd>0 B (no limit)</dd>"), "{html}");
    assert!(html.contains("<dd>never</dd>"));
}

#[test]
fn expiry_is_a_utc_date_with_the_days_left() {
    let mut user = testing::user("alice");
    user.plan.expire_at = Some(Timestamp(NOW.0 + 30 * DAY_MS + 3_600_000));
    let html = page(&Listing::new(&user, []), PageOptions::default());
    assert!(
        html.contains("<dd>2027-02-14 09:00 UTC (30 days left)</dd>"),
        "{html}"
    );
}

#[test]
fn a_past_expiry_reads_expired() {
    let mut user = testing::user("alice");
    user.plan.expire_at = Some(Timestamp(NOW.0 - DAY_MS));
    user.blocked = Some(BlockReason::Expired);
    let html = page(&Listing::new(&user, []), PageOptions::default());
    assert!(
        html.contains("<dd>2027-01-14 08:00 UTC (expired)</dd>"),
        "{html}"
    );
    assert!(html.contains(">Expired</p>"));
}

#[test]
fn a_hold_reads_as_days_after_the_first_connection() {
    let mut user = testing::user("alice");
    user.plan.on_hold = Some(30 * 86_400);
    let html = page(&Listing::new(&user, []), PageOptions::default());
    assert!(html.contains("<dd>30 days after your first connection</dd>"));
    assert!(html.contains("On hold: the time starts with your first connection"));
}

#[test]
fn the_state_line_names_the_users_state() {
    let mut user = testing::user("alice");
    let state = |user: &User| {
        let html = page(&Listing::new(user, []), PageOptions::default());
        let at = html.find("<p class=\"state").expect("a state line");
        let text = &html[at..];
        text[text.find('>').unwrap() + 1..text.find("</p>").unwrap()].to_owned()
    };
    assert_eq!(state(&user), "Active");
    user.blocked = Some(BlockReason::Limited);
    assert_eq!(state(&user), "Data limit reached");
    user.status = UserStatus::Disabled;
    assert_eq!(state(&user), "Disabled by the operator");
}

/// Thirty entries, as a busy operator's listing has: the fixtures' kinds
/// over and over, each with its own remark.
fn thirty_entries() -> Vec<ServedInbound> {
    let kinds = testing::entries();
    (0..30)
        .map(|i| {
            let mut entry = kinds[i % kinds.len()].clone();
            entry.remark = format!("{} #{i}", entry.remark);
            entry
        })
        .collect()
}

/// Not a check, a measurement: how long a page of 30 links takes the first
/// time (a fresh user, so no QR code is cached) and again (the same user).
/// `cargo test --release -p manager-lib --lib subscription::html::tests::render_time -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, for release builds"]
fn render_time() {
    let entries = thirty_entries();
    let rounds = 20;
    let mut first = std::time::Duration::ZERO;
    let mut again = std::time::Duration::ZERO;
    for _ in 0..rounds {
        let user = testing::user("alice");
        let listing = Listing::new(&user, &entries);
        let start = std::time::Instant::now();
        std::hint::black_box(page(&listing, PageOptions::default()));
        first += start.elapsed();
        let start = std::time::Instant::now();
        std::hint::black_box(page(&listing, PageOptions::default()));
        again += start.elapsed();
    }
    println!(
        "render_page, 30 links: first {:?}, again {:?} (mean of {rounds})",
        first / rounds,
        again / rounds
    );
}
