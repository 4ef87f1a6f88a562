//! v4l crate data to this module's types, without a device: capability names, fourcc
//! text, intervals as rates, stepwise ranges as common sizes, control descriptions.

use v4l::FourCC;
use v4l::capability::Flags as Caps;
use v4l::control::{Description, Flags, MenuItem as V4lItem, Type};

use super::controls::{ControlFlags, ControlInfo, ControlKind, MenuItem};
use super::info::StepwiseSize;
use super::validate::key_of;

/// Sizes listed for a stepwise/continuous range, when inside it.
const COMMON_SIZES: &[(u32, u32)] = &[
    (320, 240),
    (640, 360),
    (640, 480),
    (800, 600),
    (1024, 768),
    (1280, 720),
    (1280, 960),
    (1600, 1200),
    (1920, 1080),
    (2560, 1440),
    (3840, 2160),
];

/// Rates listed for a stepwise/continuous interval range, when inside it.
pub(crate) const COMMON_RATES: &[f64] = &[5.0, 10.0, 15.0, 20.0, 24.0, 25.0, 30.0, 50.0, 60.0];

/// Capability flag names, in bit order.
const CAP_NAMES: &[(Caps, &str)] = &[
    (Caps::VIDEO_CAPTURE, "video_capture"),
    (Caps::VIDEO_OUTPUT, "video_output"),
    (Caps::VIDEO_OVERLAY, "video_overlay"),
    (Caps::VBI_CAPTURE, "vbi_capture"),
    (Caps::VBI_OUTPUT, "vbi_output"),
    (Caps::SLICED_VBI_CAPTURE, "sliced_vbi_capture"),
    (Caps::SLICED_VBI_OUTPUT, "sliced_vbi_output"),
    (Caps::RDS_CAPTURE, "rds_capture"),
    (Caps::VIDEO_OUTPUT_OVERLAY, "video_output_overlay"),
    (Caps::HW_FREQ_SEEK, "hw_freq_seek"),
    (Caps::RDS_OUTPUT, "rds_output"),
    (Caps::VIDEO_CAPTURE_MPLANE, "video_capture_mplane"),
    (Caps::VIDEO_OUTPUT_MPLANE, "video_output_mplane"),
    (Caps::VIDEO_M2M_MPLANE, "video_m2m_mplane"),
    (Caps::VIDEO_M2M, "video_m2m"),
    (Caps::TUNER, "tuner"),
    (Caps::AUDIO, "audio"),
    (Caps::RADIO, "radio"),
    (Caps::MODULATOR, "modulator"),
    (Caps::SDR_CAPTURE, "sdr_capture"),
    (Caps::EXT_PIX_FORMAT, "ext_pix_format"),
    (Caps::SDR_OUTPUT, "sdr_output"),
    (Caps::META_CAPTURE, "meta_capture"),
    (Caps::READ_WRITE, "read_write"),
    (Caps::ASYNC_IO, "async_io"),
    (Caps::STREAMING, "streaming"),
    (Caps::META_OUTPUT, "meta_output"),
    (Caps::TOUCH, "touch"),
];

/// The names of the capability flags set, in bit order.
pub(crate) fn cap_names(caps: Caps) -> Vec<String> {
    CAP_NAMES
        .iter()
        .filter(|(f, _)| caps.contains(*f))
        .map(|(_, n)| (*n).to_owned())
        .collect()
}

/// `None` for class headings and disabled controls.
pub(crate) fn control_info(d: Description) -> Option<ControlInfo> {
    if d.flags.contains(Flags::DISABLED) {
        return None;
    }
    let kind = match d.typ {
        Type::Integer => ControlKind::Integer,
        Type::Boolean => ControlKind::Boolean,
        Type::Menu => ControlKind::Menu,
        Type::IntegerMenu => ControlKind::IntegerMenu,
        Type::Button => ControlKind::Button,
        Type::Integer64 => ControlKind::Integer64,
        Type::String => ControlKind::String,
        Type::Bitmask => ControlKind::Bitmask,
        Type::U8 => ControlKind::U8,
        Type::U16 => ControlKind::U16,
        Type::U32 => ControlKind::U32,
        Type::Area => ControlKind::Area,
        Type::CtrlClass => return None,
    };
    let menu = d
        .items
        .unwrap_or_default()
        .into_iter()
        .map(|(index, item)| match item {
            V4lItem::Name(name) => MenuItem {
                index,
                name,
                value: None,
            },
            V4lItem::Value(v) => MenuItem {
                index,
                name: v.to_string(),
                value: Some(v),
            },
        })
        .collect();
    Some(ControlInfo {
        id: d.id,
        key: key_of(&d.name),
        name: d.name,
        kind,
        min: d.minimum,
        max: d.maximum,
        step: d.step,
        default: d.default,
        value: None,
        menu,
        flags: ControlFlags {
            read_only: d.flags.contains(Flags::READ_ONLY),
            write_only: d.flags.contains(Flags::WRITE_ONLY),
            inactive: d.flags.contains(Flags::INACTIVE),
            grabbed: d.flags.contains(Flags::GRABBED),
            volatile: d.flags.contains(Flags::VOLATILE),
        },
    })
}

