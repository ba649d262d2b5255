//! CronJob schedules, read and stepped exactly as Kubernetes does with robfig/cron v3's
//! `ParseStandard` and `Schedule.Next`.
//!
//! Syntax: five fields, `minute hour day-of-month month day-of-week`, each a comma-separated
//! list of `*`, `?`, `N`, `N-M`, with an optional `/step` (`N/step` means `N-max/step`);
//! months `1-12` or `JAN`-`DEC`, days of week `0-6` or `SUN`-`SAT` (names in any case). The
//! descriptors `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`),
//! `@hourly` and `@every <Go duration>` stand for a whole schedule; a `TZ=<zone> ` or
//! `CRON_TZ=<zone> ` prefix sets the zone the fields are read in.
//!
//! Semantics, as robfig's:
//! - When both day-of-month and day-of-week are restricted (neither starts with `*` or `?`),
//!   a day matches if EITHER matches; otherwise both must.
//! - A `*` stepped by more than 1 (`*/5`) counts as restricted; `*/1` does not.
//! - [`Schedule::next`] is the first matching second strictly after a time, searched at most
//!   five years ahead (`None`: nothing, as for `30 2 31 2 *`).
//! - Daylight saving time: times are civil times of the zone. A time that does not exist on the
//!   day clocks go forward is skipped (`30 2 * * *` in America/New_York does not run that
//!   day); a time that happens twice on the day clocks go back runs twice (`30 1 * * *`).
//! - `@every D` runs D after the previous time (D rounded down to whole seconds, at least 1 s),
//!   whatever the zone.
//!
//! Time zones come from the system's tz database (`/usr/share/zoneinfo`), as Go's
//! `time.LoadLocation` reads them; names are case-sensitive as there.

use std::fmt::Write as _;

use jiff::tz::TimeZone;
use jiff::Timestamp;

/// The zone a schedule is read in.
#[derive(Clone, Debug, PartialEq)]
pub enum Zone {
    /// The zone the caller says is local (Go's `time.Local`): the controller's own.
    Local,
    /// A named zone (`TZ=` prefix, or a CronJob's `timeZone`).
    Named(TimeZone),
}

/// A parsed schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    fields: Fields,
    zone: Zone,
}

#[derive(Clone, Debug, PartialEq)]
enum Fields {
    /// Bit sets of the matching values of each field; bit 63 marks a field given as `*`/`?`.
    Spec {
        second: u64,
        minute: u64,
        hour: u64,
        dom: u64,
        month: u64,
        dow: u64,
    },
    /// `@every`: whole seconds between runs.
    Every { seconds: i64 },
}

const STAR: u64 = 1 << 63;

struct Bounds {
    min: u64,
    max: u64,
    names: &'static [(&'static str, u64)],
}

const SECONDS: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        ("jan", 1),
        ("feb", 2),
        ("mar", 3),
        ("apr", 4),
        ("may", 5),
        ("jun", 6),
        ("jul", 7),
        ("aug", 8),
        ("sep", 9),
        ("oct", 10),
        ("nov", 11),
        ("dec", 12),
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &[
        ("sun", 0),
        ("mon", 1),
        ("tue", 2),
        ("wed", 3),
        ("thu", 4),
        ("fri", 5),
        ("sat", 6),
    ],
};

/// Parses a schedule as robfig/cron v3's `ParseStandard` does, with its error messages (the
/// text Kubernetes puts after `spec.schedule: Invalid value: "...": `).
///
/// One difference: robfig panics on a `TZ=`/`CRON_TZ=` prefix with nothing after it; this
/// answers an error.
pub fn parse(spec: &str) -> Result<Schedule, String> {
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    let mut spec = spec;
    let mut zone = Zone::Local;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let eq = spec.find('=').unwrap_or(0);
        let Some(space) = spec.find(' ') else {
            let name = &spec[eq + 1..];
            return Err(format!(
                "provided bad location {name}: no schedule after the location"
            ));
        };
        let name = &spec[eq + 1..space];
        zone = load_location(name).map_err(|e| format!("provided bad location {name}: {e}"))?;
        spec = spec[space..].trim();
    }
    if spec.starts_with('@') {
        return descriptor(spec, zone);
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    Ok(Schedule {
        fields: Fields::Spec {
            second: field("0", &SECONDS)?,
            minute: field(fields[0], &MINUTES)?,
            hour: field(fields[1], &HOURS)?,
            dom: field(fields[2], &DOM)?,
            month: field(fields[3], &MONTHS)?,
            dow: field(fields[4], &DOW)?,
        },
        zone,
    })
}

