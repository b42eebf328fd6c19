//! PDF: a minimal one-page PDF around the fitted JPEG, at the rule's physical size.

use super::Target;

/// Page size in PostScript points (1/72 inch) for `pixels` at `dpi`.
pub(super) fn points(pixels: u32, dpi: u16) -> String {
    format!("{:.2}", f64::from(pixels) * 72.0 / f64::from(dpi))
}

/// A minimal single-page PDF 1.4 that shows the JPEG (DCTDecode, no re-encoding) over the whole
/// page, at the physical size implied by the rule's pixels and DPI; `grey` for a one-component
/// JPEG (DeviceGray).
pub(super) fn wrap_pdf(jpeg: &[u8], target: &Target, grey: bool) -> Vec<u8> {
    let (pw, ph) = (
        points(target.width, target.dpi),
        points(target.height, target.dpi),
    );
    let content = format!("q {pw} 0 0 {ph} 0 0 cm /Im0 Do Q");
    let mut out = Vec::with_capacity(jpeg.len() + 1024);
    // The binary comment line tells transfer tools the file is not text.
    out.extend_from_slice(b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n");
    let mut offsets = Vec::with_capacity(5);
    let mut object = |out: &mut Vec<u8>, head: String, stream: Option<&[u8]>| {
        offsets.push(out.len());
        out.extend_from_slice(head.as_bytes());
        if let Some(data) = stream {
            out.extend_from_slice(b"\nstream\n");
            out.extend_from_slice(data);
            out.extend_from_slice(b"\nendstream");
        }
        out.extend_from_slice(b"\nendobj\n");
    };
    object(
        &mut out,
        "1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        None,
    );
    object(
        &mut out,
        "2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        None,
    );
    object(
        &mut out,
        format!(
            "3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {pw} {ph}] \
             /Resources << /XObject << /Im0 4 0 R >> >> /Contents 5 0 R >>"
        ),
        None,
    );
    object(
        &mut out,
        format!(
            "4 0 obj\n<< /Type /XObject /Subtype /Image /Width {} /Height {} \
             /ColorSpace /{} /BitsPerComponent 8 /Filter /DCTDecode /Length {} >>",
            target.width,
            target.height,
            if grey { "DeviceGray" } else { "DeviceRGB" },
            jpeg.len()
        ),
        Some(jpeg),
    );
    object(
        &mut out,
        format!("5 0 obj\n<< /Length {} >>", content.len()),
        Some(content.as_bytes()),
    );
    let xref = out.len();
    out.extend_from_slice(b"xref\n0 6\n0000000000 65535 f \n");
    for offset in offsets {
        // Each xref entry is exactly 20 bytes, as the format requires.
        out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!("trailer\n<< /Size 6 /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n").as_bytes(),
    );
    out
}
