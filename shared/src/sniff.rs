//! Content sniffing: what a file is, from its first bytes, never from its name.

/// Image containers the pipeline can be handed. `Heif` is recognised so it gets a clear answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    Jpeg,
    Png,
    Webp,
    Gif,
    Tiff,
    Bmp,
    Heif,
}

impl Sniffed {
    /// MIME type of the container.
    pub fn content_type(self) -> &'static str {
        match self {
            Sniffed::Jpeg => "image/jpeg",
            Sniffed::Png => "image/png",
            Sniffed::Webp => "image/webp",
            Sniffed::Gif => "image/gif",
            Sniffed::Tiff => "image/tiff",
            Sniffed::Bmp => "image/bmp",
            Sniffed::Heif => "image/heif",
        }
    }
}

/// Recognise an image container by its magic bytes.
pub fn sniff_image(bytes: &[u8]) -> Option<Sniffed> {
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    if starts(&[0xFF, 0xD8, 0xFF]) {
        Some(Sniffed::Jpeg)
    } else if starts(b"\x89PNG\r\n\x1a\n") {
        Some(Sniffed::Png)
    } else if bytes.len() >= 12 && starts(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Some(Sniffed::Webp)
    } else if starts(b"GIF87a") || starts(b"GIF89a") {
        Some(Sniffed::Gif)
    } else if starts(b"II*\0") || starts(b"MM\0*") {
        Some(Sniffed::Tiff)
    } else if starts(b"BM") && bytes.len() > 26 {
        Some(Sniffed::Bmp)
    } else if bytes.len() >= 12
        && &bytes[4..8] == b"ftyp"
        && matches!(
            &bytes[8..12],
            b"heic" | b"heix" | b"mif1" | b"msf1" | b"heim" | b"heis" | b"avif"
        )
    {
        Some(Sniffed::Heif)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_magic_and_rejects_text() {
        assert_eq!(sniff_image(b"\xFF\xD8\xFF\xE0rest"), Some(Sniffed::Jpeg));
        assert_eq!(sniff_image(b"\x89PNG\r\n\x1a\nrest"), Some(Sniffed::Png));
        assert_eq!(sniff_image(b"RIFF\0\0\0\0WEBPVP8 "), Some(Sniffed::Webp));
        assert_eq!(sniff_image(b"hello, I am a text file renamed .png"), None);
        assert_eq!(sniff_image(b""), None);
        assert_eq!(sniff_image(b"BM"), None);
    }
}
