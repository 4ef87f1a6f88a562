//! Publishing one recorded segment on the backfill path, as its own session beside
//! live: the segment is read back, its frames are pushed in order at no more than
//! `backfill_kbps`, never with more than a short queue, and not at all while live is
//! held back (congested or down). The segment counts as delivered only once every byte
//! was acknowledged where the transport tells (TCP, SRT), after EOS; an RTSP session is
//! then closed with a TEARDOWN, which must be answered where nothing else confirms
//! delivery (RTSP over UDP).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use gstreamer as gst;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::config::Transport;
use crate::pipeline::{BusEvent, Counters, Output, OutputParams, Protocol, bus_events};
use crate::recording::Segment;
use crate::recording::reader::{self, Contents};

/// The most a backfill session keeps queued ahead of its transport.
const MAX_QUEUED: Duration = Duration::from_millis(500);
/// Pacing step of the sending thread.
const STEP: Duration = Duration::from_millis(5);
/// How long the sent segment may take to be acknowledged after its last frame.
const DRAIN_WAIT: Duration = Duration::from_secs(10);
const EOS_WAIT: Duration = Duration::from_secs(2);
/// How long the TEARDOWN's answer is waited for. rtspclientsink (1.22) often sends it
/// only when its receive loop next wakes (a server message, or its session keep-alive a
/// minute later): going to READY queues PAUSE then CLOSE, and a CLOSE queued after the
/// PAUSE was answered does not interrupt the loop the PAUSE left it in.
const TEARDOWN_WAIT: Duration = Duration::from_secs(3);

/// Why a backfill did not complete.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackfillError {
    #[error("cannot read the segment: {0}")]
    Read(String),
    #[error("the segment holds no frames")]
    Empty,
    #[error("cannot start the session: {0}")]
    Start(String),
    #[error("session failed: {0}")]
    Session(String),
    #[error("not acknowledged in time")]
    Unconfirmed,
    #[error("the session did not close cleanly: {0}")]
    Unclosed(&'static str),
    #[error("cancelled")]
    Cancelled,
}

/// Where and how to send.
#[derive(Debug, Clone)]
pub struct BackfillParams {
    pub url: String,
    pub transport: Transport,
    pub srt_passphrase: Option<String>,
    pub peers: Vec<std::net::SocketAddr>,
    pub kbps: u32,
}

/// What the supervisor sees of a running backfill.
#[derive(Debug, Default)]
pub struct Progress {
    /// Set while live needs the link: sending pauses.
    pub hold: AtomicBool,
    pub frames_total: AtomicU64,
    pub frames_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
}

/// Sends `segment`; returns once it is delivered, failed or `cancel` fired.
pub async fn send(
    segment: Segment,
    params: BackfillParams,
    progress: Arc<Progress>,
    cancel: CancellationToken,
) -> Result<(), BackfillError> {
    let (path, start) = (segment.path.clone(), segment.start_us);
    let contents = tokio::task::spawn_blocking(move || reader::read(&path, start))
        .await
        .map_err(|e| BackfillError::Read(e.to_string()))?
        .map_err(|e| BackfillError::Read(e.to_string()))?;
    let Some(caps) = contents
        .caps
        .clone()
        .filter(|_| !contents.frames.is_empty())
    else {
        return Err(BackfillError::Empty);
    };
    progress
        .frames_total
        .store(contents.frames.len() as u64, Ordering::Relaxed);
    let output_params = OutputParams {
        url: params.url.clone(),
        transport: params.transport,
        caps,
        // The pacing bounds the queue; the feed must never drop recorded frames.
        max_latency: Duration::from_secs(60),
        srt_passphrase: params.srt_passphrase.clone(),
        peers: params.peers.clone(),
        rate_control: false,
    };
    let output = tokio::task::spawn_blocking(move || {
        let output = Output::build(&output_params, Arc::new(Counters::default()))?;
        output.start().inspect_err(|_| output.shutdown())?;
        Ok::<_, crate::pipeline::PipelineError>(output)
    })
    .await
    .map_err(|e| BackfillError::Start(e.to_string()))?
    .map_err(|e| BackfillError::Start(crate::redact::redact(&e.to_string())))?;
    let mut events = Box::pin(bus_events(output.pipeline()));
    let result = deliver(&output, &mut events, contents, &params, progress, &cancel).await;
    let closing = output.clone();
    let _ = tokio::task::spawn_blocking(move || closing.shutdown()).await;
    result
}

