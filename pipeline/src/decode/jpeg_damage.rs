//! Damaged JPEGs are refused, not "recovered".
//!
//! Both JPEG decoders paper over damage: libjpeg-turbo fills what it cannot read with grey and
//! only warns ("Premature end of JPEG file", "Corrupt JPEG data: …"), zune-jpeg (the decoder
//! `image` runs, leniently) does the same silently, and in strict mode still lets damage
//! through that desynchronises the entropy decoding without breaking a marker. A truncated
//! upload would then come out as a compliant file whose lower part is flat grey. So, for every
//! JPEG:
//!
//! 1. the marker structure is walked first ([`jpeg_ending`]): a file that ends before its
//!    end-of-image marker (EOI) is incomplete, whatever a decoder would make of it;
//! 2. libjpeg-turbo reads the compressed data with an error manager that stops at the first
//!    warning or error (`jpeg_scaled::strict_error_mgr`): on the reduced-scale path that *is*
//!    the decode; a JPEG decoded at full size is read once more by libjpeg at 1/8 scale
//!    ([`check_data`]), which entropy-decodes every coefficient, where damage shows, and does
//!    little else (the full decode's pixels stay zune-jpeg's, unchanged).
//!
//! A stop while libjpeg reads the headers (an unknown JFIF revision, a bad ICC marker, 12-bit
//! samples) is not damage: zune-jpeg decides such files, as before.

use super::DecodeError;
use super::jpeg_scaled::{LibjpegStop, corrupt_data, libjpeg_verdict};
use super::progressive::end_of_entropy_data;

/// How a JPEG's marker structure ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// Every segment and scan is whole and the EOI marker follows the last scan (anything
    /// after it, such as a second picture or an appended archive, is not the image).
    Complete,
    /// The bytes stop inside a segment, inside a scan, or before the EOI marker.
    Truncated,
    /// The structure could not be followed (bytes where a marker should be, a marker that has
    /// no place there): the decoders judge the file.
    Unknown,
}

/// Walk `jpeg`'s marker segments and scans up to its EOI marker (ITU T.81, B.1).
pub(super) fn jpeg_ending(jpeg: &[u8]) -> Ending {
    if jpeg.get(..2) != Some(&[0xFF, 0xD8][..]) {
        return Ending::Unknown;
    }
    let mut pos = 2;
    loop {
        let Some(&byte) = jpeg.get(pos) else {
            return Ending::Truncated;
        };
        if byte != 0xFF {
            return Ending::Unknown;
        }
        let Some(&marker) = jpeg.get(pos + 1) else {
            return Ending::Truncated;
        };
        match marker {
            0xFF => {
                pos += 1; // fill byte
                continue;
            }
            0xD9 => return Ending::Complete,
            // Markers without a length (TEM, RSTn, SOI) have no place between segments, and
            // below 0xC0 there are no others (ITU T.81, table B.1).
            0x00..=0xBF | 0xD0..=0xD8 => return Ending::Unknown,
            _ => {}
        }
        let (Some(&hi), Some(&lo)) = (jpeg.get(pos + 2), jpeg.get(pos + 3)) else {
            return Ending::Truncated;
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if len < 2 {
            return Ending::Unknown;
        }
        let end = pos + 2 + len;
        if end > jpeg.len() {
            return Ending::Truncated;
        }
        pos = if marker == 0xDA {
            // The scan's entropy-coded data runs to the next marker that is not a restart.
            match end_of_entropy_data(jpeg, end) {
                Some(next) => next,
                None => return Ending::Truncated,
            }
        } else {
            end
        };
    }
}

/// [`DecodeError::Damaged`] for a JPEG that ends before its EOI marker.
pub(super) fn check_complete(jpeg: &[u8]) -> Result<(), DecodeError> {
    if jpeg_ending(jpeg) == Ending::Truncated {
        return Err(DecodeError::Damaged {
            format: "JPEG",
            detail: "it ends before the end of the image; the upload was probably cut short"
                .to_owned(),
        });
    }
    Ok(())
}

/// [`DecodeError::Damaged`] when libjpeg-turbo finds damage in the compressed data (see the
/// module documentation): for the JPEGs decoded at full size, whose decoder (zune-jpeg, through
/// `image`) would fill it in silently.
pub(super) fn check_data(jpeg: &[u8]) -> Result<(), DecodeError> {
    match libjpeg_verdict(jpeg) {
        Err(LibjpegStop::Damage) => Err(corrupt_data()),
        // Read cleanly, or refused on its headers (12-bit samples, arithmetic coding, which this
        // libjpeg build lacks): zune-jpeg decides, as it always did.
        Ok(()) | Err(LibjpegStop::Error | LibjpegStop::Warning) => Ok(()),
    }
}
