//! The capture-time SEI: each encoded access unit carries the wall-clock time its frame
//! was captured, in an H.264 SEI NAL unit that decoders ignore.
//!
//! # Format (a public contract)
//!
//! One SEI NAL unit (`nal_unit_type` 6, `nal_ref_idc` 0: header byte `0x06`) holding one
//! `user_data_unregistered` SEI message (payload type 5, H.264 D.1.7):
//!
//! | bytes | field                                                                   |
//! |-------|-------------------------------------------------------------------------|
//! | 1     | `last_payload_type_byte` = 5 (user_data_unregistered)                   |
//! | 1     | `last_payload_size_byte` = 24                                           |
//! | 16    | `uuid_iso_iec_11578`: `e1d9c4a6-5b3f-4f0e-9c2d-7a61b8e0c3f5`, that order |
//! | 8     | capture time: µs since 1970-01-01T00:00:00Z, unsigned big-endian        |
//! | 1     | `rbsp_trailing_bits` = `0x80`                                           |
//!
//! Emulation prevention (7.4.1) applies to everything after the header byte: the writer
//! turns `00 00 0x` (x in 0..=3) into `00 00 03 0x` and a reader removes each `03` after
//! `00 00`. Readers take the 8 bytes after the UUID and ignore any that follow.
//!
//! The writer puts the NAL unit, with a 4-byte start code, right before the access unit's
//! first VCL NAL unit (a coded slice, types 1..=5): after an access unit delimiter, SPS,
//! PPS and any other SEI already there, as 7.4.1.2.3 orders them. An access unit with no
//! slice gets it at its end. A reader finds it anywhere in the access unit, among other
//! SEI NAL units and after other messages in the same one; the first match wins.

use super::h264::{self, NalUnit};

/// The UUID of an edgecam capture-time `user_data_unregistered` message,
/// `e1d9c4a6-5b3f-4f0e-9c2d-7a61b8e0c3f5`.
pub const CAPTURE_TIME_UUID: [u8; 16] = [
    0xe1, 0xd9, 0xc4, 0xa6, 0x5b, 0x3f, 0x4f, 0x0e, 0x9c, 0x2d, 0x7a, 0x61, 0xb8, 0xe0, 0xc3, 0xf5,
];

const NAL_TYPE_SEI: u8 = 6;
const USER_DATA_UNREGISTERED: u32 = 5;
/// UUID and time.
const PAYLOAD_SIZE: usize = 24;

/// The capture-time SEI NAL unit for `unix_us`, with its 4-byte start code.
fn sei_nal(unix_us: u64) -> Vec<u8> {
    let mut rbsp = Vec::with_capacity(PAYLOAD_SIZE + 3);
    rbsp.push(USER_DATA_UNREGISTERED as u8);
    rbsp.push(PAYLOAD_SIZE as u8);
    rbsp.extend_from_slice(&CAPTURE_TIME_UUID);
    rbsp.extend_from_slice(&unix_us.to_be_bytes());
    rbsp.push(0x80);
    let mut nal = Vec::with_capacity(rbsp.len() + 8);
    nal.extend_from_slice(&[0, 0, 0, 1, NAL_TYPE_SEI]);
    h264::escape_rbsp(&rbsp, &mut nal);
    nal
}

/// The access unit `au` (Annex B) with a capture-time SEI for `unix_us` (µs since the Unix
/// epoch) inserted before its first slice, or at its end when it has none.
///
/// `au` must be byte-stream (`stream-format=byte-stream`): length-prefixed `avc` data has
/// no start codes, and a length that reads as one would have the SEI written into the
/// middle of a NAL unit. A capture-time SEI already in `au` is left there and a second one
/// added, which [`capture_time`] would not see: stamp each access unit once.
pub fn with_capture_time(au: &[u8], unix_us: u64) -> Vec<u8> {
    let at = h264::nal_units(au)
        .find(NalUnit::is_vcl)
        .map_or(au.len(), |n| n.start);
    let sei = sei_nal(unix_us);
    let mut out = Vec::with_capacity(au.len() + sei.len());
    out.extend_from_slice(&au[..at]);
    out.extend_from_slice(&sei);
    out.extend_from_slice(&au[at..]);
    out
}

