//! Content sniffing: what a file is, from its first bytes, never from its name. The API refuses
//! what this does not recognise, and the decoder routes HEIF/AVIF to libheif by it, so both
//! judge an upload the same way.

/// Image containers the pipeline can be handed. `Heif` is recognised so it gets a clear answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    Jpeg,
    Png,
    Webp,
    Gif,
    Tiff,
    Bmp,
    /// HEIF with HEVC (HEIC) or AV1 (AVIF) images: see [`sniff_heif`].
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

/// The image codec an ISO-BMFF (HEIF) file's brands announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeifCodec {
    /// HEVC images (HEIC, as iPhones write), or a plain `mif1`/`msf1` HEIF.
    Hevc,
    /// AV1 images (AVIF).
    Av1,
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
    } else if sniff_heif(bytes).is_some() {
        Some(Sniffed::Heif)
    } else {
        None
    }
}

/// Recognise HEIF/AVIF by the leading `ftyp` box (ISO/IEC 14496-12 §4.3: size, `ftyp`, major
/// brand, minor version, then compatible brands), looking at the major brand *and* the
/// compatible ones, since writers may put a generic brand first (`mif1` major with `heic`
/// compatible is common). The HEVC brands (ISO/IEC 23008-12 annex B) win over the AV1 ones
/// (AV1 Image File Format §8); `mif1`/`msf1` alone as major brand mean "some HEIF", read as HEVC.
pub fn sniff_heif(bytes: &[u8]) -> Option<HeifCodec> {
    // The smallest `ftyp` box has its 16 fixed bytes.
    if bytes.len() < 16 || &bytes[4..8] != b"ftyp" {
        return None;
    }
    let box_len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let box_len = usize::try_from(box_len)
        .unwrap_or(usize::MAX)
        .clamp(16, bytes.len().min(4096));
    // Major brand at 8..12, minor version at 12..16, compatible brands from 16.
    let brands = std::iter::once(&bytes[8..12]).chain(bytes[16..box_len].chunks_exact(4));
    let (mut hevc, mut av1) = (false, false);
    for brand in brands {
        match brand {
            b"heic" | b"heix" | b"heim" | b"heis" | b"hevc" | b"hevx" | b"hevm" | b"hevs" => {
                hevc = true;
            }
            b"avif" | b"avis" => av1 = true,
            // `mif1`/`msf1`/`miaf` say "some HEIF"; the codec brands above say which.
            _ => {}
        }
    }
    if hevc {
        Some(HeifCodec::Hevc)
    } else if av1 {
        Some(HeifCodec::Av1)
    } else if matches!(&bytes[8..12], b"mif1" | b"msf1") {
        Some(HeifCodec::Hevc)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `ftyp` box with `major` and `compatible` brands, then a few bytes of the next box.
    fn ftyp(major: &[u8; 4], compatible: &[&[u8; 4]]) -> Vec<u8> {
        let len = u32::try_from(16 + 4 * compatible.len()).unwrap_or(u32::MAX);
        let mut out = len.to_be_bytes().to_vec();
        out.extend_from_slice(b"ftyp");
        out.extend_from_slice(major);
        out.extend_from_slice(&[0, 0, 0, 0]);
        for brand in compatible {
            out.extend_from_slice(*brand);
        }
        out.extend_from_slice(b"\0\0\0\x08meta");
        out
    }

    #[test]
    fn recognises_every_container() {
        let mut bmp = b"BM".to_vec();
        bmp.resize(54, 0);
        let cases: [(&[u8], Sniffed); 10] = [
            (b"\xFF\xD8\xFF\xE0rest", Sniffed::Jpeg),
            (b"\x89PNG\r\n\x1a\nrest", Sniffed::Png),
            (b"RIFF\0\0\0\0WEBPVP8 ", Sniffed::Webp),
            (b"GIF87a\x01\0\x01\0", Sniffed::Gif),
            (b"GIF89a\x01\0\x01\0", Sniffed::Gif),
            (b"II*\0\x08\0\0\0", Sniffed::Tiff),
            (b"MM\0*\0\0\0\x08", Sniffed::Tiff),
            (&bmp, Sniffed::Bmp),
            (&ftyp(b"heic", &[b"mif1", b"heic"]), Sniffed::Heif),
            (&ftyp(b"avif", &[b"mif1", b"miaf"]), Sniffed::Heif),
        ];
        for (bytes, want) in cases {
            assert_eq!(sniff_image(bytes), Some(want), "{want:?}");
        }
    }

    #[test]
    fn rejects_text_and_truncated_magic() {
        assert_eq!(sniff_image(b"hello, I am a text file renamed .png"), None);
        assert_eq!(sniff_image(b""), None);
        assert_eq!(sniff_image(b"BM"), None);
        assert_eq!(sniff_image(b"RIFF\0\0\0\0WAVE"), None);
        assert_eq!(sniff_image(b"\xFF\xD8"), None);
        // An MP4 is an ISO-BMFF file too, but not an image.
        assert_eq!(sniff_image(&ftyp(b"isom", &[b"mp41", b"avc1"])), None);
        // An `ftyp` cut short before its minor version.
        assert_eq!(sniff_image(b"\0\0\0\x10ftypheic"), None);
    }

    #[test]
    fn heif_is_recognised_by_its_compatible_brands_too() {
        // Major brand neither `heic` nor any other HEIF brand; the compatible ones say HEIC.
        let heic = ftyp(b"mp42", &[b"mif1", b"heic"]);
        assert_eq!(sniff_image(&heic), Some(Sniffed::Heif));
        assert_eq!(sniff_heif(&heic), Some(HeifCodec::Hevc));
        let avif = ftyp(b"mp42", &[b"avif"]);
        assert_eq!(sniff_image(&avif), Some(Sniffed::Heif));
        assert_eq!(sniff_heif(&avif), Some(HeifCodec::Av1));
    }

    #[test]
    fn heif_codec_follows_the_brands() {
        assert_eq!(
            sniff_heif(&ftyp(b"heic", &[b"mif1"])),
            Some(HeifCodec::Hevc)
        );
        assert_eq!(
            sniff_heif(&ftyp(b"mif1", &[b"heic"])),
            Some(HeifCodec::Hevc)
        );
        assert_eq!(sniff_heif(&ftyp(b"mif1", &[])), Some(HeifCodec::Hevc));
        assert_eq!(
            sniff_heif(&ftyp(b"msf1", &[b"hevc"])),
            Some(HeifCodec::Hevc)
        );
        assert_eq!(sniff_heif(&ftyp(b"avif", &[b"mif1"])), Some(HeifCodec::Av1));
        assert_eq!(sniff_heif(&ftyp(b"mif1", &[b"avif"])), Some(HeifCodec::Av1));
        // HEVC wins when a file claims both.
        assert_eq!(
            sniff_heif(&ftyp(b"avif", &[b"heic"])),
            Some(HeifCodec::Hevc)
        );
        assert_eq!(sniff_heif(&ftyp(b"isom", &[b"mp41"])), None);
        // A box length beyond the data reads only what is there.
        let mut liar = ftyp(b"mp42", &[b"heic"]);
        liar[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(sniff_heif(&liar), Some(HeifCodec::Hevc));
        assert_eq!(sniff_heif(b"\0\0\0\x08ftyp"), None);
    }
}
