//! The capture policy under paused time: start, stall, backoff, escalation, device loss,
//! encoder demotion.

use std::time::Duration;

use tokio::time::{Instant, advance};

use super::*;

fn policy(timing: CaptureTiming) -> CapturePolicy {
    CapturePolicy::new(timing, fastrand::Rng::with_seed(3), Instant::now())
}

fn frames(captured: u64, encoded: u64) -> Frames {
    Frames { captured, encoded }
}

fn error() -> Reason {
    Reason::CaptureError {
        message: "boom".into(),
    }
}

/// Lets a due start happen and the pipeline come up.
async fn start(p: &mut CapturePolicy, f: Frames) {
    if let Some(at) = p.next_deadline() {
        advance(at.saturating_duration_since(Instant::now())).await;
    }
    assert_eq!(p.poll(Instant::now(), f), Some(CaptureAction::Start));
    p.started(Instant::now(), f);
}

#[tokio::test(start_paused = true)]
async fn a_stall_is_detected_after_the_timeout_and_the_first_frame_gets_a_grace() {
    let mut p = policy(CaptureTiming::default());
    start(&mut p, frames(0, 0)).await;
    // No first frame: stall_timeout (5 s) + grace (10 s).
    advance(Duration::from_secs(15)).await;
    assert_eq!(p.poll(Instant::now(), frames(0, 0)), None);
    advance(Duration::from_millis(1)).await;
    assert_eq!(
        p.poll(Instant::now(), frames(0, 0)),
        Some(CaptureAction::Fail(Reason::CaptureStalled { seconds: 5 }))
    );
    assert_eq!(p.failure().map(Reason::code), Some("capture_stalled"));

    let mut p = policy(CaptureTiming::default());
    start(&mut p, frames(0, 0)).await;
    advance(Duration::from_secs(1)).await;
    assert_eq!(p.poll(Instant::now(), frames(30, 30)), None);
    assert!(p.encoding(Instant::now()));
    advance(Duration::from_secs(5)).await;
    assert_eq!(
        p.poll(Instant::now(), frames(30, 30)),
        None,
        "5 s exactly is not over"
    );
    assert!(!p.encoding(Instant::now()));
    advance(Duration::from_millis(1)).await;
    assert!(matches!(
        p.poll(Instant::now(), frames(30, 30)),
        Some(CaptureAction::Fail(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn restarts_back_off_and_a_stable_run_resets_the_backoff() {
    let mut p = policy(CaptureTiming::default());
    let mut waits = Vec::new();
    let mut f = frames(0, 0);
    for _ in 0..6 {
        start(&mut p, f).await;
        f.encoded += 10;
        p.poll(Instant::now(), f);
        p.failed(error(), Origin::Other, f);
        assert_eq!(p.stopped(Instant::now(), true, false), None);
        waits.push(p.retry_in(Instant::now()).expect("scheduled"));
    }
    for (wait, full) in waits.iter().zip([500u64, 1000, 2000, 4000, 8000, 10_000]) {
        let full = Duration::from_millis(full);
        assert!(*wait >= full / 2 && *wait <= full, "{waits:?}");
    }
    assert!(!p.escalated(), "every run produced frames");
    start(&mut p, f).await;
    for _ in 0..11 {
        advance(Duration::from_secs(1)).await;
        f.encoded += 30;
        assert_eq!(p.poll(Instant::now(), f), None);
    }
    assert_eq!(p.attempt(), 0);
    assert!(
        p.failure().is_none(),
        "cleared by the restarted pipeline's frames"
    );
}

#[tokio::test(start_paused = true)]
async fn runs_without_frames_escalate_and_a_frame_ends_it() {
    let timing = CaptureTiming {
        escalate_after: 3,
        ..CaptureTiming::default()
    };
    let mut p = policy(timing);
    for n in 1..=3u32 {
        assert!(!p.escalated(), "after {} failed runs", n - 1);
        start(&mut p, frames(0, 0)).await;
        p.failed(error(), Origin::Other, frames(0, 0));
        p.stopped(Instant::now(), true, false);
        assert_eq!(p.failed_runs(), n);
    }
    assert!(p.escalated());
    // A frame from the next run ends the escalation.
    start(&mut p, frames(0, 0)).await;
    p.poll(Instant::now(), frames(1, 1));
    assert!(!p.escalated());
    assert_eq!(p.failed_runs(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_vanished_device_is_awaited_and_does_not_escalate() {
    let timing = CaptureTiming {
        escalate_after: 2,
        ..CaptureTiming::default()
    };
    let mut p = policy(timing);
    for _ in 0..2 {
        start(&mut p, frames(0, 0)).await;
        p.start_failed(error(), Origin::Other);
        p.stopped(Instant::now(), true, false);
    }
    assert!(p.escalated());
    start(&mut p, frames(0, 0)).await;
    p.failed(error(), Origin::Other, frames(0, 0));
    assert_eq!(p.stopped(Instant::now(), false, false), None);
    assert!(p.awaiting_device());
    assert!(
        !p.escalated(),
        "a missing device is being waited for, not failing"
    );
    assert_eq!(p.retry_in(Instant::now()), None);
    assert_eq!(p.next_deadline(), None);
    advance(Duration::from_secs(300)).await;
    assert_eq!(
        p.poll(Instant::now(), frames(0, 0)),
        None,
        "no blind retries"
    );
    p.device_back(Instant::now());
    assert_eq!(
        p.poll(Instant::now(), frames(0, 0)),
        Some(CaptureAction::Start)
    );
}

#[tokio::test(start_paused = true)]
async fn a_hung_start_is_a_failure() {
    let mut p = policy(CaptureTiming::default());
    assert_eq!(
        p.poll(Instant::now(), frames(0, 0)),
        Some(CaptureAction::Start)
    );
    advance(Duration::from_secs(20)).await;
    assert_eq!(p.poll(Instant::now(), frames(0, 0)), None);
    advance(Duration::from_millis(1)).await;
    let action = p.poll(Instant::now(), frames(0, 0));
    assert!(
        matches!(&action, Some(CaptureAction::Fail(Reason::CaptureError { message })) if message.contains("20 s")),
        "{action:?}"
    );
    assert_eq!(p.failed_runs(), 1);
}

#[tokio::test(start_paused = true)]
async fn encoder_failures_in_a_row_demote_the_encoder_when_another_exists() {
    let mut p = policy(CaptureTiming::default());
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        start(&mut p, frames(0, 0)).await;
        // Raw frames went in, nothing came out: the encoder is blamed.
        p.poll(Instant::now(), frames(20, 0));
        advance(Duration::from_secs(16)).await;
        assert!(matches!(
            p.poll(Instant::now(), frames(40, 0)),
            Some(CaptureAction::Fail(_))
        ));
        outcomes.push(p.stopped(Instant::now(), true, true));
    }
    assert_eq!(outcomes, [None, None, Some(CaptureAction::Demote)]);
    p.demoted(Instant::now());
    assert_eq!(
        p.poll(Instant::now(), frames(40, 0)),
        Some(CaptureAction::Start),
        "at once"
    );

    // Without another encoder, the current one keeps being retried.
    let mut p = policy(CaptureTiming::default());
    for _ in 0..5 {
        start(&mut p, frames(0, 0)).await;
        p.failed(error(), Origin::Encoder, frames(0, 0));
        assert_eq!(p.stopped(Instant::now(), true, false), None);
    }
    // A failure blamed elsewhere breaks the series.
    let mut p = policy(CaptureTiming::default());
    for origin in [
        Origin::Encoder,
        Origin::Encoder,
        Origin::Other,
        Origin::Encoder,
    ] {
        start(&mut p, frames(0, 0)).await;
        p.failed(error(), origin, frames(0, 0));
        assert_eq!(p.stopped(Instant::now(), true, true), None, "{origin:?}");
    }
}
