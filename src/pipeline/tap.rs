//! The recorder's tap on a stream's encoded frames: a bounded channel the capture side
//! offers every frame to and never waits on (a full channel drops and counts).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};

use gstreamer as gst;

/// One encoded frame as the recorder gets it.
#[derive(Debug)]
pub struct TappedFrame {
    pub buffer: gst::Buffer,
    pub caps: Option<gst::Caps>,
    /// Capture wall-clock time, µs since the Unix epoch.
    pub capture_us: u64,
}

#[derive(Default)]
pub struct FrameTap {
    tx: Mutex<Option<SyncSender<TappedFrame>>>,
    connected: AtomicBool,
    /// Frames the recorder could not take in time.
    dropped: AtomicU64,
}

impl FrameTap {
    pub fn connect(&self, tx: SyncSender<TappedFrame>) {
        if let Ok(mut slot) = self.tx.lock() {
            *slot = Some(tx);
            self.connected.store(true, Ordering::Relaxed);
        }
    }

    pub fn disconnect(&self) {
        if let Ok(mut slot) = self.tx.lock() {
            *slot = None;
            self.connected.store(false, Ordering::Relaxed);
        }
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Offers a frame; never blocks.
    pub fn offer(&self, buffer: &gst::Buffer, caps: Option<&gst::CapsRef>, capture_us: u64) {
        if !self.connected() {
            return;
        }
        let Ok(slot) = self.tx.lock() else { return };
        let Some(tx) = slot.as_ref() else { return };
        let frame = TappedFrame {
            buffer: buffer.clone(),
            caps: caps.map(|c| c.to_owned()),
            capture_us,
        };
        match tx.try_send(frame) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}
