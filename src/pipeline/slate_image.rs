//! Renders the "camera offline" slate as a raw I420 frame: a dark background with the
//! words in large block letters, so no font library (pango) is needed on the board.

/// 5x7 glyphs, one row per byte, bit 4 = leftmost column.
fn glyph(c: char) -> [u8; 7] {
    match c {
        'A' => [0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11],
        'C' => [0x0e, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0e],
        'E' => [0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f],
        'F' => [0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x10],
        'I' => [0x0e, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f],
        'M' => [0x11, 0x1b, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x19, 0x15, 0x13, 0x11, 0x11, 0x11],
        'O' => [0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e],
        'R' => [0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11],
        _ => [0; 7],
    }
}

pub const TEXT: &str = "CAMERA OFFLINE";
const BACKGROUND_Y: u8 = 40;
const TEXT_Y: u8 = 235;

/// An I420 frame of `width`x`height` (both even) with [`TEXT`] centred.
pub fn render(width: u32, height: u32) -> Vec<u8> {
    let (w, h) = (width as usize, height as usize);
    let mut frame = vec![BACKGROUND_Y; w * h];
    frame.resize(w * h + 2 * (w / 2) * (h / 2), 128);
    // Each glyph cell is 6x8 units (5x7 plus spacing); fit the text in 80 % of the width.
    let cells = TEXT.chars().count();
    let unit = ((w * 8 / 10) / (cells * 6)).min(h / 16).max(1);
    let text_w = cells * 6 * unit - unit;
    let (x0, y0) = (
        (w.saturating_sub(text_w)) / 2,
        (h.saturating_sub(7 * unit)) / 2,
    );
    for (i, c) in TEXT.chars().enumerate() {
        let rows = glyph(c);
        for (ry, bits) in rows.iter().enumerate() {
            for rx in 0..5 {
                if bits & (0x10 >> rx) == 0 {
                    continue;
                }
                let (px, py) = (x0 + (i * 6 + rx) * unit, y0 + ry * unit);
                for y in py..(py + unit).min(h) {
                    let row = &mut frame[y * w..y * w + w];
                    for p in row.iter_mut().take((px + unit).min(w)).skip(px) {
                        *p = TEXT_Y;
                    }
                }
            }
        }
    }
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_and_content() {
        let (w, h) = (640usize, 360usize);
        let f = render(w as u32, h as u32);
        assert_eq!(f.len(), w * h * 3 / 2);
        let lit = f[..w * h].iter().filter(|&&y| y == TEXT_Y).count();
        // The letters cover a visible but small part of the picture.
        assert!(lit > w * h / 100 && lit < w * h / 4, "{lit}");
        // Corners are background; chroma is neutral.
        assert_eq!(f[0], BACKGROUND_Y);
        assert!(f[w * h..].iter().all(|&c| c == 128));
    }

    #[test]
    fn tiny_frames_do_not_panic() {
        assert_eq!(render(16, 16).len(), 16 * 16 * 3 / 2);
    }
}
