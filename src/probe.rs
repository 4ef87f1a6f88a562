//! `edgecam probe`: what this board offers (GStreamer version, encoders with trial results).

use serde::Serialize;

use crate::encoder::{EncoderReport, Selector};
use crate::pipeline;

#[derive(Debug, Serialize)]
pub struct ProbeReport {
    pub gstreamer: String,
    pub encoders: Vec<EncoderReport>,
}

pub async fn probe() -> ProbeReport {
    ProbeReport {
        gstreamer: pipeline::gstreamer_version(),
        encoders: Selector::default().report().await,
    }
}

impl std::fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "GStreamer {}", self.gstreamer)?;
        writeln!(
            f,
            "{:<14} {:<8} {:<8} {:<6} note",
            "encoder", "kind", "present", "trial"
        )?;
        for e in &self.encoders {
            writeln!(
                f,
                "{:<14} {:<8} {:<8} {:<6} {}",
                e.element,
                if e.hardware { "hardware" } else { "software" },
                if e.present { "yes" } else { "no" },
                if e.trial_passed { "passed" } else { "failed" },
                e.rejected_because.as_deref().unwrap_or("")
            )?;
        }
        Ok(())
    }
}
