//! The bitrate policy under paused time: a link that carries less than the stream, one
//! that recovers, a dead one, and an encoder that must be restarted to change.

use std::time::Duration;

use tokio::time::{Instant, advance};

use super::*;

const BOUND: Duration = Duration::from_millis(1000);

fn sample(delivered_kbps: f64, backlog_ms: f64, episodes: u64) -> DeliverySample {
    DeliverySample {
        delivered_kbps,
        backlog_ms,
        congestion_episodes: episodes,
    }
}

/// A link of `kbps`: delivers the lesser of the target and its rate; what it cannot carry
/// piles up as backlog, which drains at the spare rate.
struct Link {
    kbps: f64,
    backlog_ms: f64,
}

impl Link {
    async fn run(&mut self, p: &mut BitratePolicy, seconds: u32) -> Vec<BitrateChange> {
        let mut changes = Vec::new();
        for _ in 0..seconds {
            let target = f64::from(p.target());
            self.backlog_ms =
                (self.backlog_ms + (target - self.kbps) / self.kbps * 1000.0).max(0.0);
            let delivered = if self.backlog_ms > 0.0 {
                self.kbps
            } else {
                target
            };
            changes.extend(p.poll(Instant::now(), sample(delivered, self.backlog_ms, 0)));
            advance(Duration::from_secs(1)).await;
        }
        changes
    }
}

#[tokio::test(start_paused = true)]
async fn congestion_brings_the_target_below_what_the_link_delivers() {
    let mut p = BitratePolicy::new(2000, 200, BOUND, true);
    // Halved at most: 2000 -> 1000, not to 85 % of 950 at once.
    let c = p
        .poll(Instant::now(), sample(950.0, 400.0, 0))
        .expect("cut");
    assert_eq!(c.kbps, 1000);
    assert_eq!(c.from, 2000);
    assert_eq!(c.apply, Apply::Live);
    assert!(matches!(c.cause, Cause::Congested { .. }));
    // Not again within the second, even if still congested.
    advance(Duration::from_millis(500)).await;
    assert_eq!(p.poll(Instant::now(), sample(950.0, 600.0, 0)), None);
    // A second after the first cut, still congested: below what the link delivers.
    advance(Duration::from_millis(500)).await;
    let c = p
        .poll(Instant::now(), sample(950.0, 700.0, 0))
        .expect("second cut");
    assert_eq!(c.kbps, (950.0 * CUT) as u32);
}

#[tokio::test(start_paused = true)]
async fn a_congestion_drop_counts_even_with_a_small_backlog() {
    let mut p = BitratePolicy::new(2000, 200, BOUND, true);
    assert!(p.poll(Instant::now(), sample(1500.0, 10.0, 1)).is_some());
    advance(Duration::from_secs(1)).await;
    // Same episode count: no new congestion, small backlog: nothing.
    assert_eq!(p.poll(Instant::now(), sample(1200.0, 100.0, 1)), None);
}

#[tokio::test(start_paused = true)]
async fn never_below_the_minimum_nor_above_the_configured_rate() {
    let mut p = BitratePolicy::new(2000, 300, BOUND, true);
    for _ in 0..10 {
        p.poll(Instant::now(), sample(0.0, 5000.0, 0));
        advance(Duration::from_secs(1)).await;
    }
    assert_eq!(p.target(), 300);
    for _ in 0..60 {
        p.poll(Instant::now(), sample(300.0, 0.0, 0));
        advance(Duration::from_secs(1)).await;
    }
    assert_eq!(p.target(), 2000);
}

#[tokio::test(start_paused = true)]
async fn settles_under_a_constrained_link_and_recovers_within_12_s_when_it_clears() {
    let mut p = BitratePolicy::new(2000, 200, BOUND, true);
    // 60 s on a 1000 kbit/s link: after the first cut the target stays mostly below it,
    // probing above now and then.
    let mut link = Link {
        kbps: 1000.0,
        backlog_ms: 0.0,
    };
    let mut changes = Vec::new();
    let mut targets = Vec::new();
    for _ in 0..60 {
        changes.extend(link.run(&mut p, 1).await);
        targets.push(p.target());
    }
    // Below the link within two cuts (two seconds).
    assert!(changes.get(1).is_some_and(|c| c.kbps < 1000), "{changes:?}");
    let cuts = changes
        .iter()
        .filter(|c| matches!(c.cause, Cause::Congested { .. }))
        .count();
    assert!((1..=12).contains(&cuts), "{cuts} cuts: {changes:?}");
    let last = &targets[30..];
    let above = last.iter().filter(|t| **t > 1000).count();
    assert!(
        above * 3 <= last.len(),
        "above the link {above} of 30 s: {targets:?}"
    );
    let mean = last.iter().map(|t| f64::from(*t)).sum::<f64>() / last.len() as f64;
    assert!((650.0..=1000.0).contains(&mean), "mean {mean}: {targets:?}");
    // The link clears: the configured rate again within 12 s (the tests over a real
    // shaped link allow 15).
    link.kbps = 100_000.0;
    let start = Instant::now();
    while p.target() < 2000 {
        link.run(&mut p, 1).await;
        assert!(start.elapsed() <= Duration::from_secs(12), "{}", p.target());
    }
}

#[tokio::test(start_paused = true)]
async fn an_encoder_fixed_while_playing_is_restarted_at_most_every_30_s() {
    let mut p = BitratePolicy::new(2000, 200, BOUND, false);
    let first = p
        .poll(Instant::now(), sample(900.0, 800.0, 1))
        .expect("cut");
    assert_eq!(first.apply, Apply::Restart);
    assert_eq!(first.kbps, 1000, "halved at most");
    // Still congested 10 s later: no second restart yet.
    advance(Duration::from_secs(10)).await;
    assert_eq!(p.poll(Instant::now(), sample(500.0, 800.0, 2)), None);
    // Clear from now on: the increase waits for 30 s without congestion, the next one
    // 30 s more.
    let clear_from = Instant::now();
    let mut restarts = Vec::new();
    for _ in 0..60 {
        advance(Duration::from_secs(1)).await;
        if let Some(c) = p.poll(Instant::now(), sample(700.0, 0.0, 2)) {
            restarts.push((Instant::now() - clear_from, c));
        }
    }
    assert_eq!(restarts.len(), 2, "{restarts:?}");
    assert_eq!(restarts[0].0, Duration::from_secs(30));
    assert_eq!(restarts[1].0, Duration::from_secs(60));
    assert!(restarts.iter().all(|(_, c)| c.apply == Apply::Restart));
    assert!(restarts[0].1.kbps > first.kbps && restarts[1].1.kbps > restarts[0].1.kbps);
}
