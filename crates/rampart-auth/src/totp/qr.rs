//! QR codes of the enrolment URI: terminal art for the CLI, a PNG for the
//! web.
//!
//! Both use error correction level M (15 % of the code may be damaged) and
//! the smallest version the data fits in.

use qrcode::{Color, EcLevel, QrCode};

use super::EnrolError;

/// Pixels per module side in [`qr_png`].
pub const QR_PNG_SCALE: usize = 8;

/// Light modules around the code on each side (the quiet zone ISO/IEC
/// 18004 asks for), in both [`qr_png`] and [`qr_terminal`].
pub const QR_QUIET_ZONE: usize = 4;

/// The code's modules with the quiet zone added: `(side, dark)`, where
/// `dark` is row-major and `side * side` long.
fn modules(data: &str) -> Result<(usize, Vec<bool>), EnrolError> {
    let code =
        QrCode::with_error_correction_level(data.as_bytes(), EcLevel::M).map_err(|e| match e {
            qrcode::types::QrError::DataTooLong => EnrolError::QrTooLong,
            other => EnrolError::Qr(other.to_string()),
        })?;
    let width = code.width();
    let colors = code.to_colors();
    let side = width + 2 * QR_QUIET_ZONE;
    let mut dark = vec![false; side * side];
    for (i, color) in colors.iter().enumerate() {
        let (y, x) = (i / width, i % width);
        let at = (y + QR_QUIET_ZONE) * side + x + QR_QUIET_ZONE;
        if let Some(cell) = dark.get_mut(at) {
            *cell = *color == Color::Dark;
        }
    }
    Ok((side, dark))
}

/// `data` as a QR code drawn with Unicode half blocks, two module rows per
/// text line, with a [`QR_QUIET_ZONE`]-module quiet zone; every line ends
/// with `\n`.
///
/// Light modules are drawn (`█`, `▀`, `▄`) and dark modules left blank, so
/// the code reads correctly on the usual light-on-dark terminal; on a
/// dark-on-light terminal it shows inverted, which many phone scanners
/// still read but not all. Offer the URI as text too.
///
/// # Errors
///
/// [`EnrolError::QrTooLong`] if `data` does not fit in a QR code.
pub fn qr_terminal(data: &str) -> Result<String, EnrolError> {
    let (side, dark) = modules(data)?;
    let light = |x: usize, y: usize| -> bool {
        // Rows past the bottom edge are background (blank).
        y < side && dark.get(y * side + x).is_some_and(|d| !d)
    };
    let lines = side.div_ceil(2);
    let mut out = String::with_capacity(lines * (side * 3 + 1));
    for line in 0..lines {
        let (top, bottom) = (line * 2, line * 2 + 1);
        for x in 0..side {
            out.push(match (light(x, top), light(x, bottom)) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        out.push('\n');
    }
    Ok(out)
}

/// `data` as a QR code in a PNG: 1-bit greyscale, [`QR_PNG_SCALE`] pixels
/// per module, a [`QR_QUIET_ZONE`]-module white border; so the image is
/// `(modules + 2 * QR_QUIET_ZONE) * QR_PNG_SCALE` pixels square.
///
/// # Errors
///
/// [`EnrolError::QrTooLong`] if `data` does not fit in a QR code,
/// [`EnrolError::Png`] if the encoder fails.
pub fn qr_png(data: &str) -> Result<Vec<u8>, EnrolError> {
    let (side, dark) = modules(data)?;
    let px = side * QR_PNG_SCALE;
    let px_u32 = u32::try_from(px).map_err(|_| EnrolError::QrTooLong)?;
    // With 8 pixels per module and 1 bit per pixel, one module is exactly
    // one byte of a row: 0x00 for dark, 0xff for light (1 is white).
    let row_bytes = px.div_ceil(8);
    let mut image = Vec::with_capacity(row_bytes * px);
    for y in 0..px {
        let module_row = y / QR_PNG_SCALE;
        let mut row = vec![0u8; row_bytes];
        for x in 0..px {
            let is_dark = dark
                .get(module_row * side + x / QR_PNG_SCALE)
                .copied()
                .unwrap_or(false);
            if !is_dark {
                if let Some(byte) = row.get_mut(x / 8) {
                    *byte |= 0x80 >> (x % 8);
                }
            }
        }
        image.extend_from_slice(&row);
    }

    let mut png_bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut png_bytes, px_u32, px_u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::One);
    encoder.set_compression(png::Compression::High);
    let png_err = |e: png::EncodingError| EnrolError::Png(e.to_string());
    let mut writer = encoder.write_header().map_err(png_err)?;
    writer.write_image_data(&image).map_err(png_err)?;
    writer.finish().map_err(png_err)?;
    Ok(png_bytes)
}
