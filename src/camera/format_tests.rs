//! Format choice on the recorded devices.

use super::*;
use crate::camera::fixtures;
use crate::camera::info::{FrameSize, StepwiseSize};

fn req(width: u32, height: u32, fps: f64, encoder: Target) -> Request {
    Request {
        width,
        height,
        fps,
        encoder,
    }
}

fn c920() -> Vec<FormatInfo> {
    fixtures::load(fixtures::C920).formats
}

fn raw_format(fourcc: &str, sizes: Vec<FrameSize>) -> FormatInfo {
    FormatInfo {
        fourcc: fourcc.into(),
        description: fourcc.into(),
        compressed: false,
        sizes,
        stepwise: None,
    }
}

fn size(width: u32, height: u32, fps: &[f64]) -> FrameSize {
    FrameSize {
        width,
        height,
        fps: fps.to_vec(),
    }
}

#[test]
fn c920_1080p30_uses_mjpeg_with_decode() {
    let c = choose(&c920(), &req(1920, 1080, 30.0, Target::Software)).expect("choice");
    assert_eq!(
        (c.fourcc.as_str(), c.width, c.height, c.fps),
        ("MJPG", 1920, 1080, 30.0)
    );
    assert!(c.exact);
    assert!(!c.passthrough);
    assert_eq!(c.decode, Decode::Jpeg);
    assert_eq!(
        c.note.as_deref(),
        Some("1920x1080@30 not offered raw; using MJPG with JPEG decode")
    );
    assert_eq!(
        gst_caps(&c),
        "image/jpeg,width=1920,height=1080,framerate=30/1"
    );
}

#[test]
fn c920_vga30_is_raw_yuyv() {
    for target in [Target::Software, Target::Hardware] {
        let c = choose(&c920(), &req(640, 480, 30.0, target)).expect("choice");
        assert_eq!(
            (c.fourcc.as_str(), c.exact, c.decode),
            ("YUYV", true, Decode::None)
        );
        assert_eq!(c.note, None);
        assert_eq!(
            gst_caps(&c),
            "video/x-raw,format=YUY2,width=640,height=480,framerate=30/1"
        );
    }
}

#[test]
fn c920_720p30_for_hardware_is_mjpeg_because_yuyv_720p_is_10fps() {
    let c = choose(&c920(), &req(1280, 720, 30.0, Target::Hardware)).expect("choice");
    assert_eq!(
        (c.fourcc.as_str(), c.exact, c.decode),
        ("MJPG", true, Decode::Jpeg)
    );
    // ... but 720p10 is raw.
    let c = choose(&c920(), &req(1280, 720, 10.0, Target::Hardware)).expect("choice");
    assert_eq!((c.fourcc.as_str(), c.exact), ("YUYV", true));
}

#[test]
fn c920_1080p60_takes_the_nearest_mode() {
    let c = choose(&c920(), &req(1920, 1080, 60.0, Target::Software)).expect("choice");
    assert_eq!(
        (c.fourcc.as_str(), c.width, c.height, c.fps),
        ("MJPG", 1920, 1080, 30.0)
    );
    assert!(!c.exact);
    assert_eq!(c.decode, Decode::Jpeg);
    assert_eq!(
        c.note.as_deref(),
        Some("nearest mode MJPG 1920x1080@30 instead of 1920x1080@60 with JPEG decode")
    );
}

#[test]
fn c920_odd_size_prefers_full_rate_over_a_slideshow() {
    // 1280x1024 is not offered; 1280x720 and 1600x896 are near, raw 720p only 10 fps.
    let c = choose(&c920(), &req(1280, 1024, 30.0, Target::Software)).expect("choice");
    assert!(!c.exact);
    assert_eq!(c.fps, 30.0);
    assert_eq!((c.width, c.height), (1600, 896));
    assert_eq!(c.fourcc, "MJPG");
    // Without MJPEG the 5 fps 1080p YUYV loses to 30 fps at a smaller size.
    let yuyv_only: Vec<FormatInfo> = c920().into_iter().filter(|f| f.fourcc == "YUYV").collect();
    let c = choose(&yuyv_only, &req(1920, 1080, 30.0, Target::Software)).expect("choice");
    assert_eq!((c.width, c.height, c.fps), (960, 720, 15.0));
    let c = choose(&yuyv_only, &req(1920, 1080, 5.0, Target::Software)).expect("choice");
    assert_eq!((c.width, c.height, c.fps, c.exact), (1920, 1080, 5.0, true));
}

