//! The enrollment QR code of an `otpauth://` URI, as SVG or PNG.

use super::UserError;

fn qr_code(uri: &str) -> Result<qrcode::QrCode, UserError> {
    qrcode::QrCode::new(uri.as_bytes()).map_err(|e| UserError::Internal(e.to_string()))
}

/// The QR code of `uri` as an SVG document.
pub fn qr_svg(uri: &str) -> Result<String, UserError> {
    Ok(qr_code(uri)?.render::<qrcode::render::svg::Color>().min_dimensions(240, 240).build())
}

/// The QR code of `uri` as a grayscale PNG: 8 pixels a module, a 4-module quiet zone.
pub fn qr_png(uri: &str) -> Result<Vec<u8>, UserError> {
    const SCALE: usize = 8;
    const QUIET: usize = 4;
    let other = |e: String| UserError::Internal(e);
    let code = qr_code(uri)?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color == qrcode::Color::Dark {
            let (x, y) = ((i % modules + QUIET) * SCALE, (i / modules + QUIET) * SCALE);
            for row in pixels.chunks_mut(side).skip(y).take(SCALE) {
                row.iter_mut().skip(x).take(SCALE).for_each(|p| *p = 0);
            }
        }
    }
    let mut out = Vec::new();
    let size = u32::try_from(side).map_err(|e| other(e.to_string()))?;
    let mut encoder = png::Encoder::new(&mut out, size, size);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| other(e.to_string()))?;
    writer.write_image_data(&pixels).map_err(|e| other(e.to_string()))?;
    writer.finish().map_err(|e| other(e.to_string()))?;
    Ok(out)
}
