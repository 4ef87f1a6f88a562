//! V4L2 fourccs as GStreamer sees them: the raw format names v4l2src uses, which
//! fourccs are Bayer, and frame rates as exact fractions.

/// What kind of data a fourcc carries, for format choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Uncompressed with a GStreamer `video/x-raw` format name.
    Raw(&'static str),
    /// Motion JPEG (`MJPG`, `JPEG`).
    Jpeg,
    /// H.264 elementary stream.
    H264,
    /// Raw sensor data that needs an ISP (we do not debayer).
    Bayer,
    /// Anything else (H.265, MPEG, 10-bit luma, vendor formats …).
    Other,
}

/// V4L2 fourcc → GStreamer raw format, as v4l2src maps them.
const RAW: &[(&str, &str)] = &[
    ("YUYV", "YUY2"),
    ("UYVY", "UYVY"),
    ("YVYU", "YVYU"),
    ("VYUY", "VYUY"),
    ("NV12", "NV12"),
    ("NV21", "NV21"),
    ("NV16", "NV16"),
    ("NV61", "NV61"),
    ("NV24", "NV24"),
    ("YU12", "I420"),
    ("YV12", "YV12"),
    ("422P", "Y42B"),
    ("GREY", "GRAY8"),
    ("Y16 ", "GRAY16_LE"),
    ("RGB3", "RGB"),
    ("BGR3", "BGR"),
    ("RGBP", "RGB16"),
    ("RGB4", "xRGB"),
    ("BGR4", "BGRx"),
    ("XR24", "BGRx"),
    ("AR24", "BGRA"),
    ("XB24", "RGBx"),
    ("AB24", "RGBA"),
];

/// Bayer layouts: 8/10/12/14/16-bit, unpacked, MIPI-packed (`p…`), A-law and DPCM.
const BAYER: &[&str] = &[
    "BA81", "GBRG", "GRBG", "RGGB", "BG10", "GB10", "BA10", "RG10", "pBAA", "pGAA", "pgAA", "pRAA",
    "aBA8", "aGA8", "agA8", "aRA8", "bBA8", "bGA8", "BD10", "bRA8", "BG12", "GB12", "BA12", "RG12",
    "pBCC", "pGCC", "pgCC", "pRCC", "BG14", "GB14", "GR14", "RG14", "pBEE", "pGEE", "pgEE", "pREE",
    "BYR2", "GB16", "GR16", "RG16", "ip3b", "ip3g", "ip3G", "ip3r",
];

/// The GStreamer `video/x-raw` format name for a raw V4L2 fourcc.
pub fn gst_format(fourcc: &str) -> Option<&'static str> {
    RAW.iter().find(|(v, _)| *v == fourcc).map(|(_, g)| *g)
}

pub(crate) fn kind(fourcc: &str) -> Kind {
    if let Some(g) = gst_format(fourcc) {
        Kind::Raw(g)
    } else if matches!(fourcc, "MJPG" | "JPEG") {
        Kind::Jpeg
    } else if fourcc == "H264" {
        Kind::H264
    } else if BAYER.contains(&fourcc) {
        Kind::Bayer
    } else {
        Kind::Other
    }
}

/// A frame rate as the fraction GStreamer caps want: whole rates as `N/1`, NTSC-style
/// rates (29.97, 59.94, 23.976) as `N*1000/1001`, anything else as the closest fraction
/// with a denominator of at most 1001. Non-positive or non-finite rates give `0/1`.
pub fn fps_fraction(fps: f64) -> (u32, u32) {
    if !fps.is_finite() || fps <= 0.0 || fps > f64::from(u32::MAX / 1001) {
        return (0, 1);
    }
    let whole = fps.round();
    if (fps - whole).abs() < 1e-3 {
        return (whole as u32, 1);
    }
    let ntsc = (fps * 1.001).round();
    if ntsc >= 1.0 && (fps - ntsc * 1000.0 / 1001.0).abs() < 1e-3 {
        return (ntsc as u32 * 1000, 1001);
    }
    best_rational(fps, 1001)
}

/// Continued-fraction approximation of `x` with the denominator bounded.
fn best_rational(x: f64, max_den: u64) -> (u32, u32) {
    let (mut p0, mut q0, mut p1, mut q1) = (0u64, 1u64, 1u64, 0u64);
    let mut v = x;
    for _ in 0..32 {
        let a = v.floor();
        let a_int = a as u64;
        let q2 = q0 + a_int * q1;
        if q2 > max_den {
            break;
        }
        let p2 = p0 + a_int * p1;
        (p0, q0, p1, q1) = (p1, q1, p2, q2);
        let frac = v - a;
        if frac < 1e-9 {
            break;
        }
        v = 1.0 / frac;
    }
    match (u32::try_from(p1), u32::try_from(q1)) {
        (Ok(n), Ok(d)) if d > 0 => (n, d),
        _ => (x.round() as u32, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fourccs_map_like_v4l2src() {
        assert_eq!(gst_format("YUYV"), Some("YUY2"));
        assert_eq!(gst_format("YU12"), Some("I420"));
        assert_eq!(gst_format("GREY"), Some("GRAY8"));
        assert_eq!(gst_format("BGR3"), Some("BGR"));
        assert_eq!(gst_format("MJPG"), None);
        assert_eq!(kind("MJPG"), Kind::Jpeg);
        assert_eq!(kind("H264"), Kind::H264);
        assert_eq!(kind("pRAA"), Kind::Bayer);
        assert_eq!(kind("RG10"), Kind::Bayer);
        assert_eq!(kind("HEVC"), Kind::Other);
    }

    #[test]
    fn frame_rates_become_exact_fractions() {
        assert_eq!(fps_fraction(30.0), (30, 1));
        assert_eq!(fps_fraction(29.97), (30000, 1001));
        assert_eq!(fps_fraction(30000.0 / 1001.0), (30000, 1001));
        assert_eq!(fps_fraction(59.94), (60000, 1001));
        assert_eq!(fps_fraction(23.976), (24000, 1001));
        assert_eq!(fps_fraction(7.5), (15, 2));
        assert_eq!(fps_fraction(0.5), (1, 2));
        assert_eq!(fps_fraction(21.0), (21, 1));
        assert_eq!(fps_fraction(0.0), (0, 1));
        assert_eq!(fps_fraction(f64::NAN), (0, 1));
    }
}
