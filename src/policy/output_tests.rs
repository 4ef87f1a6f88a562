//! The output policy under paused time: failover order, backoff growth and cap, fast
//! probing, stalls, failback hysteresis.

use std::time::Duration;

use tokio::time::{Instant, advance};

use super::*;

fn policy(n: usize, timing: OutputTiming) -> OutputPolicy {
    let names = (0..n).map(|i| format!("rtsp://h{i}/x")).collect();
    OutputPolicy::new(names, timing, fastrand::Rng::with_seed(7), Instant::now())
}

fn feed(frames_sent: u64) -> Feed {
    Feed {
        frames_sent,
        encoding: true,
        caps_known: true,
        unconfirmed_for: Duration::ZERO,
        confirmed: true,
    }
}

/// Starts a session on `index` and lets it stream (one frame sent).
fn stream_on(p: &mut OutputPolicy, index: usize, sent: &mut u64) {
    assert_eq!(
        p.poll(Instant::now(), feed(*sent)),
        Some(OutputAction::Start { index })
    );
    p.started(Instant::now(), *sent);
    *sent += 1;
    assert_eq!(p.poll(Instant::now(), feed(*sent)), None);
    assert!(p.streaming());
}

/// Two upstreams; the primary refused, so the stream streams on the secondary.
fn on_the_secondary(timing: OutputTiming) -> (OutputPolicy, u64) {
    let mut p = policy(2, timing);
    let mut sent = 0;
    assert_eq!(
        p.poll(Instant::now(), feed(sent)),
        Some(OutputAction::Start { index: 0 })
    );
    p.start_failed(Instant::now(), "refused".into());
    stream_on(&mut p, 1, &mut sent);
    (p, sent)
}

/// Ends the running session and answers the classification probe with `reachable`.
fn lose(p: &mut OutputPolicy, reachable: bool) {
    let was_streaming = p.streaming();
    let OutputAction::Probe { id, upstreams } = p.session_ended(Some("eof".into())) else {
        panic!("a failure is classified by a probe");
    };
    // The failure shows at once, before the probe answers (a streaming session's end is
    // a loss, so the stream leaves `streaming` for `reconnecting` in one step).
    let provisional = if was_streaming {
        "upstream_lost"
    } else {
        "upstream_refused"
    };
    assert_eq!(p.failure().map(Reason::code), Some(provisional));
    assert!(!p.streaming());
    assert_eq!(upstreams, vec![p.current()]);
    let found = reachable.then_some(p.current());
    p.probe_result(Instant::now(), id, found);
}

#[tokio::test(start_paused = true)]
async fn fails_over_in_list_order_then_backs_off_on_the_primary() {
    let mut p = policy(3, OutputTiming::default());
    let sent = 0;
    for index in 0..3 {
        assert_eq!(
            p.poll(Instant::now(), feed(sent)),
            Some(OutputAction::Start { index })
        );
        p.start_failed(Instant::now(), "refused".into());
        assert_eq!(p.failure().map(Reason::code), Some("upstream_refused"));
    }
    // A whole round failed: back to the primary after a delay, not at once.
    assert_eq!(p.current(), 0);
    let wait = p.retry_in(Instant::now()).expect("waiting");
    assert!(
        wait >= Duration::from_millis(250) && wait <= Duration::from_millis(500),
        "{wait:?}"
    );
    assert_eq!(p.poll(Instant::now(), feed(sent)), None);
    advance(wait).await;
    assert_eq!(
        p.poll(Instant::now(), feed(sent)),
        Some(OutputAction::Start { index: 0 })
    );
    assert_eq!(p.restarts(), 3);
}

