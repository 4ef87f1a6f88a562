//! Which capture format to ask a camera for, given what it offers and what the
//! encoder wants, and the v4l2src caps for it. Pure logic.
//!
//! Rules, in order:
//! 1. `Passthrough` considers only H.264 modes. Otherwise H.264 is considered only when
//!    the camera offers nothing raw or MJPEG (then the choice is a passthrough).
//!    Bayer and other formats are never chosen: a camera offering only those is
//!    [`CameraError::NoUsableFormat`] (we do not debayer; on a Pi that is libcamera's
//!    job, on a Jetson CSI cameras go through `nvarguscamerasrc`, outside this module).
//! 2. An exact raw mode (size equal, rate within 1 %) wins, by least work for the
//!    encoder: hardware wants NV12, then I420, then other YUV, RGB, grey; software
//!    wants I420, then YUYV/NV12, then other YUV, RGB, grey.
//! 3. Else an exact MJPEG mode, decoded (`Decode::Jpeg`) — how USB cameras give
//!    1080p30.
//! 4. Else the nearest mode (`exact = false`, with a note), ordered by:
//!    a. rate not below half the request (a 5 fps slideshow loses to a smaller size);
//!    b. smallest |area − requested area|;
//!    c. smallest |fps − requested fps|;
//!    d. not exceeding the request in area or rate;
//!    e. the format order of rule 2, raw before MJPEG.
//!
//! A size without enumerable rates (HDMI bridges, some CSI receivers) is taken to
//! deliver the requested rate, with a note; a stepwise size range offers the requested
//! size when it lies on the range's steps.

use std::cmp::Ordering;

use serde::Serialize;

use super::CameraError;
use super::caps::{Kind, fps_fraction, kind};
use super::info::FormatInfo;

/// What the encoder side wants from the camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// A hardware encoder: NV12 ideally.
    Hardware,
    /// A software encoder: I420 ideally; YUYV/NV12 converted cheaply.
    Software,
    /// No encoder: H.264 straight from the camera.
    Passthrough,
}

/// The capture a stream asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request {
    pub width: u32,
    pub height: u32,
    /// Frames per second; `<= 0` takes the highest rate offered at the size.
    pub fps: f64,
    pub encoder: Target,
}

/// Decoding needed between v4l2src and the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decode {
    /// Raw frames, or H.264 passed through.
    None,
    /// MJPEG: `jpegdec` (or a hardware JPEG decoder).
    Jpeg,
}

/// The capture format to use.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Choice {
    pub fourcc: String,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    /// Size and rate are what was requested.
    pub exact: bool,
    pub decode: Decode,
    /// H.264 from the camera goes to the outputs without re-encoding.
    pub passthrough: bool,
    /// Why the choice is not the obvious one.
    pub note: Option<String>,
}

/// One (format, size, rate) the camera offers; `fps: None` when not enumerable.
#[derive(Debug, Clone, Copy)]
struct Mode<'a> {
    fourcc: &'a str,
    kind: Kind,
    width: u32,
    height: u32,
    fps: Option<f64>,
}