/// A zone by name, as Go's `time.LoadLocation`: `""` and `UTC` are UTC, `Local` is
/// [`Zone::Local`], anything else a file of the tz database, named with its exact case.
pub fn load_location(name: &str) -> Result<Zone, String> {
    match name {
        "" | "UTC" => return Ok(Zone::Named(TimeZone::UTC)),
        "Local" => return Ok(Zone::Local),
        _ => {}
    }
    if name.contains("..") || name.starts_with('/') || name.starts_with('\\') {
        return Err("time: invalid location name".into());
    }
    match jiff::tz::db().get(name) {
        // The database finds names in any case; Go reads files, whose names have one.
        Ok(tz) if tz.iana_name() == Some(name) => Ok(Zone::Named(tz)),
        _ => Err(format!("unknown time zone {name}")),
    }
}

fn descriptor(spec: &str, zone: Zone) -> Result<Schedule, String> {
    let all = |b: &Bounds| bits(b.min, b.max, 1) | STAR;
    let at = |b: &Bounds| 1u64 << b.min;
    let spec_fields = |hour, dom, month, dow| Fields::Spec {
        second: at(&SECONDS),
        minute: at(&MINUTES),
        hour,
        dom,
        month,
        dow,
    };
    let fields = match spec {
        "@yearly" | "@annually" => spec_fields(at(&HOURS), at(&DOM), at(&MONTHS), all(&DOW)),
        "@monthly" => spec_fields(at(&HOURS), at(&DOM), all(&MONTHS), all(&DOW)),
        "@weekly" => spec_fields(at(&HOURS), all(&DOM), all(&MONTHS), at(&DOW)),
        "@daily" | "@midnight" => spec_fields(at(&HOURS), all(&DOM), all(&MONTHS), all(&DOW)),
        "@hourly" => spec_fields(all(&HOURS), all(&DOM), all(&MONTHS), all(&DOW)),
        _ => match spec.strip_prefix("@every ") {
            Some(duration) => {
                let nanos = parse_duration(duration)
                    .map_err(|e| format!("failed to parse duration {spec}: {e}"))?;
                // robfig's Every: at least a second, in whole seconds.
                let nanos = nanos.max(1_000_000_000);
                Fields::Every {
                    seconds: nanos / 1_000_000_000,
                }
            }
            None => return Err(format!("unrecognized descriptor: {spec}")),
        },
    };
    Ok(Schedule { fields, zone })
}

/// The bits of a comma-separated list of ranges (empty items are skipped, as Go's
/// `strings.FieldsFunc` does; an empty list matches nothing).
fn field(field: &str, bounds: &Bounds) -> Result<u64, String> {
    let mut out = 0;
    for expr in field.split(',').filter(|e| !e.is_empty()) {
        out |= range(expr, bounds)?;
    }
    Ok(out)
}

fn range(expr: &str, b: &Bounds) -> Result<u64, String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_and_high.len() == 1;
    let (start, mut end, mut extra);
    if low_and_high[0] == "*" || low_and_high[0] == "?" {
        // robfig ignores what follows a `*` before the step (`*-5` is `*`).
        (start, end, extra) = (b.min, b.max, STAR);
    } else {
        start = int_or_name(low_and_high[0], b.names)?;
        end = match low_and_high.len() {
            1 => start,
            2 => int_or_name(low_and_high[1], b.names)?,
            _ => return Err(format!("too many hyphens: {expr}")),
        };
        extra = 0;
    }
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = int(range_and_step[1])?;
            if single {
                end = b.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < b.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        ));
    }
    if end > b.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(bits(start, end, step) | extra)
}

/// Bits `min..=max` by `step` (`max` < 64).
fn bits(min: u64, max: u64, step: u64) -> u64 {
    let mut out = 0;
    let mut i = min;
    while i <= max {
        out |= 1 << i;
        match i.checked_add(step) {
            Some(next) => i = next,
            None => break,
        }
    }
    out
}

fn int_or_name(expr: &str, names: &[(&str, u64)]) -> Result<u64, String> {
    let lower = expr.to_lowercase();
    match names.iter().find(|(n, _)| *n == lower) {
        Some((_, v)) => Ok(*v),
        None => int(expr),
    }
}