async fn deliver(
    output: &Output,
    events: &mut (impl futures_util::Stream<Item = BusEvent> + Unpin),
    contents: Contents,
    params: &BackfillParams,
    progress: Arc<Progress>,
    cancel: &CancellationToken,
) -> Result<(), BackfillError> {
    let stop = cancel.child_token();
    let pushed = progress.clone();
    let sending = {
        let (output, stop, kbps) = (output.clone(), stop.clone(), params.kbps);
        tokio::task::spawn_blocking(move || push_paced(&output, contents, kbps, &progress, &stop))
    };
    let session_error = |ev: BusEvent| match ev {
        BusEvent::Error { message, .. } => Some(BackfillError::Session(message)),
        BusEvent::Eos | BusEvent::SessionClosed | BusEvent::SessionCloseFailed => {
            Some(BackfillError::Session("the session ended early".into()))
        }
    };
    // Push everything, unless the session fails or the backfill is cancelled.
    tokio::select! {
        sent = sending => {
            if !sent.unwrap_or(false) {
                return Err(BackfillError::Cancelled);
            }
        }
        ev = events.next() => {
            stop.cancel();
            let error = ev.and_then(session_error).unwrap_or(BackfillError::Cancelled);
            // Every frame pushed and acknowledged before the session broke: delivered.
            let all = pushed.frames_sent.load(Ordering::Relaxed)
                >= pushed.frames_total.load(Ordering::Relaxed);
            if all && output.confirms() && settled(output).await {
                debug!(error = ?error, "the session ended after the server acknowledged everything");
                return Ok(());
            }
            return Err(error);
        }
        _ = cancel.cancelled() => {
            stop.cancel();
            return Err(BackfillError::Cancelled);
        }
    }
    if output.protocol() != Protocol::Rtsp {
        // EOS makes the muxers (SRT, RTMP) flush what they hold into the transport.
        end_of_stream(output, events, false).await?;
        return confirm(output, events, cancel).await;
    }
    // RTP leaves as it is pushed: the transport has it all before EOS. The TEARDOWN
    // follows EOS at once: rtspclientsink (1.22) at times leaves it unsent when it is
    // closed a while after its EOS.
    confirm(output, events, cancel).await?;
    end_of_stream(output, events, true).await?;
    let closing = output.clone();
    let _ = tokio::task::spawn_blocking(move || closing.close_session()).await;
    let closed = tokio::time::timeout(TEARDOWN_WAIT, async {
        while let Some(ev) = events.next().await {
            match ev {
                BusEvent::SessionClosed => return Ok(()),
                BusEvent::SessionCloseFailed => {
                    return Err(BackfillError::Unclosed("the sink gave up its TEARDOWN"));
                }
                BusEvent::Error { message, .. } => return Err(BackfillError::Session(message)),
                _ => {}
            }
        }
        Err(BackfillError::Unclosed("the bus closed"))
    })
    .await;
    match closed {
        Ok(result) => result,
        // Everything was acknowledged by the server's TCP stack before the TEARDOWN was
        // asked for: delivered, though the sink did not get its TEARDOWN out.
        Err(_) if output.confirms() => {
            debug!("TEARDOWN not answered in time; delivery confirmed by TCP");
            Ok(())
        }
        Err(_) => Err(BackfillError::Unclosed("no TEARDOWN answer in time")),
    }
}

