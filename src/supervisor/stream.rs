//! One stream's supervisor task: chooses the encoder, carries out the capture and output
//! policies' decisions, derives the stream's state from them, raises events, answers
//! commands and stops cleanly. Its loop never waits on I/O inline: camera opens,
//! pipeline starts and stops, probes and encoder trials are futures polled beside the
//! commands, so the stream answers while any of them runs.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info};

use super::SupervisorError;
use super::capture_side::{CaptureEvent, CaptureSide};
use super::extra_outputs::ExtraOutputs;
use super::handle::{StreamCommand, StreamHandle};
use super::meta::StreamMeta;
use super::next_of;
use super::output_side::{OutputEvent, OutputSide};
use super::recording_side::{RecordingEvent, RecordingSide};
use crate::config::StreamConfig;
use crate::encoder::{EncoderError, EncoderKind, EncoderParams, Rejection, Selection, Selector};
use crate::events::{Events, Kind, Level};
use crate::pipeline::{Counters, FeedSlot, RateMeter};
use crate::policy::{BitrateChange, BitratePolicy, CaptureAction, Reason, State, Status};
use crate::serve::ServeInfo;

const TICK: Duration = Duration::from_millis(200);
const COMMAND_QUEUE: usize = 16;
/// Shutdown budget for one stream (the daemon must be gone within 2 s of SIGTERM).
const STOP_BUDGET: Duration = Duration::from_millis(1400);
/// Bitrates a running stream accepts, kbit/s (as in the configuration).
pub const BITRATE_RANGE: std::ops::RangeInclusive<u32> = crate::config::BITRATE_KBPS;

/// Settings of a supervisor that do not come from its stream's configuration.
#[derive(Clone, Default)]
pub struct Tuning {
    /// Failed capture runs in a row (device present) after which the stream counts as
    /// escalated to the watchdog; 0 keeps the policy's default.
    pub escalate_after: u32,
    /// Fault injection for tests: once streaming, the supervisor stops answering, as a
    /// task stuck in a call would.
    pub hang: bool,
    /// The daemon's state directory (recordings live under it).
    pub state_dir: std::path::PathBuf,
    /// Every stream's raw picture, for sub-streams (`stream:<id>` sources).
    pub pictures: Arc<crate::pipeline::PictureHub>,
}

/// Owns one stream from configuration to shutdown.
pub struct StreamSupervisor {
    pub(super) config: StreamConfig,
    selector: Arc<Selector>,
    pub(super) events: Events,
    pub(super) counters: Arc<Counters>,
    commands: mpsc::Receiver<StreamCommand>,
    commands_open: bool,
    pub(super) status: watch::Sender<Status>,
    pub(super) meta: watch::Sender<Option<StreamMeta>>,
    pub(super) selection: Option<Selection>,
    /// Encoders given up on at run time, with why, for this stream's life.
    demoted: Vec<Rejection>,
    pub(super) rates: RateMeter,
    last_rate: Instant,
    /// Restarts counted by sides that no longer exist (a stream restart keeps totals).
    pub(super) restarts_before: (u64, u64),
    pub(super) ever_streamed: bool,
    was_streaming: bool,
    /// Congestion episodes already reported as events.
    pub(super) congestion_seen: u64,
    pub(super) tracker: TaskTracker,
    pub(super) tuning: Tuning,
    /// Counters of the `[[stream.output]]` destinations by name (totals outlive runs).
    pub(super) output_counters: std::collections::HashMap<String, Arc<Counters>>,
    /// Where the encoded frames go, for the stream's whole life: the outputs of each run
    /// attach to it, and so do the local server's clients, who outlive runs.
    pub(super) slot: Arc<FeedSlot>,
    /// The local server serves this stream.
    serving: Option<ServeInfo>,
}