/// A non-negative decimal integer, as robfig's `mustParseInt` over Go's `strconv.Atoi`.
fn int(expr: &str) -> Result<u64, String> {
    let atoi_error = |why: &str| {
        format!(
            "failed to parse int from {expr}: strconv.Atoi: parsing {}: {why}",
            go_quote(expr)
        )
    };
    let (negative, digits) = match expr.as_bytes().first() {
        Some(b'-') => (true, &expr[1..]),
        Some(b'+') => (false, &expr[1..]),
        _ => (false, expr),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(atoi_error("invalid syntax"));
    }
    let magnitude: u64 = match digits.parse() {
        Ok(v) => v,
        Err(_) => return Err(atoi_error("value out of range")),
    };
    if negative {
        if magnitude > 1 << 63 {
            return Err(atoi_error("value out of range"));
        }
        if magnitude > 0 {
            // `-(2^63)` is the one value whose magnitude does not fit in i64.
            let shown = if magnitude == 1 << 63 {
                i64::MIN.to_string()
            } else {
                format!("-{magnitude}")
            };
            return Err(format!("negative number ({shown}) not allowed: {expr}"));
        }
        return Ok(0);
    }
    if magnitude > i64::MAX as u64 {
        return Err(atoi_error("value out of range"));
    }
    Ok(magnitude)
}

/// A string as Go's `%q` shows it (for messages; close to `strconv.Quote`).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `time.ParseDuration`, in nanoseconds, with its error messages.
pub fn parse_duration(orig: &str) -> Result<i64, String> {
    const LIMIT: u64 = 1 << 63;
    let invalid = || format!("time: invalid duration {}", go_quote(orig));
    let mut s = orig.as_bytes();
    let mut negative = false;
    if let Some(&c) = s.first() {
        if c == b'-' || c == b'+' {
            negative = c == b'-';
            s = &s[1..];
        }
    }
    if s == b"0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        if !(s[0] == b'.' || s[0].is_ascii_digit()) {
            return Err(invalid());
        }
        // The integer part.
        let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
        let mut v: u64 = 0;
        for &d in &s[..digits] {
            if v > LIMIT / 10 {
                return Err(invalid());
            }
            v = v * 10 + u64::from(d - b'0');
            if v > LIMIT {
                return Err(invalid());
            }
        }
        let pre = digits > 0;
        s = &s[digits..];
        // The fraction.
        let (mut f, mut scale, mut post) = (0u64, 1f64, false);
        if s.first() == Some(&b'.') {
            s = &s[1..];
            let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
            let mut overflow = false;
            for &d in &s[..digits] {
                if overflow {
                    continue;
                }
                if f > (LIMIT - 1) / 10 {
                    overflow = true;
                    continue;
                }
                let y = f * 10 + u64::from(d - b'0');
                if y > LIMIT {
                    overflow = true;
                    continue;
                }
                f = y;
                scale *= 10.0;
            }
            post = digits > 0;
            s = &s[digits..];
        }
        if !pre && !post {
            return Err(invalid());
        }
        // The unit.
        let unit_len = s
            .iter()
            .take_while(|&&c| c != b'.' && !c.is_ascii_digit())
            .count();
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {}", go_quote(orig)));
        }
        let unit_bytes = &s[..unit_len];
        s = &s[unit_len..];
        let unit: u64 = match unit_bytes {
            b"ns" => 1,
            b"us" | [0xc2, 0xb5, b's'] | [0xce, 0xbc, b's'] => 1_000,
            b"ms" => 1_000_000,
            b"s" => 1_000_000_000,
            b"m" => 60_000_000_000,
            b"h" => 3_600_000_000_000,
            other => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    go_quote(&String::from_utf8_lossy(other)),
                    go_quote(orig)
                ))
            }
        };
        if v > LIMIT / unit {
            return Err(invalid());
        }
        v *= unit;
        if f > 0 {
            v += (f as f64 * (unit as f64 / scale)) as u64;
            if v > LIMIT {
                return Err(invalid());
            }
        }
        total += v;
        if total > LIMIT {
            return Err(invalid());
        }
    }
    if negative {
        return Ok((total as i64).wrapping_neg());
    }
    if total > LIMIT - 1 {
        return Err(invalid());
    }
    Ok(total as i64)
}

/// Most steps one [`Schedule::next`] takes before giving up (it never gets near this for a
/// schedule that matches at least once in five years).
const MAX_STEPS: u32 = 20_000_000;

