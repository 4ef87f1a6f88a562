//! H.264 encoder choice: the catalog, trial encodes, and the selection `auto` makes.

pub mod catalog;
mod trial;

use std::collections::HashMap;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use serde::Serialize;
use tracing::{info, warn};

pub use catalog::{ENCODER_NAME, EncoderKind, EncoderParams, EncoderSpec};

use crate::config::EncoderChoice;

/// Upper bound of one trial encode; a missing hardware encoder can hang its driver.
pub const TRIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an encoder could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncoderError {
    #[error("element {0} is not installed")]
    Missing(&'static str),
    #[error("trial encode failed: {0}")]
    TrialFailed(String),
    #[error("trial encode timed out after {0:?}")]
    TrialTimeout(Duration),
    #[error("no usable H.264 encoder for encoder = \"{choice}\": {details}")]
    NoneUsable {
        choice: &'static str,
        details: String,
    },
}

/// An encoder passed over, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub element: &'static str,
    pub reason: String,
}

/// The encoder a stream uses and what was passed over on the way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Selection {
    pub kind: EncoderKind,
    pub element: &'static str,
    pub hardware: bool,
    pub rejected: Vec<Rejection>,
}

/// One catalog entry as seen on this machine (for `edgecam probe`).
#[derive(Debug, Clone, Serialize)]
pub struct EncoderReport {
    pub kind: EncoderKind,
    pub element: &'static str,
    pub hardware: bool,
    pub present: bool,
    pub trial_passed: bool,
    pub rejected_because: Option<String>,
}

/// Frame size and rate of a trial: an encoder's outcome is remembered per size and rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct TrialAt {
    kind: EncoderKind,
    width: u32,
    height: u32,
    framerate: u32,
}

/// The size and rate `edgecam probe` and `info` report trials at.
pub const REPORT_PARAMS: EncoderParams = EncoderParams {
    width: 320,
    height: 240,
    framerate: 30,
    bitrate_kbps: 500,
    keyframe_interval: 10,
};

/// Runs trial encodes at most once per encoder, size and rate, and remembers the outcome.
#[derive(Default)]
pub struct Selector {
    outcomes: tokio::sync::Mutex<HashMap<TrialAt, Result<(), EncoderError>>>,
    /// Put the test-only catalog entries first in the `auto` order.
    test_encoders: bool,
}

impl Selector {
    /// A selector whose `auto` order starts with the test-only entries
    /// ([`catalog::TEST_ORDER`]).
    pub fn with_test_encoders() -> Self {
        Selector {
            test_encoders: true,
            ..Selector::default()
        }
    }

    /// The catalog entries `choice` may use, in the order they are tried.
    pub fn candidates(&self, choice: EncoderChoice) -> Vec<EncoderKind> {
        let test = (self.test_encoders && choice == EncoderChoice::Auto)
            .then_some(catalog::TEST_ORDER)
            .into_iter()
            .flatten();
        test.chain(EncoderKind::candidates(choice).iter().copied())
            .collect()
    }