/// What the stream is doing.
pub(super) enum Phase {
    /// Choosing the encoder.
    Selecting(BoxFuture<'static, Result<Selection, EncoderError>>),
    Running(Box<Sides>),
    /// Stopped on purpose, or failed: only answers commands.
    Idle,
}

pub(super) struct Sides {
    pub capture: CaptureSide,
    /// The stream's own `upstream` list: the stream's state, recording and adaptive
    /// bitrate follow it.
    pub output: OutputSide,
    /// The `[[stream.output]]` destinations, published at the same time.
    pub outputs: ExtraOutputs,
    pub recording: RecordingSide,
    /// Adaptive bitrate, once the encoder runs (none for passthrough or when off).
    pub bitrate: Option<BitratePolicy>,
    /// Stopped, but the capture runs on: a sub-stream takes its picture. Outputs and
    /// recording are stopped and nothing is handed over.
    pub parked: bool,
    /// Choosing a replacement for an encoder that keeps failing.
    pub(super) reselecting: Option<BoxFuture<'static, Result<Selection, EncoderError>>>,
}

/// Why the main loop returned.
pub(super) enum Exit {
    Shutdown,
    Stop(Option<Reply<()>>),
    Restart(Option<Reply<()>>),
    Start(Reply<()>),
}

type Reply<T> = tokio::sync::oneshot::Sender<Result<T, super::HandleError>>;

/// What woke the loop.
enum Woke {
    Shutdown,
    Command(Option<StreamCommand>),
    Selected(Result<Selection, EncoderError>),
    Reselected(Result<Selection, EncoderError>),
    Capture(CaptureEvent),
    Output(OutputEvent),
    /// From the `i`th of the more outputs.
    Extra(usize, OutputEvent),
    Recording(RecordingEvent),
    Timer,
}

impl StreamSupervisor {
    /// Creates the supervisor and the handle to talk to it.
    pub fn new(
        config: StreamConfig,
        selector: Arc<Selector>,
        events: Events,
        tracker: TaskTracker,
        tuning: Tuning,
    ) -> (Self, StreamHandle) {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let (status, status_rx) = watch::channel(Status::new(State::Starting));
        let (meta, meta_rx) = watch::channel(None);
        let handle = StreamHandle::new(config.id.clone(), tx, status_rx, meta_rx);
        let sup = StreamSupervisor {
            config,
            selector,
            events,
            counters: Arc::new(Counters::default()),
            commands: rx,
            commands_open: true,
            status,
            meta,
            selection: None,
            demoted: Vec::new(),
            rates: RateMeter::default(),
            last_rate: Instant::now(),
            restarts_before: (0, 0),
            ever_streamed: false,
            was_streaming: false,
            congestion_seen: 0,
            tracker,
            tuning,
            output_counters: std::collections::HashMap::new(),
            slot: Arc::new(FeedSlot::default()),
            serving: None,
        };
        (sup, handle)
    }

    /// The slot the stream's encoded frames are handed to.
    pub fn slot(&self) -> Arc<FeedSlot> {
        self.slot.clone()
    }

    /// The local server serves this stream (`info` is what its statistics report).
    pub fn set_serving(&mut self, info: ServeInfo) {
        self.serving = Some(info);
    }

    pub(super) fn serving(&self) -> Option<&ServeInfo> {
        self.serving.as_ref()
    }

    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), SupervisorError> {
        let mut running = true;
        loop {
            let mut phase = if running {
                self.set(Status::new(State::Starting));
                Phase::Selecting(self.select())
            } else {
                Phase::Idle
            };
            let exit = self.serve(&shutdown, &mut phase).await;
            if let Phase::Running(sides) = &mut phase {
                self.finish(sides).await;
            }
            match exit {
                Exit::Shutdown => break,
                Exit::Stop(reply) => {
                    running = false;
                    self.set(Status::new(State::Stopped));
                    reply.map(|r| r.send(Ok(())));
                }
                Exit::Restart(reply) => {
                    running = true;
                    reply.map(|r| r.send(Ok(())));
                }
                Exit::Start(reply) => {
                    running = true;
                    let _ = reply.send(Ok(()));
                }
            }
        }
        self.set(Status::new(State::Stopped));
        Ok(())
    }

