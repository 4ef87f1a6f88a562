//! The little H.264 bitstream knowledge the daemon (and its test receiver) needs.

/// One NAL unit of an Annex B byte stream, located in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NalUnit<'a> {
    /// Offset of its start code (of the leading zero of a 4-byte one): where a NAL unit
    /// inserted before this one goes.
    pub start: usize,
    /// The NAL unit from its header byte on, emulation prevention bytes included and the
    /// stream's trailing zero bytes left out.
    pub bytes: &'a [u8],
}

impl NalUnit<'_> {
    /// `nal_unit_type`, the low five bits of the header byte.
    pub fn nal_type(&self) -> u8 {
        self.bytes.first().map_or(0, |b| b & 0x1f)
    }

    /// True for a coded slice (types 1..=5), the VCL NAL units of a picture.
    pub fn is_vcl(&self) -> bool {
        matches!(self.nal_type(), 1..=5)
    }
}

/// Offset of the next `00 00 01` at or after `from`.
fn find_start_code(data: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 3 <= data.len() {
        // No start code can begin at i, i+1 or i+2 when the third byte is above 1.
        if data[i + 2] > 1 {
            i += 3;
        } else if data[i + 2] == 1 && data[i] == 0 && data[i + 1] == 0 {
            return Some(i);
        } else {
            i += 1;
        }
    }
    None
}

/// The NAL units of an Annex B byte stream (3- or 4-byte start codes), in order; bytes
/// before the first start code are skipped, empty NAL units left out.
pub fn nal_units(data: &[u8]) -> impl Iterator<Item = NalUnit<'_>> + '_ {
    let mut next = find_start_code(data, 0);
    let mut prev_end = 0;
    std::iter::from_fn(move || {
        loop {
            let code = next?;
            let begin = code + 3;
            next = find_start_code(data, begin);
            let mut end = next.unwrap_or(data.len());
            // Zero bytes before the next start code are trailing_zero_8bits or the zero
            // of a 4-byte start code; a NAL unit never ends with one (7.4.1).
            while end > begin && data[end - 1] == 0 {
                end -= 1;
            }
            let start = if code > prev_end && data[code - 1] == 0 {
                code - 1
            } else {
                code
            };
            prev_end = end;
            if end > begin {
                return Some(NalUnit {
                    start,
                    bytes: &data[begin..end],
                });
            }
        }
    })
}

/// NAL unit types of an Annex B byte stream, in order.
pub fn nal_types(data: &[u8]) -> impl Iterator<Item = u8> + '_ {
    nal_units(data).map(|n| n.nal_type())
}

/// True when the access unit contains an IDR slice (NAL type 5). Encoders may flag
/// non-IDR I-frames as keyframes too; only an IDR can start a session.
pub fn contains_idr(au: &[u8]) -> bool {
    nal_types(au).any(|t| t == 5)
}

/// Appends `rbsp` to `out` with emulation prevention (7.4.1): `03` before any byte in
/// 0..=3 that follows two zeros, and after two trailing zeros (cabac_zero_words). An RBSP
/// ends with its nonzero stop byte otherwise.
pub fn escape_rbsp(rbsp: &[u8], out: &mut Vec<u8>) {
    let mut zeros = 0;
    for &b in rbsp {
        if zeros >= 2 && b <= 3 {
            out.push(3);
            zeros = 0;
        }
        out.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    if zeros >= 2 {
        out.push(3);
    }
}

/// Removes the emulation prevention bytes of a NAL unit's payload: each `03` after
/// `00 00`.
pub fn unescape_rbsp(ebsp: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ebsp.len());
    let mut zeros = 0;
    for &b in ebsp {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        out.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_idr_after_parameter_sets() {
        let au = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x68, 3, 0, 0, 1, 0x65, 0x88,
        ];
        assert_eq!(nal_types(&au).collect::<Vec<_>>(), [7, 8, 5]);
        assert!(contains_idr(&au));
    }

    #[test]
    fn non_idr_i_and_p_slices_are_not_idr() {
        assert!(!contains_idr(&[
            0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x41, 0x9a
        ]));
        assert!(!contains_idr(&[0, 0, 1]));
        assert!(!contains_idr(&[]));
    }

    #[test]
    fn nal_units_are_located_with_their_start_codes() {
        let au = [
            0xff, 0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x67, 7, 0, 0, 0, 0, 1, 0x65, 0x88, 0,
        ];
        let units: Vec<_> = nal_units(&au).collect();
        let found: Vec<(usize, &[u8])> = units.iter().map(|n| (n.start, n.bytes)).collect();
        assert_eq!(
            found,
            [
                (1, &[0x09, 0xf0][..]),
                (7, &[0x67, 7][..]),
                // trailing_zero_8bits, then a 4-byte start code.
                (13, &[0x65, 0x88][..]),
            ]
        );
        assert_eq!(
            units.iter().map(|n| n.is_vcl()).collect::<Vec<_>>(),
            [false, false, true]
        );
        assert_eq!(nal_units(&[0, 0, 1, 0, 0, 1]).count(), 0, "empty units");
    }

    #[test]
    fn emulation_prevention_round_trips() {
        let cases: [&[u8]; 6] = [
            &[0, 0, 0, 0x80],
            &[0, 0, 1, 0, 0, 2, 0, 0, 3],
            &[0, 0, 4],
            &[1, 0, 0, 0, 0, 0, 0],
            &[0, 0, 3, 0, 0, 3],
            &[],
        ];
        for rbsp in cases {
            let mut ebsp = Vec::new();
            escape_rbsp(rbsp, &mut ebsp);
            assert!(
                !ebsp.windows(3).any(|w| w[0] == 0 && w[1] == 0 && w[2] <= 2),
                "{ebsp:?}"
            );
            assert_eq!(unescape_rbsp(&ebsp), rbsp, "{ebsp:?}");
        }
        let mut ebsp = Vec::new();
        escape_rbsp(&[0, 0, 1, 0, 0, 0, 4], &mut ebsp);
        assert_eq!(ebsp, [0, 0, 3, 1, 0, 0, 3, 0, 4]);
    }
}