/// Picks the capture format for `req` among `formats` (see the module docs).
pub fn choose(formats: &[FormatInfo], req: &Request) -> Result<Choice, CameraError> {
    let modes = modes(formats, req);
    let offered = || formats.iter().map(|f| f.fourcc.clone()).collect::<Vec<_>>();
    let by_kind = |want: &dyn Fn(Kind) -> bool| -> Vec<Mode<'_>> {
        modes.iter().copied().filter(|m| want(m.kind)).collect()
    };
    let h264 = by_kind(&|k| k == Kind::H264);

    if req.encoder == Target::Passthrough {
        return pick(&h264, req, None).ok_or_else(|| CameraError::NoUsableFormat {
            reason: "passthrough needs H.264 from the camera".into(),
            offered: offered(),
        });
    }

    let usable = by_kind(&|k| matches!(k, Kind::Raw(_) | Kind::Jpeg));
    if usable.is_empty() {
        let only_h264 = "the camera offers only H.264; passing it through";
        if let Some(c) = pick(&h264, req, Some(only_h264)) {
            return Ok(c);
        }
        let bayer = formats.iter().any(|f| kind(&f.fourcc) == Kind::Bayer);
        let reason = if formats.is_empty() {
            "the device lists no capture formats".to_owned()
        } else if bayer {
            "only Bayer/other sensor formats; edgecam does not debayer: use the platform ISP \
             (libcamera on a Raspberry Pi, nvarguscamerasrc on a Jetson)"
                .to_owned()
        } else {
            "no raw, MJPEG or H.264 format".to_owned()
        };
        return Err(CameraError::NoUsableFormat {
            reason,
            offered: offered(),
        });
    }

    let exact = |m: &&Mode<'_>| m.width == req.width && m.height == req.height && rate_ok(m, req);
    let raw = usable
        .iter()
        .filter(|m| matches!(m.kind, Kind::Raw(_)))
        .filter(exact)
        .min_by(|a, b| {
            cost(a.kind, req.encoder)
                .cmp(&cost(b.kind, req.encoder))
                .then(fps_cmp(a, b, req))
        });
    if let Some(m) = raw {
        return Ok(choice(m, req, true, None));
    }
    let jpeg = usable
        .iter()
        .filter(|m| m.kind == Kind::Jpeg)
        .filter(exact)
        .min_by(|a, b| fps_cmp(a, b, req));
    if let Some(m) = jpeg {
        let note = format!(
            "{}x{}@{} not offered raw; using {} with JPEG decode",
            req.width,
            req.height,
            show(req.fps),
            m.fourcc
        );
        return Ok(choice(m, req, true, Some(note)));
    }
    pick(&usable, req, None).ok_or_else(|| CameraError::NoUsableFormat {
        reason: "no mode offered".into(),
        offered: offered(),
    })
}

/// The exact mode among `modes`, else the nearest, with `why` as the note's start;
/// `None` when `modes` is empty.
fn pick(modes: &[Mode<'_>], req: &Request, why: Option<&str>) -> Option<Choice> {
    let exact = modes
        .iter()
        .filter(|m| m.width == req.width && m.height == req.height && rate_ok(m, req))
        .min_by(|a, b| fps_cmp(a, b, req));
    if let Some(m) = exact {
        return Some(choice(m, req, true, why.map(str::to_owned)));
    }
    let m = modes.iter().min_by(|a, b| nearest(a, b, req))?;
    let mut note = format!(
        "nearest mode {} {}x{}@{} instead of {}x{}@{}",
        m.fourcc,
        m.width,
        m.height,
        show(m.fps.unwrap_or(req.fps)),
        req.width,
        req.height,
        show(req.fps)
    );
    if m.kind == Kind::Jpeg {
        note.push_str(" with JPEG decode");
    }
    if let Some(why) = why {
        note = format!("{why}; {note}");
    }
    Some(choice(m, req, false, Some(note)))
}

fn choice(m: &Mode<'_>, req: &Request, exact: bool, note: Option<String>) -> Choice {
    let mut note = note;
    if m.fps.is_none() {
        let unknown = "frame rate not enumerable; the source's own rate applies";
        note = Some(match note {
            Some(n) => format!("{n}; {unknown}"),
            None => unknown.to_owned(),
        });
    }
    Choice {
        fourcc: m.fourcc.to_owned(),
        width: m.width,
        height: m.height,
        fps: m.fps.unwrap_or(req.fps),
        exact,
        decode: if m.kind == Kind::Jpeg {
            Decode::Jpeg
        } else {
            Decode::None
        },
        passthrough: m.kind == Kind::H264,
        note,
    }
}

fn modes<'a>(formats: &'a [FormatInfo], req: &Request) -> Vec<Mode<'a>> {
    let mut out = Vec::new();
    for f in formats {
        let k = kind(&f.fourcc);
        let mode = |width, height, fps| Mode {
            fourcc: &f.fourcc,
            kind: k,
            width,
            height,
            fps,
        };
        for s in &f.sizes {
            if s.fps.is_empty() {
                out.push(mode(s.width, s.height, None));
            }
            out.extend(s.fps.iter().map(|r| mode(s.width, s.height, Some(*r))));
        }
        let listed = f
            .sizes
            .iter()
            .any(|s| (s.width, s.height) == (req.width, req.height));
        if !listed
            && f.stepwise
                .is_some_and(|r| r.contains(req.width, req.height))
        {
            out.push(mode(req.width, req.height, None));
        }
    }
    out
}