/// Sends EOS and waits for the pipeline to report it. `may_stay_silent`: rtspclientsink
/// (1.22) does not always post EOS, and its TEARDOWN answer decides instead.
async fn end_of_stream(
    output: &Output,
    events: &mut (impl futures_util::Stream<Item = BusEvent> + Unpin),
    may_stay_silent: bool,
) -> Result<(), BackfillError> {
    output.send_eos();
    let eos = tokio::time::timeout(EOS_WAIT, async {
        while let Some(ev) = events.next().await {
            match ev {
                BusEvent::Eos => return Ok(()),
                BusEvent::Error { message, .. } => return Err(BackfillError::Session(message)),
                _ => {}
            }
        }
        Err(BackfillError::Session("bus closed".into()))
    })
    .await;
    match eos {
        Ok(result) => result,
        Err(_) if may_stay_silent => Ok(()),
        Err(_) => Err(BackfillError::Unclosed("no EOS in time")),
    }
}

/// Waits for everything sent to be confirmed ([`drained`]), unless the session fails or
/// the backfill is cancelled first.
async fn confirm(
    output: &Output,
    events: &mut (impl futures_util::Stream<Item = BusEvent> + Unpin),
    cancel: &CancellationToken,
) -> Result<(), BackfillError> {
    let failed = async {
        loop {
            match events.next().await {
                Some(BusEvent::Error { message, .. }) => return BackfillError::Session(message),
                Some(_) => {}
                None => return BackfillError::Session("bus closed".into()),
            }
        }
    };
    tokio::select! {
        c = drained(output) => if c { Ok(()) } else { Err(BackfillError::Unconfirmed) },
        e = failed => {
            // Everything pushed had reached the server when the session broke (a server
            // that closes the connection once it has the data): delivered. Sent again, it
            // would arrive twice.
            if output.confirms() && settled(output).await {
                debug!(error = ?e, "the session ended after the server acknowledged everything");
                Ok(())
            } else {
                Err(e)
            }
        }
        _ = cancel.cancelled() => Err(BackfillError::Cancelled),
    }
}

/// Whether the output's queue is empty and, where the transport tells, every byte was
/// acknowledged, now.
async fn settled(output: &Output) -> bool {
    let probe = output.clone();
    tokio::task::spawn_blocking(move || {
        let queue_empty = probe.feed().queued().bytes == 0;
        let acked = !probe.confirms()
            || probe
                .transport_report()
                .is_some_and(|r| r.unsent_bytes == 0 && r.in_flight_bytes == 0);
        queue_empty && acked
    })
    .await
    .unwrap_or(false)
}

/// Waits until the output's queue is empty and, where the transport tells, every byte
/// was acknowledged. False if that takes longer than [`DRAIN_WAIT`].
async fn drained(output: &Output) -> bool {
    let deadline = tokio::time::Instant::now() + DRAIN_WAIT;
    loop {
        if settled(output).await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pushes the frames in order, paced by `kbps`, a short queue and the hold flag; true
/// once all went in. Blocking.
fn push_paced(
    output: &Output,
    contents: Contents,
    kbps: u32,
    progress: &Progress,
    stop: &CancellationToken,
) -> bool {
    let Some(first) = contents.frames.first().map(|f| f.capture_us) else {
        return true;
    };
    let feed = output.feed();
    let began = Instant::now();
    let mut bytes: u64 = 0;
    let mut held = Duration::ZERO;
    for frame in &contents.frames {
        loop {
            if stop.is_cancelled() {
                return false;
            }
            let hold = progress.hold.load(Ordering::Relaxed);
            if hold {
                held += STEP;
            }
            let allowed =
                (began.elapsed().saturating_sub(held)).as_secs_f64() * f64::from(kbps) * 1000.0
                    / 8.0;
            let queue_ok = feed.queued().time < MAX_QUEUED;
            if !hold && queue_ok && (bytes as f64) <= allowed {
                break;
            }
            std::thread::sleep(STEP);
        }
        let pts = (frame.capture_us - first) * 1000 + 1_000_000_000;
        let dts = pts.saturating_sub(frame.lead_ns);
        feed.push(&frame.buffer, (pts, Some(dts)), gst::ClockTime::ZERO);
        bytes += frame.buffer.size() as u64;
        progress.frames_sent.fetch_add(1, Ordering::Relaxed);
        progress.bytes_sent.store(bytes, Ordering::Relaxed);
    }
    true
}
