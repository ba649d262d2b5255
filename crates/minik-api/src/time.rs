//! Time as the Kubernetes API writes it and as kubectl prints it, in one place over `jiff` (the
//! date crate `k8s-openapi` already uses): RFC 3339 in UTC to the second (`metav1.Time`), to the
//! microsecond (`metav1.MicroTime`) and to the nanosecond (the CRI log format), RFC 1123 as
//! `kubectl describe` prints times, and kubectl's ages (`45s`, `3m2s`, `5h`, `3d4h`).
//!
//! Nothing here reads the clock: callers pass `now` in, and turn a `SystemTime` into a
//! [`Timestamp`] with [`from_system`].

use std::time::{SystemTime, UNIX_EPOCH};

pub use k8s_openapi::jiff::Timestamp;

/// The instant `t`, clamped to what a [`Timestamp`] can hold (years -9999 to 9999).
pub fn from_system(t: SystemTime) -> Timestamp {
    let result = match t.duration_since(UNIX_EPOCH) {
        Ok(after) => k8s_openapi::jiff::SignedDuration::try_from(after).ok(),
        Err(before) => k8s_openapi::jiff::SignedDuration::try_from(before.duration())
            .ok()
            .map(|d| -d),
    };
    result
        .and_then(|d| Timestamp::from_duration(d).ok())
        .unwrap_or(if t >= UNIX_EPOCH {
            Timestamp::MAX
        } else {
            Timestamp::MIN
        })
}

/// The instant `seconds` after the epoch, clamped to what a [`Timestamp`] can hold.
pub fn from_unix_seconds(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).unwrap_or(if seconds >= 0 {
        Timestamp::MAX
    } else {
        Timestamp::MIN
    })
}

/// `2006-01-02T15:04:05Z`: how Kubernetes writes a `metav1.Time` (UTC, whole seconds).
pub fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The UTC calendar date and time `seconds` after the epoch; `None` outside years -9999 to
/// 9999 (a civil time reaches 9999-12-31T23:59:59, a [`Timestamp`] stops a day short).
pub fn utc_civil(seconds: i64) -> Option<k8s_openapi::jiff::civil::DateTime> {
    k8s_openapi::jiff::civil::DateTime::constant(1970, 1, 1, 0, 0, 0, 0)
        .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(seconds))
        .ok()
}

/// [`rfc3339`] of a count of seconds since the epoch, clamped to years -9999 to 9999.
pub fn rfc3339_seconds(seconds: i64) -> String {
    match utc_civil(seconds) {
        Some(t) => t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => rfc3339(from_unix_seconds(seconds)),
    }
}