impl Schedule {
    /// The zone the schedule is read in.
    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    /// The first time the schedule matches strictly after `after`, in whole seconds, reading
    /// [`Zone::Local`] as `local`; `None` when nothing matches within five years.
    pub fn next(&self, after: Timestamp, local: &TimeZone) -> Option<Timestamp> {
        // Go's times have non-negative nanoseconds within a second.
        let mut secs = after.as_second();
        let nanos = after.subsec_nanosecond();
        if nanos < 0 {
            secs -= 1;
        }
        match self.fields {
            Fields::Every { seconds } => Timestamp::from_second(secs.checked_add(seconds)?).ok(),
            Fields::Spec {
                second,
                minute,
                hour,
                dom,
                month,
                dow,
            } => {
                let tz = match &self.zone {
                    Zone::Local => local,
                    Zone::Named(tz) => tz,
                };
                let spec = SpecBits {
                    second,
                    minute,
                    hour,
                    dom,
                    month,
                    dow,
                };
                let t = spec_next(&spec, tz, secs.checked_add(1)?)?;
                Timestamp::from_second(t).ok()
            }
        }
    }
}

struct SpecBits {
    second: u64,
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
}

/// Civil fields of an instant in a zone.
#[derive(Clone, Copy, Debug)]
struct Civil {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    weekday: i64,
}

fn offset_at(tz: &TimeZone, unix: i64) -> Option<i64> {
    let ts = Timestamp::from_second(unix).ok()?;
    Some(i64::from(tz.to_offset(ts).seconds()))
}

fn civil(tz: &TimeZone, unix: i64) -> Option<Civil> {
    let local = unix.checked_add(offset_at(tz, unix)?)?;
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    Some(Civil {
        year,
        month,
        day,
        hour: secs / 3600,
        minute: secs / 60 % 60,
        second: secs % 60,
        weekday: (days + 4).rem_euclid(7),
    })
}

/// Go's `time.Date(year, month, day, hour, min, sec, 0, loc)`: fields out of range carry over;
/// a civil time that does not exist or exists twice gets the offset Go's lookup picks.
fn date(
    tz: &TimeZone,
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    min: i64,
    sec: i64,
) -> Option<i64> {
    let m0 = month - 1;
    let year = year + m0.div_euclid(12);
    let month = m0.rem_euclid(12) + 1;
    let days = days_from_civil(year, month, 1) + (day - 1);
    let local = days
        .checked_mul(86_400)?
        .checked_add(hour * 3600 + min * 60 + sec)?;
    let offset = offset_at(tz, local)?;
    let utc = local - offset;
    let actual = offset_at(tz, utc)?;
    Some(local - if actual == offset { offset } else { actual })
}

/// Go's `t.AddDate(0, months, days)` in `tz`.
fn add_date(tz: &TimeZone, unix: i64, months: i64, days: i64) -> Option<i64> {
    let c = civil(tz, unix)?;
    date(
        tz,
        c.year,
        c.month + months,
        c.day + days,
        c.hour,
        c.minute,
        c.second,
    )
}

fn has(bits: u64, value: i64) -> bool {
    (0..64).contains(&value) && bits & (1 << value) != 0
}

fn day_matches(s: &SpecBits, c: &Civil) -> bool {
    let dom = has(s.dom, c.day);
    let dow = has(s.dow, c.weekday);
    if s.dom & STAR != 0 || s.dow & STAR != 0 {
        dom && dow
    } else {
        dom || dow
    }
}