/// The capture time (µs since the Unix epoch) of the access unit `au`: from the first
/// edgecam capture-time message in its SEI NAL units, `None` if there is none.
pub fn capture_time(au: &[u8]) -> Option<u64> {
    h264::nal_units(au)
        .filter(|n| n.nal_type() == NAL_TYPE_SEI)
        .find_map(|n| sei_capture_time(&h264::unescape_rbsp(&n.bytes[1..])))
}

/// Walks the SEI messages of one SEI RBSP (7.3.2.3) for ours.
fn sei_capture_time(rbsp: &[u8]) -> Option<u64> {
    // The stop bit sits in the last nonzero byte; messages end before it.
    let end = rbsp.iter().rposition(|&b| b != 0)?;
    let mut pos = 0;
    while pos < end {
        let payload_type = read_ff_coded(rbsp, &mut pos)?;
        let size = read_ff_coded(rbsp, &mut pos)? as usize;
        let payload = rbsp.get(pos..pos.checked_add(size)?)?;
        pos += size;
        if payload_type == USER_DATA_UNREGISTERED
            && payload.len() >= PAYLOAD_SIZE
            && payload[..16] == CAPTURE_TIME_UUID
        {
            let time: [u8; 8] = payload[16..PAYLOAD_SIZE].try_into().ok()?;
            return Some(u64::from_be_bytes(time));
        }
    }
    None
}

