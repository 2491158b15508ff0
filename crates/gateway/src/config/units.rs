//! Durations as the file writes them: a whole number and one unit, `ms`,
//! `s`, `m` or `h` (`250ms`, `2s`, `1m`, `12h`, `0s`).
//!
//! Hand-written rather than `humantime`: humantime accepts what the file
//! must refuse (`1m30s`, `1h 30m`, `2sec`, `1d`; docs/CONFIG.md says fractions
//! and combinations are not accepted), and its errors (`time unit needed,
//! for example 5sec or 5ms`) are not the ones operators see and the tests
//! pin (`5 has no unit: write 5ms, 5s, 5m or 5h`). Checking the syntax
//! first to use humantime for the rest would leave it nothing to do.

use std::time::Duration;

/// `250ms`, `2s`, `1m`, `12h`: a whole number and a unit.
pub(super) fn parse_duration(t: &str) -> Result<Duration, String> {
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = t.split_at(digits);
    if digits > 0 && unit.is_empty() {
        return Err(format!("{t} has no unit: write {t}ms, {t}s, {t}m or {t}h"));
    }
    let bad = || {
        format!("{t:?} is not a duration: write a whole number and a unit (ms, s, m or h), e.g. 250ms, 2s, 1m, 12h")
    };
    if digits == 0 {
        return Err(bad());
    }
    let n: u64 = num.parse().map_err(|_| format!("{t}: too long"))?;
    let ms_per = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(bad()),
    };
    n.checked_mul(ms_per)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{t}: too long"))
}

/// A duration the way it would be written in the file.
pub(super) fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(3_600_000) && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1_000) {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    }
}