#[test]
fn passthrough_takes_h264_from_the_camera() {
    let c = choose(&c920(), &req(1920, 1080, 30.0, Target::Passthrough)).expect("choice");
    assert_eq!(
        (c.fourcc.as_str(), c.exact, c.passthrough),
        ("H264", true, true)
    );
    assert_eq!(c.decode, Decode::None);
    assert_eq!(
        gst_caps(&c),
        "video/x-h264,stream-format=byte-stream,width=1920,height=1080,framerate=30/1"
    );
    // Never chosen when an encoder is wanted.
    for target in [Target::Hardware, Target::Software] {
        let c = choose(&c920(), &req(1920, 1080, 30.0, target)).expect("choice");
        assert!(!c.passthrough);
    }
    let e = choose(
        &fixtures::load(fixtures::UNICAM_TC358743).formats,
        &req(1920, 1080, 30.0, Target::Passthrough),
    );
    assert!(matches!(e, Err(CameraError::NoUsableFormat { .. })));
}

#[test]
fn an_h264_only_camera_is_passed_through() {
    let formats: Vec<FormatInfo> = c920().into_iter().filter(|f| f.fourcc == "H264").collect();
    let c = choose(&formats, &req(1280, 720, 30.0, Target::Hardware)).expect("choice");
    assert!(c.passthrough && c.exact);
    assert_eq!(
        c.note.as_deref(),
        Some("the camera offers only H.264; passing it through")
    );
}

#[test]
fn hdmi_bridge_gives_uyvy() {
    let formats = fixtures::load(fixtures::UNICAM_TC358743).formats;
    let c = choose(&formats, &req(1920, 1080, 30.0, Target::Hardware)).expect("choice");
    assert_eq!(
        (c.fourcc.as_str(), c.width, c.height, c.fps, c.exact),
        ("UYVY", 1920, 1080, 30.0, true)
    );
    assert!(
        c.note
            .as_deref()
            .is_some_and(|n| n.contains("not enumerable"))
    );
    assert_eq!(
        gst_caps(&c),
        "video/x-raw,format=UYVY,width=1920,height=1080,framerate=30/1"
    );
    // A 720p request cannot be met: the bridge gives what HDMI sends.
    let c = choose(&formats, &req(1280, 720, 30.0, Target::Hardware)).expect("choice");
    assert_eq!((c.fourcc.as_str(), c.width, c.exact), ("UYVY", 1920, false));
}

#[test]
fn bayer_only_sensors_are_refused_with_the_formats_named() {
    let e = choose(
        &fixtures::load(fixtures::UNICAM_IMX219).formats,
        &req(1920, 1080, 30.0, Target::Hardware),
    );
    let Err(CameraError::NoUsableFormat { reason, offered }) = e else {
        panic!("expected NoUsableFormat, got {e:?}");
    };
    assert_eq!(offered, ["pRAA", "RG10", "RGGB"]);
    assert!(
        reason.contains("Bayer") && reason.contains("libcamera"),
        "{reason}"
    );

    let e = choose(
        &fixtures::load(fixtures::TEGRA_IMX219).formats,
        &req(1920, 1080, 30.0, Target::Software),
    );
    let Err(err @ CameraError::NoUsableFormat { .. }) = e else {
        panic!("expected NoUsableFormat, got {e:?}");
    };
    let text = err.to_string();
    assert!(
        text.contains("nvarguscamerasrc") && text.ends_with("offers: RG10"),
        "{text}"
    );

    assert!(matches!(
        choose(&[], &req(640, 480, 30.0, Target::Software)),
        Err(CameraError::NoUsableFormat { offered, .. }) if offered.is_empty()
    ));
}