    /// The encoder choice for the configured size and rate, leaving out demoted ones.
    fn select(&self) -> BoxFuture<'static, Result<Selection, EncoderError>> {
        let (selector, choice, params) =
            (self.selector.clone(), self.config.encoder, self.params());
        let excluded: Vec<EncoderKind> = self.demoted_kinds();
        async move { selector.select(choice, &params, &excluded).await }.boxed()
    }

    fn demoted_kinds(&self) -> Vec<EncoderKind> {
        self.demoted
            .iter()
            .filter_map(|r| EncoderKind::from_element(r.element))
            .collect()
    }

    /// Logs the final figures and tears both sides down, concurrently and bounded.
    async fn finish(&mut self, sides: &mut Sides) {
        self.stats(Some(sides)).log("final");
        tokio::join!(
            sides.output.stop(STOP_BUDGET),
            sides.outputs.stop(STOP_BUDGET),
            sides.capture.stop(STOP_BUDGET),
            sides.recording.stop(STOP_BUDGET)
        );
        self.restarts_before.0 += sides.output.policy.restarts();
        self.restarts_before.1 += sides.capture.policy.restarts();
        self.meta.send_replace(None);
        info!(stream = %self.config.id, "stopped");
    }

    pub(super) fn params(&self) -> EncoderParams {
        let c = &self.config;
        EncoderParams {
            width: c.width,
            height: c.height,
            framerate: c.framerate,
            bitrate_kbps: c.bitrate_kbps,
            keyframe_interval: c.keyframe_interval,
        }
    }

    /// The main loop of one run (or of a stopped or failed stream).
    async fn serve(&mut self, shutdown: &CancellationToken, phase: &mut Phase) -> Exit {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.tuning.hang && self.was_streaming {
                // A supervisor stuck in a call answers nothing, not even shutdown.
                error!(stream = %self.config.id, "fault injection: supervisor hangs");
                std::future::pending::<()>().await;
            }
            let now = Instant::now();
            // A deadline already passed was looked at by the last step; the tick covers it.
            let deadline = deadline(phase).filter(|d| *d > now).unwrap_or(now + TICK);
            let woke = {
                let (selecting, sides) = match phase {
                    Phase::Selecting(f) => (Some(f), None),
                    Phase::Running(s) => (None, Some(&mut **s)),
                    Phase::Idle => (None, None),
                };
                let (capture, output, outputs, recording, reselecting) = match sides {
                    Some(Sides {
                        capture,
                        output,
                        outputs,
                        recording,
                        reselecting,
                        ..
                    }) => (
                        Some(capture),
                        Some(output),
                        Some(outputs),
                        Some(recording),
                        Some(reselecting),
                    ),
                    None => (None, None, None, None, None),
                };
                tokio::select! {
                    _ = shutdown.cancelled() => Woke::Shutdown,
                    cmd = self.commands.recv(), if self.commands_open => Woke::Command(cmd),
                    r = async { match selecting { Some(f) => f.await, None => std::future::pending().await } } => Woke::Selected(r),
                    r = async { match reselecting { Some(r) => next_of(r).await, None => std::future::pending().await } } => Woke::Reselected(r),
                    ev = async { match capture { Some(c) => c.next_event().await, None => std::future::pending().await } } => Woke::Capture(ev),
                    ev = async { match output { Some(o) => o.next_event().await, None => std::future::pending().await } } => Woke::Output(ev),
                    (i, ev) = async { match outputs { Some(o) => o.next_event().await, None => std::future::pending().await } } => Woke::Extra(i, ev),
                    ev = async { match recording { Some(r) => r.next_event().await, None => std::future::pending().await } } => Woke::Recording(ev),
                    _ = tokio::time::sleep_until(deadline) => Woke::Timer,
                    _ = tick.tick() => Woke::Timer,
                }
            };
            let now = Instant::now();
            match woke {
                Woke::Shutdown => return Exit::Shutdown,
                Woke::Command(None) => self.commands_open = false,
                Woke::Command(Some(cmd)) => {
                    if let Some(exit) = self.handle(cmd, phase).await {
                        return exit;
                    }
                }
                Woke::Selected(r) => self.on_selected(phase, r),
                Woke::Reselected(r) => {
                    if let Phase::Running(s) = phase {
                        self.on_reselected(s, r).await;
                    }
                }
                Woke::Capture(ev) => {
                    if let Phase::Running(s) = phase {
                        self.on_capture(s, ev, now);
                    }
                }
                Woke::Output(ev) => {
                    if let Phase::Running(s) = phase {
                        s.output.on_event(now, ev);
                    }
                }
                Woke::Extra(i, ev) => {
                    if let Phase::Running(s) = phase {
                        s.outputs.on_event(i, now, ev);
                    }
                }
                Woke::Recording(ev) => {
                    if let Phase::Running(s) = phase {
                        match ev {
                            RecordingEvent::Recorder(ev) => s.recording.on_recorder(ev),
                            RecordingEvent::Backfilled(done) => {
                                s.recording.on_backfilled(now, done).await;
                            }
                            RecordingEvent::BackfillLost => s.recording.on_backfill_lost(now),
                        }
                    }
                }
                Woke::Timer => {}
            }
            if let Phase::Running(s) = phase {
                if s.parked {
                    if !self.tuning.pictures.tap(&self.config.id).wanted() {
                        info!(stream = %self.config.id, "no sub-stream takes the picture any more; stopping the capture");
                        return Exit::Stop(None);
                    }
                    self.step_capture(s, Instant::now());
                    continue;
                }
                if let Some(change) = self.step(s) {
                    self.apply_bitrate(s, change).await;
                }
                self.publish(s);
            }
        }
    }

    /// `selection` with the encoders demoted at run time listed among the rejected (the
    /// selector leaves them out without saying so).
    fn with_demoted(&self, mut selection: Selection) -> Selection {
        selection
            .rejected
            .retain(|r| !self.demoted.iter().any(|d| d.element == r.element));
        selection.rejected.extend(self.demoted.iter().cloned());
        selection
    }

    fn on_selected(&mut self, phase: &mut Phase, result: Result<Selection, EncoderError>) {
        let id = self.config.id.clone();
        match result {
            Ok(selection) => {
                let selection = self.with_demoted(selection);
                if !selection.hardware && selection.rejected.iter().any(|r| r.element != "x264enc")
                {
                    let tried: Vec<_> = selection.rejected.iter().map(|r| r.element).collect();
                    self.events.raise(
                        Level::Warning,
                        Kind::EncoderFallback,
                        Some(&id),
                        format!(
                            "using software encoder {}; not usable: {}",
                            selection.element,
                            tried.join(", ")
                        ),
                    );
                }
                let sides = self.make_sides(&selection);
                self.selection = Some(selection);
                *phase = Phase::Running(Box::new(sides));
            }
            Err(e) => {
                error!(stream = %id, error = %e, "stream cannot run; run `edgecam probe` to see this board's encoders");
                let mut status = Status::new(State::Failed);
                status.reason = Some(Reason::EncoderUnavailable {
                    message: e.to_string(),
                });
                self.set(status);
                *phase = Phase::Idle;
            }
        }
    }

    /// Runs the policies on the current counters and carries out what they decide;
    /// returns a bitrate change for the caller to apply.
    fn step(&mut self, s: &mut Sides) -> Option<BitrateChange> {
        let now = Instant::now();
        let frames = s.capture.frames();
        let mut bitrate = None;
        if now.duration_since(self.last_rate) >= Duration::from_secs(1) {
            self.last_rate = now;
            self.rates.record(
                now.into_std(),
                frames.encoded,
                Counters::get(&self.counters.bytes_encoded),
            );
            self.report_congestion(s);
            bitrate = self.adapt(s, now);
        }
        self.step_capture(s, now);
        let encoding = s.capture.policy.encoding(now);
        let caps = s.capture.encoded_caps();
        if s.output.step(now, encoding, caps.clone()) {
            self.events.raise(
                Level::Info,
                Kind::UpstreamFailback,
                Some(&self.config.id),
                format!(
                    "switching back to {} (reachable for {} s)",
                    s.output.policy.upstream(),
                    self.config.failback_after_s
                ),
            );
        }
        s.outputs
            .step(now, encoding, caps, &self.events, &self.config.id);
        let up = s.output.policy.streaming() && s.output.confirmed();
        // Live needs the whole link while it drops frames, or while adaptive bitrate
        // holds it below its configured bitrate.
        let congested = s.output.delivery().is_some_and(|(_, c)| c)
            || s.bitrate
                .as_ref()
                .is_some_and(|b| b.target() < self.config.bitrate_kbps);
        let upstream = self.config.upstream[s.output.policy.current()].clone();
        s.recording.step(now, up, congested, &upstream);
        let streaming = s.output.policy.connected_for(now).is_some();
        if streaming && !self.was_streaming {
            info!(stream = %self.config.id, upstream = %s.output.policy.upstream(), "streaming");
        }
        self.was_streaming = streaming;
        bitrate
    }

    /// Runs the capture policy and carries out what it decides.
    fn step_capture(&mut self, s: &mut Sides, now: Instant) {
        let had_failure = s.capture.policy.failure().is_some();
        if let Some(action) = s.capture.policy.poll(now, s.capture.frames()) {
            self.capture_action(s, action);
        }
        if had_failure && s.capture.policy.failure().is_none() {
            info!(stream = %self.config.id, "capture recovered");
        }
    }

    /// Stops the outputs and the recording of a running stream whose capture must run on
    /// for its sub-streams.
    pub(super) async fn park(&mut self, s: &mut Sides) {
        info!(stream = %self.config.id, "stopped; the capture runs on for the sub-streams that take its picture");
        s.parked = true;
        self.slot.set_paused(true);
        tokio::join!(
            s.output.stop(STOP_BUDGET),
            s.outputs.stop(STOP_BUDGET),
            s.recording.stop(STOP_BUDGET)
        );
        self.set(Status::new(State::Stopped));
    }

    fn capture_action(&mut self, s: &mut Sides, action: CaptureAction) {
        match action {
            CaptureAction::Start => s.capture.start(),
            CaptureAction::Fail(reason) => s.capture.recover(&reason),
            CaptureAction::Demote => {
                let failed = s.capture.spec.kind;
                let reason = s
                    .capture
                    .policy
                    .failure()
                    .map_or_else(|| "failed".to_owned(), |r| r.to_string());
                self.demoted.push(Rejection {
                    element: failed.element(),
                    reason: format!("failed repeatedly at run time: {reason}"),
                });
                s.reselecting = Some(self.select());
            }
        }
    }

    fn on_capture(&mut self, s: &mut Sides, ev: CaptureEvent, now: Instant) {
        match ev {
            CaptureEvent::Bus(ev) => {
                let (reason, origin) = s.capture.bus_failure(ev);
                s.capture
                    .policy
                    .failed(reason.clone(), origin, s.capture.frames());
                s.capture.recover(&reason);
            }
            CaptureEvent::Started(result) => {
                if let Some((reason, origin)) = s.capture.on_started(now, result) {
                    s.capture.policy.start_failed(reason.clone(), origin);
                    s.capture.recover(&reason);
                }
            }
            CaptureEvent::Stopped(slate) => {
                let present = s.capture.on_stopped(slate);
                let can_demote = self.can_demote(s.capture.spec.kind);
                if let Some(action) = s.capture.policy.stopped(now, present, can_demote) {
                    self.capture_action(s, action);
                }
            }
            CaptureEvent::DeviceBack => {
                info!(stream = %self.config.id, device = %self.config.source, "camera device is back");
                s.capture.policy.device_back(now);
            }
        }
    }

    /// Whether another catalog entry than `current` (and those already demoted) could
    /// serve this stream's configured encoder choice.
    fn can_demote(&self, current: EncoderKind) -> bool {
        let demoted = self.demoted_kinds();
        self.selector
            .candidates(self.config.encoder)
            .iter()
            .any(|k| *k != current && !demoted.contains(k))
    }

    async fn on_reselected(&mut self, s: &mut Sides, result: Result<Selection, EncoderError>) {
        s.reselecting = None;
        let now = Instant::now();
        match result {
            Ok(selection) => {
                let selection = self.with_demoted(selection);
                let previous = self.demoted.last().cloned();
                if let Some(p) = &previous {
                    self.events.raise(
                        Level::Warning,
                        Kind::EncoderFallback,
                        Some(&self.config.id),
                        format!("{} {}; using {}", p.element, p.reason, selection.element),
                    );
                }
                s.capture
                    .restart_with(selection.kind.spec(&self.params()))
                    .await;
                // Another encoder, at the configured bitrate: adaptation starts over.
                s.bitrate = None;
                self.selection = Some(selection);
                s.capture.policy.demoted(now);
            }
            Err(e) => {
                info!(stream = %self.config.id, error = %e, "no other encoder; keeping the current one");
                self.demoted.pop();
                s.capture.policy.demotion_refused(now);
            }
        }
    }
}

/// The earliest instant a policy of a running stream wants to be polled at.
fn deadline(phase: &Phase) -> Option<Instant> {
    let Phase::Running(s) = phase else {
        return None;
    };
    [
        s.capture.policy.next_deadline(),
        s.output.policy.next_deadline(),
        s.outputs.next_deadline(),
        s.recording.policy.next_deadline(),
    ]
    .into_iter()
    .flatten()
    .min()
}