/// Frames per second for an interval of `num/den` seconds, to 3 decimals.
pub(crate) fn rate(num: u32, den: u32) -> Option<f64> {
    (num > 0 && den > 0).then(|| (f64::from(den) / f64::from(num) * 1000.0).round() / 1000.0)
}

/// The fourcc as text; `0x…` when a byte is not printable (e.g. big-endian variants).
pub(crate) fn fourcc_text(f: FourCC) -> String {
    if f.repr.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        f.repr.iter().map(|b| char::from(*b)).collect()
    } else {
        format!("0x{:08x}", u32::from_le_bytes(f.repr))
    }
}

/// The common sizes inside a range, plus its maximum.
pub(crate) fn expand(range: &StepwiseSize) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = COMMON_SIZES
        .iter()
        .copied()
        .filter(|(w, h)| range.contains(*w, *h))
        .collect();
    let max = (range.max_width, range.max_height);
    if !out.contains(&max) && range.contains(max.0, max.1) {
        out.push(max);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fourccs_print_or_fall_back_to_hex() {
        assert_eq!(fourcc_text(FourCC::new(b"YUYV")), "YUYV");
        assert_eq!(fourcc_text(FourCC::new(b"Y16 ")), "Y16 ");
        assert_eq!(fourcc_text(FourCC::new(b"pRAA")), "pRAA");
        // V4L2_PIX_FMT_FLAG_BE sets the top bit.
        assert_eq!(
            fourcc_text(FourCC::from(0x8000_0000 | 0x3531_5241)),
            "0xb5315241"
        );
    }

    #[test]
    fn intervals_become_rates() {
        assert_eq!(rate(1, 30), Some(30.0));
        assert_eq!(rate(1001, 30000), Some(29.97));
        assert_eq!(rate(333_333, 10_000_000), Some(30.0));
        assert_eq!(rate(0, 30), None);
    }

    #[test]
    fn stepwise_ranges_expand_to_common_sizes() {
        let unicam = StepwiseSize {
            min_width: 16,
            max_width: 16376,
            step_width: 1,
            min_height: 16,
            max_height: 16376,
            step_height: 1,
        };
        let sizes = expand(&unicam);
        assert_eq!(sizes.first(), Some(&(320, 240)));
        assert_eq!(sizes.last(), Some(&(16376, 16376)));
        let small = StepwiseSize {
            min_width: 48,
            max_width: 1280,
            step_width: 16,
            min_height: 32,
            max_height: 720,
            step_height: 8,
        };
        assert_eq!(
            expand(&small),
            [(320, 240), (640, 360), (640, 480), (800, 600), (1280, 720)]
        );
    }

    #[test]
    fn control_descriptions_map_to_info() {
        let d = Description {
            id: 0x009a_0902,
            typ: Type::Integer,
            name: "Exposure Time, Absolute".into(),
            minimum: 3,
            maximum: 2047,
            step: 1,
            default: 250,
            flags: Flags::INACTIVE | Flags::VOLATILE,
            items: None,
        };
        let c = control_info(d).expect("a control");
        assert_eq!(c.key, "exposure_time_absolute");
        assert_eq!(c.kind, ControlKind::Integer);
        assert!(c.flags.inactive && c.flags.volatile && !c.flags.read_only);
        let m = control_info(Description {
            id: 0x0098_0918,
            typ: Type::Menu,
            name: "Power Line Frequency".into(),
            minimum: 0,
            maximum: 2,
            step: 1,
            default: 2,
            flags: Flags::empty(),
            items: Some(vec![
                (0, V4lItem::Name("Disabled".into())),
                (1, V4lItem::Value(50)),
            ]),
        })
        .expect("a control");
        assert_eq!(m.menu[0].name, "Disabled");
        assert_eq!(m.menu[1].value, Some(50));
        let class = Description {
            id: 0x0098_0001,
            typ: Type::CtrlClass,
            name: "User Controls".into(),
            minimum: 0,
            maximum: 0,
            step: 0,
            default: 0,
            flags: Flags::READ_ONLY | Flags::WRITE_ONLY,
            items: None,
        };
        assert_eq!(control_info(class), None);
    }
}