/// `2006-01-02T15:04:05.000000Z`: how Kubernetes writes a `metav1.MicroTime`.
pub fn rfc3339_micro(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// `2006-01-02T15:04:05.000000000Z`: nine fraction digits always, as the CRI log format has.
pub fn rfc3339_nano(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

/// `Mon, 02 Jan 2006 15:04:05 +0000`: how `kubectl describe` prints times (RFC 1123 with a
/// numeric zone), in UTC.
pub fn rfc1123(t: Timestamp) -> String {
    t.strftime("%a, %d %b %Y %H:%M:%S +0000").to_string()
}

/// An RFC 3339 timestamp (`2024-05-01T10:00:00Z`, with an optional fraction and a `±HH:MM`
/// zone) as an instant; `None` for anything else.
pub fn parse(text: &str) -> Option<Timestamp> {
    text.trim().parse().ok()
}

/// Seconds since the epoch of an RFC 3339 timestamp (see [`parse`]).
pub fn parse_seconds(text: &str) -> Option<i64> {
    parse(text).map(|t| t.as_second())
}

/// A duration as Kubernetes prints ages (`duration.HumanDuration`): `45s`, `3m2s`, `5h`,
/// `3d4h`, `2y10d`.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let seconds = seconds.max(0);
    let minutes = seconds / 60;
    let hours = minutes / 60;
    let days = hours / 24;
    let years = days / 365;
    let with = |big: i64, unit: &str, small: i64, small_unit: &str| {
        if small == 0 {
            format!("{big}{unit}")
        } else {
            format!("{big}{unit}{small}{small_unit}")
        }
    };
    if seconds < 60 * 2 {
        format!("{seconds}s")
    } else if minutes < 10 {
        with(minutes, "m", seconds % 60, "s")
    } else if minutes < 60 * 3 {
        format!("{minutes}m")
    } else if hours < 8 {
        with(hours, "h", minutes % 60, "m")
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        with(days, "d", hours % 24, "h")
    } else if hours < 24 * 365 * 2 {
        format!("{days}d")
    } else if hours < 24 * 365 * 8 {
        with(years, "y", days % 365, "d")
    } else {
        format!("{years}y")
    }
}

/// The age at `now` (seconds since the epoch) of an object created at `timestamp`, `<unknown>`
/// when it has none.
pub fn age(timestamp: &str, now: i64) -> String {
    match parse_seconds(timestamp) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_as_kubernetes_writes_them() {
        let t = from_unix_seconds(1_709_209_815);
        assert_eq!(rfc3339(t), "2024-02-29T12:30:15Z");
        assert_eq!(rfc1123(t), "Thu, 29 Feb 2024 12:30:15 +0000");
        let fine = Timestamp::new(1_709_209_815, 5_000).expect("in range");
        assert_eq!(rfc3339_micro(fine), "2024-02-29T12:30:15.000005Z");
        assert_eq!(rfc3339_nano(fine), "2024-02-29T12:30:15.000005000Z");
        assert_eq!(
            rfc3339_nano(from_unix_seconds(0)),
            "1970-01-01T00:00:00.000000000Z"
        );
        assert_eq!(rfc3339_seconds(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339_seconds(253_402_300_799), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn timestamps_parse_with_fractions_and_zones() {
        let cases = [
            ("2024-05-01T10:00:00Z", Some(1_714_557_600)),
            ("2024-05-01T10:00:00.123456Z", Some(1_714_557_600)),
            ("2024-05-01T12:00:00+02:00", Some(1_714_557_600)),
            ("2024-05-01t10:00:00z", Some(1_714_557_600)),
            (" 2024-05-01T10:00:00Z ", Some(1_714_557_600)),
            ("2024-05-01T10:00:00", None),
            ("2024-13-01T10:00:00Z", None),
            ("yesterday", None),
            ("", None),
            ("2023-11-14", None),
            ("+023-11-14T00:00:00Z", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_seconds(text), expected, "{text:?}");
        }
        // What is printed reads back as the same instant.
        for secs in [0, 951_782_400, 1_709_209_815, 4_102_444_800] {
            assert_eq!(parse_seconds(&rfc3339_seconds(secs)), Some(secs), "{secs}");
        }
    }

    #[test]
    fn system_times_clamp_instead_of_failing() {
        assert_eq!(from_system(UNIX_EPOCH), Timestamp::UNIX_EPOCH);
        let later = UNIX_EPOCH + std::time::Duration::new(1_709_209_815, 7);
        assert_eq!(
            from_system(later),
            Timestamp::new(1_709_209_815, 7).expect("in range")
        );
        assert_eq!(from_unix_seconds(i64::MAX), Timestamp::MAX);
        assert_eq!(from_unix_seconds(i64::MIN), Timestamp::MIN);
    }

    #[test]
    fn ages_read_like_kubectls() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (45, "45s"),
            (119, "119s"),
            (182, "3m2s"),
            (600, "10m"),
            (3 * 3600 + 60, "3h1m"),
            (5 * 3600, "5h"),
            (30 * 3600, "30h"),
            (3 * 86_400 + 4 * 3600, "3d4h"),
            (30 * 86_400, "30d"),
            (3 * 365 * 86_400 + 10 * 86_400, "3y10d"),
            (9 * 365 * 86_400, "9y"),
        ];
        for (seconds, expected) in cases {
            assert_eq!(human_duration(seconds), expected, "{seconds}");
        }
        assert_eq!(age("not a time", 0), "<unknown>");
        assert_eq!(age("1970-01-01T00:00:00Z", 45), "45s");
    }
}