fn rate_ok(m: &Mode<'_>, req: &Request) -> bool {
    match m.fps {
        None => true,
        Some(_) if req.fps <= 0.0 => true,
        Some(f) => (f - req.fps).abs() <= req.fps * 0.01,
    }
}

/// Among equally good modes: the rate closest to the request (highest when the
/// request has none), not above it on a tie.
fn fps_cmp(a: &Mode<'_>, b: &Mode<'_>, req: &Request) -> Ordering {
    let key = |m: &Mode<'_>| match m.fps {
        None => (0.0, 0.0),
        Some(f) if req.fps <= 0.0 => (-f, 0.0),
        Some(f) => ((f - req.fps).abs(), f),
    };
    let (a, b) = (key(a), key(b));
    a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1))
}

/// The nearest-mode order of the module docs.
fn nearest(a: &Mode<'_>, b: &Mode<'_>, req: &Request) -> Ordering {
    let want_area = u64::from(req.width) * u64::from(req.height);
    let area = |m: &Mode<'_>| u64::from(m.width) * u64::from(m.height);
    let short = |m: &Mode<'_>| m.fps.is_some_and(|f| req.fps > 0.0 && f < req.fps / 2.0);
    let exceeds = |m: &Mode<'_>| {
        area(m) > want_area || m.fps.is_some_and(|f| req.fps > 0.0 && f > req.fps * 1.01)
    };
    short(a)
        .cmp(&short(b))
        .then(
            area(a)
                .abs_diff(want_area)
                .cmp(&area(b).abs_diff(want_area)),
        )
        .then(fps_cmp(a, b, req))
        .then(exceeds(a).cmp(&exceeds(b)))
        .then(cost(a.kind, req.encoder).cmp(&cost(b.kind, req.encoder)))
}

/// Work for the encoder side: lower is better.
fn cost(k: Kind, target: Target) -> u8 {
    match (k, target) {
        (Kind::Raw("NV12"), Target::Hardware) => 0,
        (Kind::Raw("I420"), Target::Hardware) => 1,
        (Kind::Raw("I420"), _) => 0,
        (Kind::Raw("YUY2" | "NV12"), _) => 1,
        (Kind::Raw(g), _) if g.starts_with("GRAY") => 4,
        (Kind::Raw(g), _) if g.contains('R') && g.contains('B') => 3,
        (Kind::Raw(_), _) => 2,
        (Kind::Jpeg, _) => 10,
        _ => 20,
    }
}

/// A rate for notes: `30`, `29.97`.
fn show(fps: f64) -> String {
    let s = format!("{fps:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The caps to put after v4l2src for `choice`: `video/x-raw,format=…`, `image/jpeg`
/// or `video/x-h264,stream-format=byte-stream`, with size and an exact framerate
/// fraction (none when the rate is 0). A fourcc GStreamer has no raw name for gets
/// `video/x-raw` without a format.
pub fn gst_caps(choice: &Choice) -> String {
    let (n, d) = fps_fraction(choice.fps);
    let rate = if n == 0 {
        String::new()
    } else {
        format!(",framerate={n}/{d}")
    };
    let size = format!("width={},height={}{rate}", choice.width, choice.height);
    match kind(&choice.fourcc) {
        Kind::Raw(g) => format!("video/x-raw,format={g},{size}"),
        Kind::Jpeg => format!("image/jpeg,{size}"),
        Kind::H264 => format!("video/x-h264,stream-format=byte-stream,{size}"),
        Kind::Bayer | Kind::Other => format!("video/x-raw,{size}"),
    }
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;
