//! Progressive-scan pruning: the AC scans a 1/8-scale decode never reads are dropped before it.

/// A progressive JPEG without the AC scans of the components that libjpeg-turbo rebuilds from
/// their DC coefficient alone at 1/8 scale: at most ~94 % of a photo's entropy-coded bytes, and
/// the 1/8 decode of what is left has the same pixels (block smoothing, which would estimate the
/// missing coefficients, is off in [`decode_jpeg_scaled`]).
///
/// Which components those are follows libjpeg-turbo's `jpeg_core_output_dimensions`: it scales a
/// subsampled component's IDCT up instead of upsampling it when the sampling factors allow, so
/// the chroma of a 4:2:0 file is rebuilt with a 2 × 2 IDCT, which reads AC coefficients; those
/// scans are kept. Luma, and the chroma of 4:4:4 and 4:2:2 files, use the 1 × 1 IDCT (DC only).
///
/// `None`, meaning "decode the file as it is", unless the file is progressive (SOF2), its segments
/// and scans can all be walked up to its EOI, and at least one scan was dropped. Only marker
/// framing is read here; the decoder still checks everything it always did on what is kept.
pub(super) fn without_unread_ac_scans(jpeg: &[u8]) -> Option<Vec<u8>> {
    if jpeg.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut kept = Vec::with_capacity(jpeg.len() / 8);
    kept.extend_from_slice(&jpeg[..2]);
    // Component ids whose 1/8 decode reads the DC coefficient only.
    let mut dc_only: Option<Vec<u8>> = None;
    let (mut pos, mut dropped) = (2, false);
    loop {
        if *jpeg.get(pos)? != 0xFF {
            return None;
        }
        let marker = *jpeg.get(pos + 1)?;
        match marker {
            0xFF => {
                pos += 1; // fill byte
                continue;
            }
            0xD9 => break,
            // Markers without a length (SOI, TEM, RSTn) have no place between segments.
            0x01 | 0xD0..=0xD8 => return None,
            _ => {}
        }
        let len = usize::from(u16::from_be_bytes([
            *jpeg.get(pos + 2)?,
            *jpeg.get(pos + 3)?,
        ]));
        let end = pos + 2 + len;
        if len < 2 || end > jpeg.len() {
            return None;
        }
        match marker {
            0xC2 if dc_only.is_none() => dc_only = Some(dc_only_components(&jpeg[pos + 4..end])?),
            // Any other frame type (baseline, lossless, arithmetic…), or a second frame.
            0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return None,
            _ => {}
        }
        if marker == 0xDA {
            let dc_only = dc_only.as_deref()?;
            // Ns, then two bytes per component (id first), then Ss (the band's first coefficient).
            let components = usize::from(*jpeg.get(pos + 4)?);
            let band_start = *jpeg.get(pos + 5 + 2 * components)?;
            let data_end = end_of_entropy_data(jpeg, end)?;
            // AC scans have exactly one component (ITU T.81, G.1.1.1.1).
            let unread = band_start > 0 && components == 1 && dc_only.contains(jpeg.get(pos + 5)?);
            if unread {
                dropped = true;
            } else {
                kept.extend_from_slice(&jpeg[pos..data_end]);
            }
            pos = data_end;
        } else {
            kept.extend_from_slice(&jpeg[pos..end]);
            pos = end;
        }
    }
    kept.extend_from_slice(&[0xFF, 0xD9]);
    dropped.then_some(kept)
}

/// The ids of the components a 1/8 decode rebuilds from DC alone, from a SOF segment's body
/// (precision, height, width, Nf, then id, HiVi, Tq per component). libjpeg-turbo doubles a
/// component's IDCT size while both of its sampling factors divide the largest ones twice over.
pub(super) fn dc_only_components(sof: &[u8]) -> Option<Vec<u8>> {
    let count = usize::from(*sof.get(5)?);
    let components = sof.get(6..6 + 3 * count)?;
    let factors = |c: &[u8]| (u32::from(c[1] >> 4), u32::from(c[1] & 0x0F));
    let (mut max_h, mut max_v) = (0, 0);
    for c in components.chunks_exact(3) {
        let (h, v) = factors(c);
        if h == 0 || v == 0 {
            return None;
        }
        (max_h, max_v) = (max_h.max(h), max_v.max(v));
    }
    Some(
        components
            .chunks_exact(3)
            .filter(|c| {
                let (h, v) = factors(c);
                max_h % (2 * h) != 0 || max_v % (2 * v) != 0
            })
            .map(|c| c[0])
            .collect(),
    )
}

/// Where a scan's entropy-coded data starting at `from` ends: the first 0xFF that is neither a
/// stuffed zero byte nor a restart marker.
pub(super) fn end_of_entropy_data(jpeg: &[u8], from: usize) -> Option<usize> {
    let mut pos = from;
    loop {
        pos += jpeg.get(pos..)?.iter().position(|&b| b == 0xFF)?;
        match *jpeg.get(pos + 1)? {
            0x00 | 0xD0..=0xD7 => pos += 2,
            _ => return Some(pos),
        }
    }
}