/// robfig's `SpecSchedule.Next` from `t` (already one second past the time asked about, in
/// whole seconds).
fn spec_next(s: &SpecBits, tz: &TimeZone, mut t: i64) -> Option<i64> {
    let mut added = false;
    let year_limit = civil(tz, t)?.year + 5;
    let mut steps = 0u32;
    let mut step = || {
        steps += 1;
        (steps <= MAX_STEPS).then_some(())
    };
    'wrap: loop {
        let c = civil(tz, t)?;
        if c.year > year_limit {
            return None;
        }
        let mut c = c;
        while !has(s.month, c.month) {
            step()?;
            if !added {
                added = true;
                t = date(tz, c.year, c.month, 1, 0, 0, 0)?;
            }
            t = add_date(tz, t, 1, 0)?;
            c = civil(tz, t)?;
            if c.month == 1 {
                continue 'wrap;
            }
        }
        while !day_matches(s, &c) {
            step()?;
            if !added {
                added = true;
                t = date(tz, c.year, c.month, c.day, 0, 0, 0)?;
            }
            t = add_date(tz, t, 0, 1)?;
            c = civil(tz, t)?;
            // Back to midnight when a zone change moved the day's start.
            if c.hour != 0 {
                if c.hour > 12 {
                    t += (24 - c.hour) * 3600;
                } else {
                    t -= c.hour * 3600;
                }
                c = civil(tz, t)?;
            }
            if c.day == 1 {
                continue 'wrap;
            }
        }
        while !has(s.hour, c.hour) {
            step()?;
            if !added {
                added = true;
                t = date(tz, c.year, c.month, c.day, c.hour, 0, 0)?;
            }
            t += 3600;
            c = civil(tz, t)?;
            if c.hour == 0 {
                continue 'wrap;
            }
        }
        while !has(s.minute, c.minute) {
            step()?;
            if !added {
                added = true;
                t = t.div_euclid(60) * 60;
            }
            t += 60;
            c = civil(tz, t)?;
            if c.minute == 0 {
                continue 'wrap;
            }
        }
        while !has(s.second, c.second) {
            step()?;
            added = true;
            t += 1;
            c = civil(tz, t)?;
            if c.second == 0 {
                continue 'wrap;
            }
        }
        return Some(t);
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (month 1-12).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn utc() -> TimeZone {
        TimeZone::UTC
    }

    fn next(spec: &str, after: &str) -> Option<String> {
        let schedule = parse(spec).expect(spec);
        schedule.next(ts(after), &utc()).map(|t| t.to_string())
    }

    /// `next` shown with the offset of `zone`.
    fn next_in(spec: &str, after: &str, zone: &str) -> Option<String> {
        let tz = TimeZone::get(zone).expect("zone");
        let schedule = parse(spec).expect(spec);
        schedule.next(ts(after), &utc()).map(|t| {
            let offset = tz.to_offset(t);
            t.display_with_offset(offset).to_string()
        })
    }

    #[test]
    fn fields_ranges_steps_and_names() {
        assert_eq!(
            next("*/15 * * * *", "2012-07-09T14:45:00Z").as_deref(),
            Some("2012-07-09T15:00:00Z")
        );
        assert_eq!(
            next("0/15 * * * *", "2012-07-09T14:59:59Z").as_deref(),
            Some("2012-07-09T15:00:00Z")
        );
        assert_eq!(
            next("20-35/15 * * * *", "2012-07-09T15:45:00Z").as_deref(),
            Some("2012-07-09T16:20:00Z")
        );
        assert_eq!(
            next("*/15 * * * *", "2012-07-09T23:46:00Z").as_deref(),
            Some("2012-07-10T00:00:00Z")
        );
        assert_eq!(
            next("20-35/15 1/2 */2 * *", "2012-07-09T23:35:51Z").as_deref(),
            Some("2012-07-11T01:20:00Z")
        );
        assert_eq!(
            next("20-35/15 * 9-20 Jul *", "2012-07-09T23:35:51Z").as_deref(),
            Some("2012-07-10T00:20:00Z")
        );
        assert_eq!(
            next("0 0 9 Apr-Oct ?", "2012-07-09T23:35:00Z").as_deref(),
            Some("2012-08-09T00:00:00Z")
        );
        assert_eq!(
            next("0 0 * Feb Mon", "2012-07-09T23:35:00Z").as_deref(),
            Some("2013-02-04T00:00:00Z")
        );
        assert_eq!(
            next("0 0 * Feb Mon/2", "2012-07-09T23:35:00Z").as_deref(),
            Some("2013-02-01T00:00:00Z")
        );
        assert_eq!(
            next("* * * * *", "2012-12-31T23:59:45Z").as_deref(),
            Some("2013-01-01T00:00:00Z")
        );
        assert_eq!(
            next("0 0 29 Feb ?", "2012-07-09T23:35:00Z").as_deref(),
            Some("2016-02-29T00:00:00Z")
        );
        assert_eq!(
            next("1,2,58-59 * * * *", "2012-07-09T23:57:00Z").as_deref(),
            Some("2012-07-09T23:58:00Z")
        );
        assert_eq!(
            next("0 12 * * sat,SUN", "2025-12-01T00:00:00Z").as_deref(),
            Some("2025-12-06T12:00:00Z")
        );
        assert_eq!(
            next("0 0 1 jan *", "2025-06-01T00:00:00Z").as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        // Sub-second times round up to the next whole second first.
        assert_eq!(
            next("* * * * *", "2025-01-01T00:00:59.5Z").as_deref(),
            Some("2025-01-01T00:01:00Z")
        );
        assert_eq!(
            next("* * * * *", "2025-01-01T00:00:00Z").as_deref(),
            Some("2025-01-01T00:01:00Z")
        );
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_are_restricted() {
        // 1st, 6th, ... of the month OR any Monday.
        assert_eq!(
            next("0 0 */5 Apr,Aug,Oct Mon", "2012-07-09T23:35:00Z").as_deref(),
            Some("2012-08-01T00:00:00Z")
        );
        assert_eq!(
            next("0 0 */5 Oct Mon", "2012-07-09T23:35:00Z").as_deref(),
            Some("2012-10-01T00:00:00Z")
        );
        // 13th OR Friday: Friday 2025-06-06 comes before the 13th.
        assert_eq!(
            next("0 0 13 * 5", "2025-06-01T00:00:00Z").as_deref(),
            Some("2025-06-06T00:00:00Z")
        );
        // `*` in one of them: both must match (Friday the 13th).
        assert_eq!(
            next("0 0 13 * *", "2025-06-01T00:00:00Z").as_deref(),
            Some("2025-06-13T00:00:00Z")
        );
        assert_eq!(
            next("0 0 * * 5", "2025-06-01T00:00:00Z").as_deref(),
            Some("2025-06-06T00:00:00Z")
        );
        // `?` is `*`; `*/1` still counts as `*`, `*/2` does not.
        assert_eq!(
            next("0 0 13 * ?", "2025-06-01T00:00:00Z").as_deref(),
            Some("2025-06-13T00:00:00Z")
        );
        assert_eq!(
            next("0 0 13 * */1", "2025-06-01T00:00:00Z").as_deref(),
            Some("2025-06-13T00:00:00Z")
        );
        // Tuesday 2025-06-03 is an even day of week (2): the OR rule.
        assert_eq!(
            next("0 0 13 * */2", "2025-06-01T00:00:00Z").as_deref(),
            Some("2025-06-03T00:00:00Z")
        );
    }

    #[test]
    fn descriptors() {
        let after = "2025-03-15T10:20:30Z";
        for (spec, want) in [
            ("@yearly", "2026-01-01T00:00:00Z"),
            ("@annually", "2026-01-01T00:00:00Z"),
            ("@monthly", "2025-04-01T00:00:00Z"),
            ("@weekly", "2025-03-16T00:00:00Z"),
            ("@daily", "2025-03-16T00:00:00Z"),
            ("@midnight", "2025-03-16T00:00:00Z"),
            ("@hourly", "2025-03-15T11:00:00Z"),
            ("@every 1h30m", "2025-03-15T11:50:30Z"),
            ("@every 90s", "2025-03-15T10:22:00Z"),
            // Less than a second is a second; fractions of seconds are dropped.
            ("@every 10ms", "2025-03-15T10:20:31Z"),
            ("@every 2.5s", "2025-03-15T10:20:32Z"),
        ] {
            assert_eq!(next(spec, after).as_deref(), Some(want), "{spec}");
        }
    }

    #[test]
    fn unsatisfiable_schedules_have_no_next_time() {
        assert_eq!(next("0 0 30 Feb ?", "2012-07-09T23:35:00Z"), None);
        assert_eq!(next("0 0 31 Apr ?", "2012-07-09T23:35:00Z"), None);
        assert_eq!(next("59 23 31 2 *", "2025-01-01T00:00:00Z"), None);
        // An empty list parses and matches nothing.
        assert_eq!(next("0 , * * *", "2025-01-01T00:00:00Z"), None);
    }

    #[test]
    fn errors_read_as_robfig_writes_them() {
        for (spec, want) in [
            ("", "empty spec string"),
            ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
            ("* * * * * *", "expected exactly 5 fields, found 6: [* * * * * *]"),
            (" @daily", "expected exactly 5 fields, found 1: [@daily]"),
            ("x * * * *", "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax"),
            ("60 * * * *", "end of range (60) above maximum (59): 60"),
            ("* 24 * * *", "end of range (24) above maximum (23): 24"),
            ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
            ("* * * 13 *", "end of range (13) above maximum (12): 13"),
            ("* * * * 7", "end of range (7) above maximum (6): 7"),
            ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
            ("*/0 * * * *", "step of range should be a positive number: */0"),
            ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
            ("*/2/3 * * * *", "too many slashes: */2/3"),
            ("-1 * * * *", "failed to parse int from : strconv.Atoi: parsing \"\": invalid syntax"),
            ("*/-1 * * * *", "negative number (-1) not allowed: -1"),
            ("99999999999999999999 * * * *", "failed to parse int from 99999999999999999999: strconv.Atoi: parsing \"99999999999999999999\": value out of range"),
            ("* * * foo *", "failed to parse int from foo: strconv.Atoi: parsing \"foo\": invalid syntax"),
            ("@often", "unrecognized descriptor: @often"),
            ("@daily ", "unrecognized descriptor: @daily "),
            ("@every 1d", "failed to parse duration @every 1d: time: unknown unit \"d\" in duration \"1d\""),
            ("@every 5", "failed to parse duration @every 5: time: missing unit in duration \"5\""),
            ("@every x", "failed to parse duration @every x: time: invalid duration \"x\""),
            ("TZ=Mars/Base * * * * *", "provided bad location Mars/Base: unknown time zone Mars/Base"),
            ("CRON_TZ=../etc * * * * *", "provided bad location ../etc: time: invalid location name"),
        ] {
            assert_eq!(parse(spec).err().as_deref(), Some(want), "{spec:?}");
        }
        // Names of months are not days of week, and the reverse.
        assert!(parse("* * * * jan").is_err());
        assert!(parse("* * * mon *").is_err());
        // `*-5` ignores the `-5`, as robfig does; `+5` is 5.
        assert!(parse("*-5 * * * *").is_ok());
        assert!(parse("+5 * * * *").is_ok());
    }

    #[test]
    fn time_zone_prefixes() {
        let ny = parse("TZ=America/New_York 0 9 * * *").expect("parse");
        assert!(matches!(ny.zone(), Zone::Named(_)));
        assert_eq!(
            ny.next(ts("2025-06-01T00:00:00Z"), &utc())
                .map(|t| t.to_string())
                .as_deref(),
            Some("2025-06-01T13:00:00Z")
        );
        let cron_tz = parse("CRON_TZ=Asia/Tokyo 0 9 * * *").expect("parse");
        assert_eq!(
            cron_tz
                .next(ts("2025-06-01T00:00:00Z"), &utc())
                .map(|t| t.to_string())
                .as_deref(),
            Some("2025-06-02T00:00:00Z")
        );
        assert_eq!(
            parse("TZ=UTC @daily").expect("parse").zone(),
            &Zone::Named(TimeZone::UTC)
        );
        assert_eq!(
            parse("TZ=Local @daily").expect("parse").zone(),
            &Zone::Local
        );
        // Local is what the caller says it is.
        let local = parse("0 9 * * *").expect("parse");
        let tokyo = TimeZone::get("Asia/Tokyo").expect("zone");
        assert_eq!(
            local
                .next(ts("2025-06-01T00:00:00Z"), &tokyo)
                .map(|t| t.to_string())
                .as_deref(),
            Some("2025-06-02T00:00:00Z")
        );
    }

    #[test]
    fn zones_are_named_with_their_exact_case() {
        assert!(load_location("America/New_York").is_ok());
        assert_eq!(
            load_location("america/new_york").err().as_deref(),
            Some("unknown time zone america/new_york")
        );
        assert_eq!(load_location("").ok(), Some(Zone::Named(TimeZone::UTC)));
    }

    #[test]
    fn daylight_saving_time_in_new_york() {
        let z = "America/New_York";
        // Spring forward (02:00 EST -> 03:00 EDT): 02:xx does not exist and is skipped.
        assert_eq!(
            next_in(
                "TZ=America/New_York 30 2 11 Mar ?",
                "2012-03-11T05:00:00Z",
                z
            )
            .as_deref(),
            Some("2013-03-11T02:30:00-04:00")
        );
        assert_eq!(
            next_in("TZ=America/New_York 0 2 * * ?", "2012-03-11T05:00:00Z", z).as_deref(),
            Some("2012-03-12T02:00:00-04:00")
        );
        assert_eq!(
            next_in("TZ=America/New_York 30 2 * * *", "2025-03-09T05:00:00Z", z).as_deref(),
            Some("2025-03-10T02:30:00-04:00")
        );
        assert_eq!(
            next_in("TZ=America/New_York 0 * * * ?", "2012-03-11T06:00:00Z", z).as_deref(),
            Some("2012-03-11T03:00:00-04:00")
        );
        assert_eq!(
            next_in("TZ=America/New_York 0 1 * * ?", "2012-03-11T06:00:00Z", z).as_deref(),
            Some("2012-03-12T01:00:00-04:00")
        );
        // Fall back (02:00 EDT -> 01:00 EST): 01:xx happens twice and runs twice.
        assert_eq!(
            next_in(
                "TZ=America/New_York 30 2 04 Nov ?",
                "2012-11-04T04:00:00Z",
                z
            )
            .as_deref(),
            Some("2012-11-04T02:30:00-05:00")
        );
        assert_eq!(
            next_in(
                "TZ=America/New_York 30 1 04 Nov ?",
                "2012-11-04T05:45:00Z",
                z
            )
            .as_deref(),
            Some("2012-11-04T01:30:00-05:00")
        );
        assert_eq!(
            next_in("TZ=America/New_York 0 1 * * ?", "2012-11-04T04:00:00Z", z).as_deref(),
            Some("2012-11-04T01:00:00-04:00")
        );
        assert_eq!(
            next_in("TZ=America/New_York 0 1 * * ?", "2012-11-04T05:00:00Z", z).as_deref(),
            Some("2012-11-04T01:00:00-05:00")
        );
        assert_eq!(
            next_in("TZ=America/New_York 0 1 * * ?", "2012-11-04T06:00:00Z", z).as_deref(),
            Some("2012-11-05T01:00:00-05:00")
        );
        assert_eq!(
            next_in("TZ=America/New_York 0 * * * ?", "2012-11-04T05:00:00Z", z).as_deref(),
            Some("2012-11-04T01:00:00-05:00")
        );
        assert_eq!(
            next_in("TZ=America/New_York 0 2 * * ?", "2012-11-04T04:00:00Z", z).as_deref(),
            Some("2012-11-04T02:00:00-05:00")
        );
        assert_eq!(
            next_in("TZ=America/New_York 0 3 3 * ?", "2012-11-04T04:00:00Z", z).as_deref(),
            Some("2012-12-03T03:00:00-05:00")
        );
    }

    #[test]
    fn midnight_that_does_not_exist() {
        // Sao Paulo moved its clocks from 00:00 to 01:00 on 2018-11-04 (robfig issue 157).
        let z = "America/Sao_Paulo";
        assert_eq!(
            next_in("TZ=America/Sao_Paulo 0 9 10 * ?", "2018-10-17T09:00:00Z", z).as_deref(),
            Some("2018-11-10T09:00:00-02:00")
        );
        assert_eq!(
            next_in("TZ=America/Sao_Paulo 0 9 22 * ?", "2018-02-14T10:00:00Z", z).as_deref(),
            Some("2018-02-22T09:00:00-03:00")
        );
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(parse_duration("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(parse_duration("-2s"), Ok(-2_000_000_000));
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("300µs"), Ok(300_000));
        assert_eq!(parse_duration(".5s"), Ok(500_000_000));
        assert!(parse_duration("").is_err());
        assert!(parse_duration(".s").is_err());
        assert!(parse_duration("9999999999h").is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(spec in "\\PC{0,40}") {
            let _ = parse(&spec);
        }

        #[test]
        fn parse_of_cron_like_text_never_panics(spec in "(TZ=[A-Za-z/_.]{0,12} )?[-0-9*?/,A-Za-z@ ]{0,30}") {
            let _ = parse(&spec);
        }

        #[test]
        fn next_is_after_and_matches_again(
            minute in "\\*|[0-5]?[0-9]|\\*/[1-9]",
            hour in "\\*|1?[0-9]|2[0-3]",
            dom in "\\*|[1-9]|[12][0-9]|\\?",
            month in "\\*|[1-9]|1[0-2]",
            dow in "\\*|[0-6]|mon-fri",
            zone in prop::sample::select(vec!["UTC", "America/New_York", "Europe/Paris", "Australia/Lord_Howe", "Asia/Kathmandu"]),
            after in 0i64..4_000_000_000,
        ) {
            let spec = format!("TZ={zone} {minute} {hour} {dom} {month} {dow}");
            let schedule = parse(&spec).expect("valid");
            let after = Timestamp::from_second(after).expect("in range");
            if let Some(t) = schedule.next(after, &TimeZone::UTC) {
                prop_assert!(t > after);
                prop_assert_eq!(t.subsec_nanosecond(), 0);
                if let Some(again) = schedule.next(t, &TimeZone::UTC) {
                    prop_assert!(again > t);
                }
            }
        }

        #[test]
        fn next_never_panics(spec in "[-0-9*?/,]{1,6} [-0-9*?/,]{1,6} [-0-9*?/,]{1,6} [-0-9*?/,]{1,6} [-0-9*?/,]{1,6}", after in any::<i64>()) {
            if let (Ok(schedule), Ok(after)) = (parse(&spec), Timestamp::from_second(after.rem_euclid(253_402_000_000) - 62_000_000_000)) {
                let _ = schedule.next(after, &TimeZone::UTC);
            }
        }
    }
}