    /// Walks the candidates for `choice`, leaving out `excluded`, and returns the first
    /// that passes its trial at the stream's own size and rate.
    pub async fn select(
        &self,
        choice: EncoderChoice,
        params: &EncoderParams,
        excluded: &[EncoderKind],
    ) -> Result<Selection, EncoderError> {
        let mut rejected = Vec::new();
        for kind in self.candidates(choice) {
            if excluded.contains(&kind) {
                continue;
            }
            match self.outcome(kind, params).await {
                Ok(()) => {
                    info!(
                        encoder = kind.element(),
                        hardware = kind.is_hardware(),
                        width = params.width,
                        height = params.height,
                        "encoder chosen"
                    );
                    return Ok(Selection {
                        kind,
                        element: kind.element(),
                        hardware: kind.is_hardware(),
                        rejected,
                    });
                }
                Err(e) => {
                    info!(encoder = kind.element(), reason = %e, "encoder rejected");
                    rejected.push(Rejection {
                        element: kind.element(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        let details = rejected
            .iter()
            .map(|r| format!("{}: {}", r.element, r.reason))
            .collect::<Vec<_>>()
            .join("; ");
        warn!(choice = choice.as_str(), %details, "no usable encoder");
        Err(EncoderError::NoneUsable {
            choice: choice.as_str(),
            details,
        })
    }

    /// Trials every catalog entry at [`REPORT_PARAMS`] (what `edgecam probe` shows).
    pub async fn report(&self) -> Vec<EncoderReport> {
        let mut out = Vec::new();
        for kind in self.candidates(EncoderChoice::Auto) {
            let outcome = self.outcome(kind, &REPORT_PARAMS).await;
            out.push(EncoderReport {
                kind,
                element: kind.element(),
                hardware: kind.is_hardware(),
                present: gst::ElementFactory::find(kind.factory()).is_some(),
                trial_passed: outcome.is_ok(),
                rejected_because: outcome.err().map(|e| e.to_string()),
            });
        }
        out
    }

    /// The remembered outcome of `kind` at this size and rate, trialling it first if
    /// needed. Trials run one at a time.
    async fn outcome(&self, kind: EncoderKind, params: &EncoderParams) -> Result<(), EncoderError> {
        let key = TrialAt {
            kind,
            width: params.width,
            height: params.height,
            framerate: params.framerate,
        };
        let mut outcomes = self.outcomes.lock().await;
        if let Some(o) = outcomes.get(&key) {
            return o.clone();
        }
        let o = run_trial(kind, *params).await;
        outcomes.insert(key, o.clone());
        o
    }
}

/// Runs one trial off the async runtime, bounded by [`TRIAL_TIMEOUT`].
async fn run_trial(kind: EncoderKind, params: EncoderParams) -> Result<(), EncoderError> {
    if kind == EncoderKind::Passthrough {
        return Ok(());
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A plain thread, not spawn_blocking: a hung driver must not pin a runtime worker
    // or keep the runtime from shutting down.
    std::thread::Builder::new()
        .name(format!("trial-{}", kind.factory()))
        .spawn(move || {
            let _ = tx.send(trial::trial_encode(kind, &params, TRIAL_TIMEOUT));
        })
        .map_err(|e| EncoderError::TrialFailed(format!("cannot start trial thread: {e}")))?;
    match tokio::time::timeout(TRIAL_TIMEOUT + Duration::from_secs(1), rx).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(EncoderError::TrialFailed("trial thread died".into())),
        Err(_) => Err(EncoderError::TrialTimeout(TRIAL_TIMEOUT)),
    }
}

/// Creates the elements of an encoder spec, properties set, not yet linked.
pub fn make_elements(spec: &EncoderSpec) -> Result<Vec<gst::Element>, EncoderError> {
    let mut elements = Vec::with_capacity(spec.elements.len() + 1);
    for (i, e) in spec.elements.iter().enumerate() {
        let name = if i + 1 == spec.elements.len() {
            ENCODER_NAME.to_owned()
        } else {
            format!("{}{i}", catalog::CHAIN_PREFIX)
        };
        let builder = gst::ElementFactory::make(e.factory).name(name);
        let element = builder
            .build()
            .map_err(|_| EncoderError::Missing(e.factory))?;
        for (name, value) in &e.properties {
            if element.find_property(name).is_none() {
                return Err(EncoderError::TrialFailed(format!(
                    "{} has no property {name}",
                    e.factory
                )));
            }
            element.set_property_from_str(name, value);
        }
        elements.push(element);
    }
    if let Some(caps) = &spec.output_caps {
        let filter = capsfilter(caps)?;
        filter.set_property("name", format!("{}caps", catalog::CHAIN_PREFIX));
        elements.push(filter);
    }
    Ok(elements)
}

/// A capsfilter for a caps string.
pub fn capsfilter(caps: &str) -> Result<gst::Element, EncoderError> {
    let caps: gst::Caps = caps
        .parse()
        .map_err(|_| EncoderError::TrialFailed(format!("bad caps {caps}")))?;
    gst::ElementFactory::make("capsfilter")
        .property("caps", caps)
        .build()
        .map_err(|_| EncoderError::Missing("capsfilter"))
}