#[tokio::test(start_paused = true)]
async fn backoff_doubles_up_to_the_cap_and_resets_after_a_stable_session() {
    let timing = OutputTiming {
        backoff_cap: Duration::from_secs(4),
        ..OutputTiming::default()
    };
    let mut p = policy(1, timing);
    let mut waits = Vec::new();
    for _ in 0..6 {
        assert!(matches!(
            p.poll(Instant::now(), feed(0)),
            Some(OutputAction::Start { .. })
        ));
        p.start_failed(Instant::now(), "refused".into());
        let wait = p.retry_in(Instant::now()).expect("waiting");
        waits.push(wait);
        advance(wait).await;
    }
    let fulls = [500u64, 1000, 2000, 4000, 4000, 4000];
    for (wait, full) in waits.iter().zip(fulls) {
        let full = Duration::from_millis(full);
        assert!(*wait >= full / 2 && *wait <= full, "{waits:?}");
    }
    assert_eq!(p.attempt(), 6);
    let mut sent = 0;
    stream_on(&mut p, 0, &mut sent);
    advance(Duration::from_secs(9)).await;
    sent += 1;
    p.poll(Instant::now(), feed(sent));
    assert_eq!(p.attempt(), 6, "not stable yet");
    advance(Duration::from_secs(1)).await;
    sent += 1;
    p.poll(Instant::now(), feed(sent));
    assert_eq!(p.attempt(), 0, "reset after 10 s of streaming");
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_upstream_is_probed_fast_and_started_as_soon_as_it_answers() {
    let timing = OutputTiming {
        backoff_base: Duration::from_secs(60),
        backoff_cap: Duration::from_secs(60),
        ..OutputTiming::default()
    };
    let mut p = policy(1, timing);
    let mut sent = 0;
    stream_on(&mut p, 0, &mut sent);
    lose(&mut p, false);
    assert_eq!(p.failure().map(Reason::code), Some("upstream_unreachable"));
    // Probes come every 25–50 ms while the backoff delay runs.
    let mut probes = 0;
    let mut last = Instant::now();
    while probes < 20 {
        match p.poll(Instant::now(), feed(sent)) {
            Some(OutputAction::Probe { id, upstreams }) => {
                assert_eq!(upstreams, vec![0]);
                let gap = Instant::now().duration_since(last);
                assert!(
                    probes == 0
                        || (gap >= Duration::from_millis(25) && gap <= Duration::from_millis(50)),
                    "{gap:?}"
                );
                last = Instant::now();
                probes += 1;
                if probes == 20 {
                    // The upstream is back: the start follows on the same poll round.
                    p.probe_result(Instant::now(), id, Some(0));
                } else {
                    p.probe_result(Instant::now(), id, None);
                }
            }
            Some(OutputAction::Start { .. }) => panic!("started before the upstream answered"),
            _ => {}
        }
        let next = p.next_deadline().expect("a deadline while waiting");
        if probes < 20 {
            tokio::time::advance(next.saturating_duration_since(Instant::now())).await;
        }
    }
    assert_eq!(
        p.poll(Instant::now(), feed(sent)),
        Some(OutputAction::Start { index: 0 })
    );
}

#[tokio::test(start_paused = true)]
async fn probing_slows_down_thirty_seconds_into_an_outage() {
    let timing = OutputTiming {
        backoff_cap: Duration::from_secs(60),
        backoff_base: Duration::from_secs(60),
        ..OutputTiming::default()
    };
    let mut p = policy(1, timing);
    let mut sent = 0;
    stream_on(&mut p, 0, &mut sent);
    lose(&mut p, false);
    let mut gaps = Vec::new();
    let t0 = Instant::now();
    let mut last = t0;
    while Instant::now().duration_since(t0) < Duration::from_secs(40) {
        if let Some(OutputAction::Probe { id, .. }) = p.poll(Instant::now(), feed(sent)) {
            gaps.push((Instant::now(), Instant::now().duration_since(last)));
            last = Instant::now();
            p.probe_result(Instant::now(), id, None);
        }
        let next = p.next_deadline().expect("deadline");
        advance(
            next.saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        )
        .await;
    }
    let late: Vec<_> = gaps.iter().rev().take(3).map(|(_, g)| *g).collect();
    for g in late {
        assert!(
            g >= Duration::from_secs(1) && g <= Duration::from_secs(2),
            "{g:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_refusing_upstream_is_not_probed() {
    let mut p = policy(1, OutputTiming::default());
    assert!(matches!(
        p.poll(Instant::now(), feed(0)),
        Some(OutputAction::Start { .. })
    ));
    p.started(Instant::now(), 0);
    // Ended before any frame went out, with the server accepting TCP: refused.
    lose(&mut p, true);
    assert_eq!(p.failure().map(Reason::code), Some("upstream_refused"));
    let wait = p.retry_in(Instant::now()).expect("waiting");
    for _ in 0..10 {
        assert_eq!(p.poll(Instant::now(), feed(0)), None);
        advance(wait / 20).await;
    }
    advance(wait).await;
    assert!(matches!(
        p.poll(Instant::now(), feed(0)),
        Some(OutputAction::Start { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_session_that_never_sends_or_stops_sending_is_abandoned() {
    let mut p = policy(1, OutputTiming::default());
    assert!(matches!(
        p.poll(Instant::now(), feed(0)),
        Some(OutputAction::Start { .. })
    ));
    p.started(Instant::now(), 0);
    advance(Duration::from_secs(10)).await;
    assert_eq!(
        p.poll(Instant::now(), feed(0)),
        None,
        "within the connect timeout"
    );
    advance(Duration::from_millis(1)).await;
    assert_eq!(p.poll(Instant::now(), feed(0)), Some(OutputAction::Abandon));
    assert_eq!(p.failure().map(Reason::code), Some("output_stalled"));

    let mut p = policy(1, OutputTiming::default());
    let mut sent = 0;
    stream_on(&mut p, 0, &mut sent);
    // The encoder is idle (camera restarting): no stall however long nothing is sent.
    advance(Duration::from_secs(20)).await;
    let idle = Feed {
        encoding: false,
        ..feed(sent)
    };
    assert_eq!(p.poll(Instant::now(), idle), None);
    // The encoder produces but nothing is taken for over 3 s: stalled.
    advance(Duration::from_secs(1)).await;
    assert_eq!(
        p.poll(Instant::now(), feed(sent)),
        Some(OutputAction::Abandon)
    );
}

#[tokio::test(start_paused = true)]
async fn fails_back_once_the_primary_answered_for_the_whole_hysteresis() {
    let timing = OutputTiming {
        failback_after: Some(Duration::from_secs(30)),
        ..OutputTiming::default()
    };
    let (mut p, mut sent) = on_the_secondary(timing);

    // The primary answers, then misses the probes between 20 s and 28 s (probes come
    // every 5-7.5 s, so at least one), then answers again: the 30 s count starts over.
    let started = Instant::now();
    let mut reachable_from = None;
    let switched = loop {
        sent += 1;
        let now = Instant::now();
        match p.poll(now, feed(sent)) {
            Some(OutputAction::Probe { id, upstreams }) => {
                assert_eq!(upstreams, vec![0], "only earlier upstreams are probed");
                let t = now.duration_since(started);
                let up = !(t >= Duration::from_secs(20) && t < Duration::from_secs(28));
                if up && reachable_from.is_none() {
                    reachable_from = Some(now);
                }
                if !up {
                    reachable_from = None;
                }
                p.probe_result(now, id, up.then_some(0));
            }
            Some(OutputAction::SwitchTo { index }) => break (index, now),
            Some(other) => panic!("unexpected {other:?}"),
            None => {}
        }
        assert!(
            now.duration_since(started) < Duration::from_secs(120),
            "never failed back"
        );
        advance(Duration::from_millis(200)).await;
    };
    assert_eq!(switched.0, 0);
    let held = switched
        .1
        .duration_since(reachable_from.expect("reachable"));
    assert!(
        held >= Duration::from_secs(30) && held < Duration::from_secs(38),
        "{held:?}"
    );
    assert!(
        switched.1.duration_since(started) >= Duration::from_secs(50),
        "the miss reset the count"
    );
    // The stream counts as streaming while it changes servers; the new session streams.
    assert!(p.streaming());
    p.started(Instant::now(), sent);
    sent += 1;
    assert_eq!(p.poll(Instant::now(), feed(sent)), None);
    assert_eq!(p.current(), 0);
    assert!(p.failure().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_failed_failback_walks_the_list_again() {
    let timing = OutputTiming {
        failback_after: Some(Duration::from_secs(6)),
        ..OutputTiming::default()
    };
    let (mut p, mut sent) = on_the_secondary(timing);
    let index = loop {
        sent += 1;
        match p.poll(Instant::now(), feed(sent)) {
            Some(OutputAction::Probe { id, .. }) => p.probe_result(Instant::now(), id, Some(0)),
            Some(OutputAction::SwitchTo { index }) => break index,
            _ => {}
        }
        advance(Duration::from_millis(100)).await;
    };
    assert_eq!(index, 0);
    p.start_failed(Instant::now(), "404".into());
    assert_eq!(p.failure().map(Reason::code), Some("upstream_refused"));
    assert_eq!(
        p.poll(Instant::now(), feed(sent)),
        Some(OutputAction::Start { index: 1 }),
        "back to the secondary at once"
    );
}

#[tokio::test(start_paused = true)]
async fn no_failback_when_off_or_on_the_primary() {
    let timing = OutputTiming {
        failback_after: None,
        ..OutputTiming::default()
    };
    let (mut p, mut sent) = on_the_secondary(timing);
    for _ in 0..100 {
        sent += 1;
        assert_eq!(p.poll(Instant::now(), feed(sent)), None);
        advance(Duration::from_secs(1)).await;
    }
    let mut p = policy(2, OutputTiming::default());
    stream_on(&mut p, 0, &mut sent);
    assert_eq!(
        p.next_deadline(),
        None,
        "nothing earlier than the primary to probe"
    );
}

#[tokio::test(start_paused = true)]
async fn a_session_whose_peer_confirms_nothing_is_abandoned() {
    let mut p = policy(1, OutputTiming::default());
    let mut sent = 0;
    stream_on(&mut p, 0, &mut sent);
    // Frames keep being taken (SRT's sender buffer accepts them) but nothing comes back.
    for ms in [1000u64, 2000, 3000] {
        sent += 15;
        advance(Duration::from_secs(1)).await;
        let silent = Feed {
            unconfirmed_for: Duration::from_millis(ms),
            ..feed(sent)
        };
        assert_eq!(p.poll(Instant::now(), silent), None, "at {ms} ms");
    }
    sent += 15;
    advance(Duration::from_millis(100)).await;
    let silent = Feed {
        unconfirmed_for: Duration::from_millis(3100),
        ..feed(sent)
    };
    let Some(OutputAction::Lost { id, upstreams }) = p.poll(Instant::now(), silent) else {
        panic!("a silent peer is a lost session");
    };
    assert_eq!(upstreams, vec![0]);
    assert_eq!(p.failure().map(Reason::code), Some("upstream_lost"));
    // Nothing answers the probe: unreachable, waited for by fast probing.
    p.probe_result(Instant::now(), id, None);
    assert_eq!(p.failure().map(Reason::code), Some("upstream_unreachable"));
}

#[tokio::test(start_paused = true)]
async fn a_session_streams_only_once_its_peer_confirmed_something() {
    let mut p = policy(1, OutputTiming::default());
    assert!(matches!(
        p.poll(Instant::now(), feed(0)),
        Some(OutputAction::Start { .. })
    ));
    p.started(Instant::now(), 0);
    let unconfirmed = Feed {
        confirmed: false,
        ..feed(20)
    };
    assert_eq!(p.poll(Instant::now(), unconfirmed), None);
    assert!(!p.streaming(), "frames taken, nothing acknowledged");
    assert_eq!(p.poll(Instant::now(), feed(21)), None);
    assert!(p.streaming());
}
