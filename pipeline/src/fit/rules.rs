//! A portal rule checked and converted into what the encoders need.

use rythmiq_domain::PortalRule;

use super::FitError;

/// Largest target a rule may ask for; keeps a bad rule from allocating gigabytes.
pub(super) const MAX_TARGET_PIXELS: u64 = 50_000_000;

/// JPEG cannot describe larger images.
pub(super) const MAX_SIDE: u32 = 65_535;

/// The rule, validated and converted to the types the encoders need.
#[derive(Debug, Clone, Copy)]
pub(super) struct Target {
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) dpi: u16,
    pub(super) min: u64,
    pub(super) max: u64,
}

impl Target {
    pub(super) fn from_rule(rule: &PortalRule) -> Result<Self, FitError> {
        let side = |v: i32, what: &str| {
            u32::try_from(v)
                .ok()
                .filter(|s| (1..=MAX_SIDE).contains(s))
                .ok_or_else(|| {
                    FitError::Failed(format!("the rule's {what} {v} is outside 1..={MAX_SIDE}"))
                })
        };
        let width = side(rule.width, "width")?;
        let height = side(rule.height, "height")?;
        if u64::from(width) * u64::from(height) > MAX_TARGET_PIXELS {
            return Err(FitError::Failed(format!(
                "the rule's size {width}×{height} is above {MAX_TARGET_PIXELS} pixels"
            )));
        }
        let dpi = u16::try_from(rule.dpi)
            .ok()
            .filter(|d| *d > 0)
            .ok_or_else(|| {
                FitError::Failed(format!("the rule's DPI {} is outside 1..=65535", rule.dpi))
            })?;
        let (min, max) = rule.byte_window();
        if max == 0 || min > max {
            return Err(FitError::Failed(format!(
                "the rule's size window {}–{} KB is empty",
                rule.min_kb, rule.max_kb
            )));
        }
        Ok(Target {
            width,
            height,
            dpi,
            min,
            max,
        })
    }
}
