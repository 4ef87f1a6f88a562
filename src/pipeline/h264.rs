//! The little H.264 bitstream knowledge the daemon (and its test receiver) needs.

/// NAL unit types of an Annex B byte stream, in order.
pub fn nal_types(data: &[u8]) -> impl Iterator<Item = u8> + '_ {
    data.windows(4)
        .filter(|w| w[0] == 0 && w[1] == 0 && w[2] == 1)
        .map(|w| w[3] & 0x1f)
}

/// True when the access unit contains an IDR slice (NAL type 5). Encoders may flag
/// non-IDR I-frames as keyframes too; only an IDR can start a session.
pub fn contains_idr(au: &[u8]) -> bool {
    nal_types(au).any(|t| t == 5)
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
}
