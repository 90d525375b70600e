//! Run with: cargo run -p manager-lib --release --features conformance --example bench_subscription_formats [ENTRIES] [ROUNDS]
//!
//! How long writing one subscription takes in each format (sing-box, Clash,
//! Xray) for a listing of ENTRIES entries (default 30: the fixtures, every
//! kind of inbound, repeated), on one thread: the format's share of a
//! subscription request.

use std::hint::black_box;
use std::time::Instant;

use manager_lib::subscription::{Listing, clash, singbox, testing, xray};

/// A format's writer.
type Render = fn(&Listing<'_>) -> String;

fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().map_or(30, |a| a.parse().expect("ENTRIES"));
    let rounds: u32 = args.next().map_or(20_000, |a| a.parse().expect("ROUNDS"));
    let user = testing::user("alice");
    let kinds = testing::entries();
    let entries: Vec<_> = (0..count)
        .map(|n| {
            let mut e = kinds[n % kinds.len()].clone();
            e.remark = format!("{} #{n}", e.remark);
            e
        })
        .collect();
    let listing = Listing::new(&user, &entries);
    let formats: [(&str, Render); 3] = [
        ("sing-box", singbox::render),
        ("clash", clash::render),
        ("xray", xray::render),
    ];
    println!("{count} entries, {rounds} rounds, one thread");
    for (name, render) in formats {
        let bytes = render(&listing).len();
        for _ in 0..rounds / 10 {
            black_box(render(black_box(&listing)));
        }
        let start = Instant::now();
        for _ in 0..rounds {
            black_box(render(black_box(&listing)));
        }
        let each = start.elapsed() / rounds;
        println!(
            "{name:>9}: {:>6.1} µs per subscription ({bytes} bytes), {:>7.0} per second",
            each.as_secs_f64() * 1e6,
            1.0 / each.as_secs_f64()
        );
    }
}