/// A payload type or size: 0xFF bytes each adding 255, then a last byte (7.3.2.3.1).
fn read_ff_coded(rbsp: &[u8], pos: &mut usize) -> Option<u32> {
    let mut value: u32 = 0;
    loop {
        let b = *rbsp.get(*pos)?;
        *pos += 1;
        value = value.checked_add(u32::from(b))?;
        if b != 0xff {
            return Some(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const AUD: &[u8] = &[0, 0, 0, 1, 0x09, 0xf0];
    const SPS: &[u8] = &[0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1e, 0xd9];
    const PPS: &[u8] = &[0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80];
    const IDR: &[u8] = &[0, 0, 0, 1, 0x65, 0x88, 0x84, 0x00, 0x21];
    const NON_IDR: &[u8] = &[0, 0, 0, 1, 0x41, 0x9a, 0x02, 0x03];
    /// 2024-01-01T00:00:00Z.
    const T: u64 = 1_704_067_200_000_000;

    fn au(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn types(au: &[u8]) -> Vec<u8> {
        h264::nal_types(au).collect()
    }

    /// An SEI NAL unit (4-byte start code) holding `messages`, each (type, payload).
    fn sei(messages: &[(u32, &[u8])]) -> Vec<u8> {
        let mut rbsp = Vec::new();
        for (t, payload) in messages {
            for mut v in [*t as usize, payload.len()] {
                while v >= 255 {
                    rbsp.push(0xff);
                    v -= 255;
                }
                rbsp.push(v as u8);
            }
            rbsp.extend_from_slice(payload);
        }
        rbsp.push(0x80);
        let mut nal = vec![0, 0, 0, 1, 0x06];
        h264::escape_rbsp(&rbsp, &mut nal);
        nal
    }

    fn ours(unix_us: u64) -> Vec<u8> {
        [&CAPTURE_TIME_UUID[..], &unix_us.to_be_bytes()].concat()
    }

    #[test]
    fn the_written_nal_unit_is_the_documented_one() {
        let nal = sei_nal(0x0102_0304_0506_0708);
        let mut expected = vec![0, 0, 0, 1, 0x06, 5, 24];
        expected.extend_from_slice(&CAPTURE_TIME_UUID);
        expected.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 0x80]);
        assert_eq!(nal, expected);
        assert_eq!(nal, sei(&[(5, &ours(0x0102_0304_0506_0708))]));
    }

    #[test]
    fn round_trip() {
        let original = au(&[AUD, SPS, PPS, IDR]);
        let stamped = with_capture_time(&original, T);
        assert_eq!(capture_time(&stamped), Some(T));
        assert_eq!(capture_time(&original), None);
        // Nothing else changed: removing the SEI gives the original back.
        let sei = h264::nal_units(&stamped)
            .find(|n| n.nal_type() == 6)
            .expect("an SEI");
        let sei_len = 4 + sei.bytes.len();
        let mut without = stamped.clone();
        without.drain(sei.start..sei.start + sei_len);
        assert_eq!(without, original);
    }

    #[test]
    fn inserted_after_the_parameter_sets_before_an_idr_slice() {
        let stamped = with_capture_time(&au(&[AUD, SPS, PPS, IDR]), T);
        assert_eq!(types(&stamped), [9, 7, 8, 6, 5]);
        assert!(stamped.ends_with(IDR));
    }

    #[test]
    fn inserted_before_a_non_idr_slice() {
        let stamped = with_capture_time(&au(&[AUD, NON_IDR]), T);
        assert_eq!(types(&stamped), [9, 6, 1]);
        assert_eq!(capture_time(&stamped), Some(T));
        // Two slices: before the first.
        let stamped = with_capture_time(&au(&[NON_IDR, NON_IDR]), T);
        assert_eq!(types(&stamped), [6, 1, 1]);
    }

    #[test]
    fn inserted_after_other_sei() {
        let other = sei(&[(6, &[0x84])]);
        let stamped = with_capture_time(&au(&[AUD, SPS, PPS, &other, IDR]), T);
        assert_eq!(types(&stamped), [9, 7, 8, 6, 6, 5]);
        assert_eq!(capture_time(&stamped), Some(T));
    }

    #[test]
    fn appended_when_there_is_no_slice() {
        let stamped = with_capture_time(&au(&[AUD, SPS, PPS]), T);
        assert_eq!(types(&stamped), [9, 7, 8, 6]);
        assert_eq!(capture_time(&stamped), Some(T));
        assert_eq!(capture_time(&with_capture_time(&[], T)), Some(T));
    }

    #[test]
    fn times_that_need_emulation_prevention() {
        for t in [
            0,
            1,
            3,
            0x0000_0100_0000_0001,
            0x0000_0001_0000_0000,
            0x0100_0000_0200_0003,
            0x0000_0000_0000_0100,
            u64::MAX,
        ] {
            let stamped = with_capture_time(&au(&[AUD, SPS, PPS, IDR]), t);
            assert_eq!(capture_time(&stamped), Some(t), "{t:#x}");
            assert_eq!(types(&stamped), [9, 7, 8, 6, 5], "{t:#x}");
            let nal = sei_nal(t);
            assert!(
                !nal[4..]
                    .windows(3)
                    .any(|w| w[0] == 0 && w[1] == 0 && w[2] <= 2),
                "{t:#x}: {nal:02x?}"
            );
        }
        // 00 00 00 01 in the time: each pair of zeros is followed by an 03.
        let nal = sei_nal(0x0000_0001_0000_0000);
        assert_eq!(nal[4 + 3 + 16..], [0, 0, 3, 0, 1, 0, 0, 3, 0, 0, 0x80]);
    }

    #[test]
    fn found_after_other_messages_and_other_sei_units() {
        let x264_uuid = [
            0xdc, 0x45, 0xe9, 0xbd, 0xe6, 0xd9, 0x48, 0xb7, 0x96, 0x2c, 0xd8, 0x20, 0xd9, 0x23,
            0xee, 0xef,
        ];
        // A foreign message long enough for a two-byte size (255 + 45).
        let long = [&x264_uuid[..], &[b'x'; 284]].concat();
        let first = sei(&[(6, &[0x84]), (5, &long)]);
        assert_eq!(first[5..8], [6, 1, 0x84]);
        assert_eq!(first[8..11], [5, 0xff, 45]);
        let second = sei(&[
            (6, &[0x84]),
            (1, &[0x10, 0x20]),
            (5, &ours(T)),
            (5, &ours(1)),
        ]);
        let stamped = au(&[AUD, SPS, PPS, &first, &second, IDR]);
        assert_eq!(capture_time(&stamped), Some(T), "the first of ours");
        // A payload type coded over two bytes is skipped too.
        let odd = sei(&[(300, &[1, 2, 3]), (5, &ours(T))]);
        assert_eq!(odd[5..7], [0xff, 45]);
        assert_eq!(capture_time(&au(&[&odd, IDR])), Some(T));
    }

    #[test]
    fn a_foreign_uuid_is_not_ours() {
        let mut uuid = CAPTURE_TIME_UUID;
        uuid[15] ^= 1;
        let foreign = sei(&[(5, &[&uuid[..], &T.to_be_bytes()].concat())]);
        assert_eq!(capture_time(&au(&[AUD, &foreign, IDR])), None);
        // Our UUID in another payload type, or without a time, is not ours either.
        let registered = sei(&[(4, &ours(T))]);
        let short = sei(&[(5, &CAPTURE_TIME_UUID)]);
        assert_eq!(capture_time(&au(&[&registered, &short, IDR])), None);
    }

    #[test]
    fn three_and_four_byte_start_codes() {
        let three: Vec<u8> = [AUD, SPS, PPS, IDR]
            .iter()
            .flat_map(|p| p[1..].iter().copied())
            .collect();
        assert_eq!(three[..4], [0, 0, 1, 0x09]);
        let stamped = with_capture_time(&three, T);
        assert_eq!(types(&stamped), [9, 7, 8, 6, 5]);
        assert_eq!(capture_time(&stamped), Some(T));
        // Our SEI written with a 3-byte start code is found too.
        let sei3 = &sei(&[(5, &ours(T))])[1..];
        assert_eq!(
            capture_time(&au(&[&three[..9], sei3, &three[9..]])),
            Some(T)
        );
        let stamped = with_capture_time(&au(&[AUD, SPS, PPS, IDR]), T);
        assert_eq!(capture_time(&stamped), Some(T));
    }

    #[test]
    fn broken_sei_is_not_a_time() {
        let full = sei(&[(5, &ours(T))]);
        for cut in 5..full.len() - 1 {
            assert_eq!(capture_time(&full[..cut]), None, "cut at {cut}");
        }
        assert_eq!(capture_time(&[0, 0, 1, 0x06]), None);
        assert_eq!(capture_time(&[0, 0, 1, 0x06, 0xff, 0xff, 0xff]), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: crate::test_cases(1_000),
            ..ProptestConfig::default()
        })]

        /// Any time round-trips through any access unit, which keeps its NAL units.
        #[test]
        fn any_time_round_trips(
            t: u64,
            parts in proptest::collection::vec(
                proptest::sample::select(vec![AUD, SPS, PPS, IDR, NON_IDR]),
                0..6,
            ),
        ) {
            let original = parts.concat();
            let stamped = with_capture_time(&original, t);
            prop_assert_eq!(capture_time(&stamped), Some(t));
            let mut expected = types(&original);
            let at = expected.iter().position(|t| (1..=5).contains(t)).unwrap_or(expected.len());
            expected.insert(at, 6);
            prop_assert_eq!(types(&stamped), expected);
        }

        /// Arbitrary bytes: no panic.
        #[test]
        fn arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = capture_time(&data);
            let mut with_sei = vec![0, 0, 1, 0x06];
            with_sei.extend_from_slice(&data);
            let _ = capture_time(&with_sei);
        }
    }

    mod gstreamer {
        //! A real encoder and GStreamer's parsers, muxers and payloaders keep the SEI.

        use gstreamer as gst;
        use gstreamer::prelude::*;
        use gstreamer_app as gst_app;

        use super::super::{capture_time, h264, with_capture_time};
        use super::T;

        const FRAMES: usize = 10;
        const CAPS: &str = "video/x-h264,stream-format=byte-stream,alignment=au";
        const WAIT: gst::ClockTime = gst::ClockTime::from_seconds(10);

        fn pipeline(launch: &str) -> (gst::Pipeline, gst_app::AppSink) {
            crate::pipeline::init().expect("GStreamer");
            let pipeline = gst::parse::launch(launch)
                .expect(launch)
                .downcast::<gst::Pipeline>()
                .expect("a pipeline");
            let sink = pipeline
                .by_name("sink")
                .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
                .expect("appsink");
            (pipeline, sink)
        }

        /// Every sample until EOS; panics on an error or a stall.
        fn drain(pipeline: &gst::Pipeline, sink: &gst_app::AppSink) -> Vec<gst::Buffer> {
            let mut buffers = Vec::new();
            while let Some(sample) = sink.try_pull_sample(WAIT) {
                buffers.push(sample.buffer_owned().expect("a buffer"));
            }
            let bus = pipeline.bus().expect("bus");
            if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
                panic!("{msg:?}");
            }
            assert!(sink.is_eos(), "stalled after {} buffers", buffers.len());
            pipeline.set_state(gst::State::Null).expect("stop");
            buffers
        }

        /// Access units of a test pattern as the capture pipeline ends them.
        fn encoded() -> (gst::Caps, Vec<gst::Buffer>) {
            let (pipeline, sink) = pipeline(&format!(
                "videotestsrc num-buffers={FRAMES} \
                 ! video/x-raw,width=320,height=240,framerate=30/1 \
                 ! x264enc speed-preset=ultrafast key-int-max=4 ! h264parse config-interval=-1 \
                 ! {CAPS} ! appsink name=sink sync=false"
            ));
            pipeline.set_state(gst::State::Playing).expect("play");
            let first = sink.try_pull_preroll(WAIT).expect("preroll");
            let caps = first.caps().expect("caps").to_owned();
            let buffers = drain(&pipeline, &sink);
            assert_eq!(buffers.len(), FRAMES);
            (caps, buffers)
        }

        /// The access unit without its SPS and PPS, as an encoder that sends them once
        /// leaves its later IDRs.
        fn without_parameter_sets(au: &[u8]) -> Vec<u8> {
            h264::nal_units(au)
                .filter(|n| !matches!(n.nal_type(), 7 | 8))
                .flat_map(|n| [&[0, 0, 0, 1][..], n.bytes])
                .flatten()
                .copied()
                .collect()
        }

        /// Stamps the encoded access units (the first keeping its parameter sets only, with
        /// `strip`), sends them through `middle` and returns the access units that came
        /// out, with the times sent.
        fn relay(middle: &str, strip: bool) -> (Vec<Vec<u8>>, Vec<u64>) {
            let (caps, buffers) = encoded();
            let (pipeline, sink) = pipeline(&format!(
                "appsrc name=src format=time ! h264parse config-interval=-1 ! {middle} \
                 ! h264parse config-interval=-1 ! {CAPS} ! appsink name=sink sync=false"
            ));
            let src = pipeline
                .by_name("src")
                .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
                .expect("appsrc");
            src.set_caps(Some(&caps));
            pipeline.set_state(gst::State::Playing).expect("play");
            let mut sent = Vec::new();
            for (i, b) in buffers.iter().enumerate() {
                let t = T + i as u64 * 33_333;
                let map = b.map_readable().expect("readable");
                let au = match strip && i > 0 {
                    true => without_parameter_sets(map.as_slice()),
                    false => map.as_slice().to_vec(),
                };
                let mut out = gst::Buffer::from_mut_slice(with_capture_time(&au, t));
                {
                    let out = out.get_mut().expect("unshared");
                    out.set_pts(b.pts());
                    out.set_dts(b.dts());
                    out.set_duration(b.duration());
                    out.set_flags(b.flags());
                }
                src.push_buffer(out).expect("push");
                sent.push(t);
            }
            src.end_of_stream().expect("eos");
            let got = drain(&pipeline, &sink)
                .iter()
                .map(|b| b.map_readable().expect("readable").as_slice().to_vec())
                .collect();
            (got, sent)
        }

        /// The times sent come out in order; returns the access units.
        fn check(middle: &str, strip: bool) -> Vec<Vec<u8>> {
            let (aus, sent) = relay(middle, strip);
            let got: Vec<Option<u64>> = aus.iter().map(|au| capture_time(au)).collect();
            let sent: Vec<Option<u64>> = sent.into_iter().map(Some).collect();
            assert_eq!(got, sent, "through {middle}");
            aus
        }

        #[test]
        fn kept_through_mpegts() {
            check("mpegtsmux ! tsdemux ignore-pcr=true", false);
        }

        #[test]
        fn kept_through_rtp() {
            check("rtph264pay ! rtph264depay", false);
        }

        #[test]
        fn kept_through_h264parse_alone() {
            check("identity", false);
        }

        /// h264parse puts the SPS and PPS it repeats after the AUD, before our SEI.
        #[test]
        fn kept_when_h264parse_inserts_parameter_sets() {
            let aus = check("identity", true);
            // The first keeps x264's own SEI too.
            let later_idrs: Vec<Vec<u8>> = aus[1..]
                .iter()
                .filter(|au| h264::contains_idr(au))
                .map(|au| h264::nal_types(au).collect())
                .collect();
            assert!(!later_idrs.is_empty());
            assert!(
                later_idrs.iter().all(|t| t == &[9, 7, 8, 6, 5]),
                "{later_idrs:?}"
            );
        }
    }
}
