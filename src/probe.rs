//! `edgecam probe`: what this board offers: GStreamer version, encoders with trial
//! results, and V4L2 cameras with their formats and controls.

use serde::Serialize;

use crate::camera;
use crate::encoder::{EncoderReport, Selector};
use crate::pipeline;

#[derive(Debug, Serialize)]
pub struct ProbeReport {
    pub gstreamer: String,
    pub encoders: Vec<EncoderReport>,
    pub cameras: camera::ProbeReport,
}

pub async fn probe() -> ProbeReport {
    let cameras = tokio::task::spawn_blocking(camera::probe_report)
        .await
        .unwrap_or_default();
    ProbeReport {
        gstreamer: pipeline::gstreamer_version(),
        encoders: Selector::default().report().await,
        cameras,
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
        writeln!(f)?;
        write!(f, "{}", self.cameras)
    }
}