#[test]
fn least_work_format_per_encoder() {
    let formats = vec![
        raw_format("YUYV", vec![size(1280, 720, &[30.0])]),
        raw_format("NV12", vec![size(1280, 720, &[30.0])]),
        raw_format("YU12", vec![size(1280, 720, &[30.0])]),
        raw_format("MJPG", vec![size(1280, 720, &[30.0])]),
    ];
    let hw = choose(&formats, &req(1280, 720, 30.0, Target::Hardware)).expect("hw");
    assert_eq!(hw.fourcc, "NV12");
    let sw = choose(&formats, &req(1280, 720, 30.0, Target::Software)).expect("sw");
    assert_eq!(sw.fourcc, "YU12");
    assert_eq!(
        gst_caps(&sw),
        "video/x-raw,format=I420,width=1280,height=720,framerate=30/1"
    );
    // Any raw beats MJPEG, even RGB.
    let rgb = vec![
        raw_format("MJPG", vec![size(1280, 720, &[30.0])]),
        raw_format("RGB3", vec![size(1280, 720, &[30.0])]),
    ];
    let c = choose(&rgb, &req(1280, 720, 30.0, Target::Software)).expect("rgb");
    assert_eq!((c.fourcc.as_str(), c.decode), ("RGB3", Decode::None));
}

#[test]
fn ntsc_rates_match_and_keep_their_fraction() {
    let formats = vec![raw_format("NV12", vec![size(1920, 1080, &[59.94, 29.97])])];
    let c = choose(&formats, &req(1920, 1080, 30.0, Target::Hardware)).expect("choice");
    assert!(c.exact);
    assert_eq!(c.fps, 29.97);
    assert_eq!(
        gst_caps(&c),
        "video/x-raw,format=NV12,width=1920,height=1080,framerate=30000/1001"
    );
}

#[test]
fn ties_prefer_not_exceeding_the_request() {
    let formats = vec![raw_format("YUYV", vec![size(640, 480, &[60.0, 30.0])])];
    let c = choose(&formats, &req(640, 480, 45.0, Target::Software)).expect("choice");
    assert_eq!((c.fps, c.exact), (30.0, false));
    // Equal area difference: the smaller size wins.
    let formats = vec![raw_format(
        "YUYV",
        vec![size(800, 600, &[30.0]), size(400, 600, &[30.0])],
    )];
    let c = choose(&formats, &req(600, 600, 30.0, Target::Software)).expect("choice");
    assert_eq!(c.width, 400);
}

#[test]
fn stepwise_ranges_offer_the_requested_size() {
    let mut f = raw_format("NV12", vec![size(640, 480, &[30.0])]);
    f.stepwise = Some(StepwiseSize {
        min_width: 32,
        max_width: 1920,
        step_width: 2,
        min_height: 32,
        max_height: 1080,
        step_height: 2,
    });
    let c = choose(&[f.clone()], &req(1024, 576, 25.0, Target::Hardware)).expect("choice");
    assert_eq!((c.width, c.height, c.fps, c.exact), (1024, 576, 25.0, true));
    let c = choose(&[f], &req(1023, 576, 25.0, Target::Hardware)).expect("choice");
    assert!(!c.exact);
}

#[test]
fn zero_rate_takes_the_highest() {
    let c = choose(&c920(), &req(640, 480, 0.0, Target::Software)).expect("choice");
    assert_eq!((c.fourcc.as_str(), c.fps, c.exact), ("YUYV", 30.0, true));
}

#[test]
fn caps_for_other_raw_formats() {
    let choice = |fourcc: &str, fps: f64| Choice {
        fourcc: fourcc.into(),
        width: 320,
        height: 240,
        fps,
        exact: true,
        decode: Decode::None,
        passthrough: false,
        note: None,
    };
    assert_eq!(
        gst_caps(&choice("GREY", 7.5)),
        "video/x-raw,format=GRAY8,width=320,height=240,framerate=15/2"
    );
    assert_eq!(
        gst_caps(&choice("BGR3", 0.0)),
        "video/x-raw,format=BGR,width=320,height=240"
    );
}
