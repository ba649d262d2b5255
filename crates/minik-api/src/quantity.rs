//! Resource quantities (`500m`, `1.5`, `128Mi`, `1e3`) parsed, compared, added and printed the way
//! Kubernetes' `k8s.io/apimachinery/pkg/api/resource` does, as exact fixed-point numbers.
//!
//! A [`Quantity`] is an `i128` count of nano-units (10⁻⁹), the finest precision Kubernetes keeps,
//! plus the notation it was written in, which only matters for printing: `1Gi` stays `1Gi`,
//! `1e3` stays `1e3`, `1000` becomes `1k`. Comparisons look at the value alone.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

/// Nano-units per unit.
const NANOS_PER_UNIT: i128 = 1_000_000_000;
/// Nano-units per milli-unit.
const NANOS_PER_MILLI: i128 = 1_000_000;
/// The number of decimal digits of the largest `u128` (about 3.4e38).
const U128_MAX_DIGITS: i64 = 39;

/// Why a string is not a quantity. The messages are Kubernetes' own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The text does not follow the quantity grammar, or its suffix is not a known one.
    #[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    Format,
    /// The value is well formed but too large (or its exponent too wild) to hold exactly: minik
    /// keeps quantities as an `i128` of nano-units, about ±1.7e29 units.
    #[error("unable to parse numeric part of quantity")]
    OutOfRange,
}

/// The notation a quantity was written in, which decides how it is printed back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Format {
    /// Powers of 1024: `Ki`, `Mi`, `Gi`, `Ti`, `Pi`, `Ei`.
    BinarySI,
    /// Powers of 1000: `n`, `u`, `m`, none, `k`, `M`, `G`, `T`, `P`, `E`.
    #[default]
    DecimalSI,
    /// Scientific notation: `1e3`, `5E-3`.
    DecimalExponent,
}

/// An exact resource amount. Equality, ordering and hashing compare values only, so `1Ki`
/// equals `1024` and `1000m` equals `1`.
#[derive(Clone, Copy, Debug)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl Hash for Quantity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.nanos.hash(state);
    }
}

impl Default for Quantity {
    fn default() -> Self {
        Quantity::ZERO
    }
}

impl Quantity {
    /// Zero, printed `0`.
    pub const ZERO: Quantity = Quantity {
        nanos: 0,
        format: Format::DecimalSI,
    };

    /// Parses Kubernetes' quantity syntax: a signed decimal number (`1`, `0.5`, `.5`, `1.`, `+1`,
    /// `-1`) followed by an optional suffix (`n u m k M G T P E`, `Ki Mi Gi Ti Pi Ei`, or an
    /// exponent `e3`, `E-3`). Digits finer than a nano-unit round away from zero, as Kubernetes
    /// rounds them ("if you want some resources, you should get some"). Values are exact up to
    /// about ±1.7e29 units; beyond that, and for exponents wider than 32 bits, parsing fails with
    /// [`QuantityError::OutOfRange`]. No surrounding spaces are allowed.
    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        let (negative, rest) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_digits, rest) = rest.split_at(int_len);
        let (frac_digits, suffix) = match rest.strip_prefix('.') {
            Some(after_dot) => {
                let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
                after_dot.split_at(frac_len)
            }
            None => ("", rest),
        };
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(QuantityError::Format);
        }
        let (unit, format) = parse_suffix(suffix)?;

        // The value is digits × 10^exp10 (× 2^k for binary suffixes), exactly.
        let mut digits: Vec<u8> = int_digits
            .bytes()
            .chain(frac_digits.bytes())
            .map(|b| b - b'0')
            .collect();
        let frac_len = i64::try_from(frac_digits.len()).map_err(|_| QuantityError::OutOfRange)?;
        let mut exp10 = -frac_len;
        match unit {
            Unit::Pow10(e) => exp10 = exp10.checked_add(e).ok_or(QuantityError::OutOfRange)?,
            Unit::Pow2(k) => {
                for _ in 0..k {
                    double_digits(&mut digits);
                }
            }
        }
        let magnitude = nanos_rounded_up(&digits, exp10)?;

        let mut format = format;
        if format == Format::BinarySI {
            // Kubernetes shows fractions of one unit in decimal notation because 1024ths would
            // only confuse. (It also caps binary quantities at 2^63-1, a stopgap its own source
            // marks TODO; minik keeps them exact so that printing and parsing round-trip.)
            if magnitude < NANOS_PER_UNIT.unsigned_abs() && magnitude > 0 {
                format = Format::DecimalSI;
            }
        }
        let nanos = if negative {
            0i128.checked_sub_unsigned(magnitude)
        } else {
            i128::try_from(magnitude).ok()
        };
        let nanos = nanos.ok_or(QuantityError::OutOfRange)?;
        Ok(Quantity { nanos, format })
    }

    /// `m` thousandths of a unit, in decimal notation (`from_millis(1500)` prints `1500m`).
    pub fn from_millis(m: i64) -> Quantity {
        Quantity {
            nanos: i128::from(m) * NANOS_PER_MILLI,
            format: Format::DecimalSI,
        }
    }

    /// `v` whole units, in decimal notation (`from_value(2000)` prints `2k`); see
    /// [`Quantity::with_format`] for bytes that should print as `Mi`/`Gi`.
    pub fn from_value(v: i64) -> Quantity {
        Quantity {
            nanos: i128::from(v) * NANOS_PER_UNIT,
            format: Format::DecimalSI,
        }
    }

    /// An exact count of nano-units, in decimal notation.
    pub fn from_nanos(nanos: i128) -> Quantity {
        Quantity {
            nanos,
            format: Format::DecimalSI,
        }
    }

    /// The same value, printed in another notation.
    pub fn with_format(self, format: Format) -> Quantity {
        Quantity { format, ..self }
    }

    /// The notation this quantity prints in.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The exact value in nano-units.
    pub fn as_nanos(&self) -> i128 {
        self.nanos
    }

    /// The value in thousandths, rounded away from zero like Kubernetes' `MilliValue()`
    /// (`0.1m` → 1), saturating at the `i64` bounds.
    pub fn millis(&self) -> i64 {
        div_away_from_zero_saturating(self.nanos, NANOS_PER_MILLI)
    }

    /// The value in whole units, rounded away from zero like Kubernetes' `Value()`
    /// (`100m` → 1), saturating at the `i64` bounds.
    pub fn value(&self) -> i64 {
        div_away_from_zero_saturating(self.nanos, NANOS_PER_UNIT)
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// The sum, in `self`'s notation (or `other`'s when `self` is zero, as Kubernetes' `Add`
    /// does); `None` on overflow.
    pub fn checked_add(self, other: Quantity) -> Option<Quantity> {
        Some(Quantity {
            nanos: self.nanos.checked_add(other.nanos)?,
            format: self.sum_format(other),
        })
    }

    /// The difference, in `self`'s notation (or `other`'s when `self` is zero, as Kubernetes'
    /// `Sub` does); `None` on overflow.
    pub fn checked_sub(self, other: Quantity) -> Option<Quantity> {
        Some(Quantity {
            nanos: self.nanos.checked_sub(other.nanos)?,
            format: self.sum_format(other),
        })
    }

    fn sum_format(self, other: Quantity) -> Format {
        if self.is_zero() {
            other.format
        } else {
            self.format
        }
    }

    /// The Kubernetes wire form (the canonical string).
    pub fn to_k8s(&self) -> K8sQuantity {
        K8sQuantity(self.to_string())
    }
}

/// What a suffix multiplies the number by.
enum Unit {
    Pow10(i64),
    Pow2(u32),
}

fn parse_suffix(suffix: &str) -> Result<(Unit, Format), QuantityError> {
    let decimal = |e| Ok((Unit::Pow10(e), Format::DecimalSI));
    let binary = |k| Ok((Unit::Pow2(k), Format::BinarySI));
    match suffix {
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "" => decimal(0),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        _ => {
            let exponent = suffix
                .strip_prefix('e')
                .or_else(|| suffix.strip_prefix('E'))
                .ok_or(QuantityError::Format)?;
            let unsigned = exponent
                .strip_prefix('-')
                .or_else(|| exponent.strip_prefix('+'))
                .unwrap_or(exponent);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return Err(QuantityError::Format);
            }
            // Kubernetes keeps exponents in an int32; anything wider is a ridiculous exponent.
            let e: i32 = exponent.parse().map_err(|_| QuantityError::OutOfRange)?;
            let e = i64::from(e);
            Ok((Unit::Pow10(e), Format::DecimalExponent))
        }
    }
}

/// Multiplies a big-endian decimal digit string by two in place.
fn double_digits(digits: &mut Vec<u8>) {
    let mut carry = 0;
    for d in digits.iter_mut().rev() {
        let v = *d * 2 + carry;
        *d = v % 10;
        carry = v / 10;
    }
    if carry > 0 {
        digits.insert(0, carry);
    }
}

/// The magnitude `digits × 10^exp10` in nano-units, any remainder below one nano-unit rounded up.
fn nanos_rounded_up(digits: &[u8], exp10: i64) -> Result<u128, QuantityError> {
    let first_nonzero = digits.iter().position(|&d| d != 0);
    let Some(start) = first_nonzero else {
        return Ok(0);
    };
    let digits = &digits[start..];
    let len = i64::try_from(digits.len()).map_err(|_| QuantityError::OutOfRange)?;
    // How many places the decimal point moves right to count nano-units.
    let shift = exp10.checked_add(9).ok_or(QuantityError::OutOfRange)?;
    if shift >= 0 {
        // The value is at least 10^(len - 1 + shift) nano-units.
        if len.saturating_add(shift) > U128_MAX_DIGITS {
            return Err(QuantityError::OutOfRange);
        }
        let mut n = digits_to_u128(digits)?;
        for _ in 0..shift {
            n = n.checked_mul(10).ok_or(QuantityError::OutOfRange)?;
        }
        return Ok(n);
    }
    // Digits after `whole_len` are finer than a nano-unit.
    let dropped = shift.unsigned_abs();
    let whole_len = usize::try_from(u64::try_from(len).unwrap_or(0).saturating_sub(dropped))
        .map_err(|_| QuantityError::OutOfRange)?;
    let (whole, fraction) = digits.split_at(whole_len.min(digits.len()));
    let mut n = digits_to_u128(whole)?;
    if fraction.iter().any(|&d| d != 0) {
        n = n.checked_add(1).ok_or(QuantityError::OutOfRange)?;
    }
    Ok(n)
}

fn digits_to_u128(digits: &[u8]) -> Result<u128, QuantityError> {
    digits.iter().try_fold(0u128, |n, &d| {
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u128::from(d)))
            .ok_or(QuantityError::OutOfRange)
    })
}

/// `n / d` rounded away from zero, clamped into an `i64`.
fn div_away_from_zero_saturating(n: i128, d: i128) -> i64 {
    let q = n / d;
    let q = if n % d == 0 { q } else { q + n.signum() };
    i64::try_from(q).unwrap_or(if q < 0 { i64::MIN } else { i64::MAX })
}

impl fmt::Display for Quantity {
    /// Kubernetes' canonical form (`CanonicalizeBytes`): the smallest integer mantissa whose
    /// exponent is a multiple of three (decimal) or of ten (binary), with its suffix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        if self.format == Format::BinarySI {
            let small = self.nanos.unsigned_abs() < 1024 * NANOS_PER_UNIT.unsigned_abs();
            if !small && self.nanos % NANOS_PER_UNIT == 0 {
                let mut units = self.nanos / NANOS_PER_UNIT;
                let mut power = 0;
                // Stop at Ei: sums can exceed what any suffix names.
                while units % 1024 == 0 && power < BINARY_SUFFIXES.len() - 1 {
                    units /= 1024;
                    power += 1;
                }
                return write!(f, "{units}{}", BINARY_SUFFIXES[power]);
            }
            // Small or fractional binary quantities print in decimal so nothing is rounded.
        }

        let mut mantissa = self.nanos;
        let mut exponent: i32 = -9;
        while mantissa % 10 == 0 {
            mantissa /= 10;
            exponent += 1;
        }
        // Bring the exponent down to a multiple of three; this only undoes divisions made
        // above, so it cannot overflow.
        for _ in 0..exponent.rem_euclid(3) {
            mantissa *= 10;
            exponent -= 1;
        }
        if self.format == Format::DecimalExponent {
            return if exponent == 0 {
                write!(f, "{mantissa}")
            } else {
                write!(f, "{mantissa}e{exponent}")
            };
        }
        // Beyond exa there is no decimal suffix: keep a longer mantissa with `E`.
        while exponent > 18 {
            mantissa *= 10;
            exponent -= 1;
        }
        let suffix = match exponent {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            0 => "",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            _ => "E",
        };
        write!(f, "{mantissa}{suffix}")
    }
}

const BINARY_SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

impl TryFrom<&K8sQuantity> for Quantity {
    type Error = QuantityError;

    /// Surrounding whitespace is ignored, as Kubernetes' JSON decoding of a quantity ignores it.
    fn try_from(q: &K8sQuantity) -> Result<Self, Self::Error> {
        Quantity::parse(q.0.trim())
    }
}

impl From<Quantity> for K8sQuantity {
    fn from(q: Quantity) -> Self {
        q.to_k8s()
    }
}

impl serde::Serialize for Quantity {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Quantity::parse(s.trim()).map_err(serde::de::Error::custom)
    }
}

/// Amounts by resource name, sorted as Kubernetes prints them.
pub type ResourceList = std::collections::BTreeMap<String, Quantity>;

/// Adds `q` to the amount of `name` in `list`; a sum too large to hold leaves it as it was.
pub(crate) fn add_to(list: &mut ResourceList, name: &str, q: Quantity) {
    let sum = match list.get(name) {
        Some(existing) => existing.checked_add(q).unwrap_or(*existing),
        None => q,
    };
    list.insert(name.to_owned(), sum);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn q(s: &str) -> Quantity {
        match Quantity::parse(s) {
            Ok(q) => q,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    #[test]
    fn parses_and_prints_canonically() {
        // input, exact nano-units, canonical form
        let cases: &[(&str, i128, &str)] = &[
            ("0", 0, "0"),
            ("0Mi", 0, "0"),
            ("-0", 0, "0"),
            ("000", 0, "0"),
            ("1", 1_000_000_000, "1"),
            ("+1", 1_000_000_000, "1"),
            ("-1", -1_000_000_000, "-1"),
            ("0.5", 500_000_000, "500m"),
            (".5", 500_000_000, "500m"),
            ("1.", 1_000_000_000, "1"),
            ("1.5", 1_500_000_000, "1500m"),
            ("1500m", 1_500_000_000, "1500m"),
            ("1000m", 1_000_000_000, "1"),
            ("100m", 100_000_000, "100m"),
            ("0.1", 100_000_000, "100m"),
            ("1n", 1, "1n"),
            ("1u", 1_000, "1u"),
            ("10u", 10_000, "10u"),
            ("1k", 1_000_000_000_000, "1k"),
            ("1.5k", 1_500_000_000_000, "1500"),
            ("1000", 1_000_000_000_000, "1k"),
            ("12M", 12_000_000_000_000_000, "12M"),
            ("1G", 1_000_000_000_000_000_000, "1G"),
            ("1T", 10i128.pow(21), "1T"),
            ("1P", 10i128.pow(24), "1P"),
            ("1E", 10i128.pow(27), "1E"),
            ("1000E", 10i128.pow(30), "1000E"),
            ("1Ki", 1024 * 1_000_000_000, "1Ki"),
            ("200Mi", 200 * 1024 * 1024 * 1_000_000_000, "200Mi"),
            ("1024Mi", 1024 * 1024 * 1024 * 1_000_000_000, "1Gi"),
            ("1Gi", 1024 * 1024 * 1024 * 1_000_000_000, "1Gi"),
            ("1.5Gi", 1536 * 1024 * 1024 * 1_000_000_000, "1536Mi"),
            ("1Ei", (1i128 << 60) * 1_000_000_000, "1Ei"),
            ("0.5Ki", 512 * 1_000_000_000, "512"),
            ("1025Ki", 1025 * 1024 * 1_000_000_000, "1025Ki"),
            ("0.1Ki", 102_400_000_000, "102400m"),
            ("-1Ki", -1024 * 1_000_000_000, "-1Ki"),
            ("1e3", 1_000_000_000_000, "1e3"),
            ("1E3", 1_000_000_000_000, "1e3"),
            ("1e+3", 1_000_000_000_000, "1e3"),
            ("1E-3", 1_000_000, "1e-3"),
            ("12e6", 12_000_000_000_000_000, "12e6"),
            ("1.5e3", 1_500_000_000_000, "1500"),
            ("100e-2", 1_000_000_000, "1"),
            ("1e0", 1_000_000_000, "1"),
            // Finer than a nano-unit rounds away from zero.
            ("0.1n", 1, "1n"),
            ("1.0000000001", 1_000_000_001, "1000000001n"),
            ("-0.1n", -1, "-1n"),
            ("1e-30", 1, "1e-9"),
            ("1e-2147483648", 1, "1e-9"),
            (
                "-170141183460469231731687303715884105728n",
                i128::MIN,
                "-170141183460469231731687303715884105728n",
            ),
            ("0.0000000000000000000000000000000000000000000001", 1, "1n"),
            (
                "100000000000000000000000000000000000000000000e-40",
                10_000 * 1_000_000_000,
                "10e3",
            ),
        ];
        for &(input, nanos, canonical) in cases {
            let parsed = q(input);
            assert_eq!(parsed.as_nanos(), nanos, "{input}");
            assert_eq!(parsed.to_string(), canonical, "{input}");
            assert_eq!(q(canonical), parsed, "{input} → {canonical}");
        }
    }

    #[test]
    fn rejects_what_kubernetes_rejects() {
        let format_errors = [
            "", " ", "1.2.3", "Mi", "1 Mi", " 1", "1 ", "1mi", "1KB", "1K", "--1", "+-1", "-", "+",
            ".", "1e", "1e+", "1e3.5", "1Mi5", "0.1am", "aoeu", "1.1.M", "1+1.0M", ".5i", "1i",
            "-3.01e-", "1Gib", "1e--3", "١",
        ];
        for s in format_errors {
            assert_eq!(Quantity::parse(s), Err(QuantityError::Format), "{s:?}");
        }
        let too_large = [
            "1e30",
            "170141183460469231731687303716",
            "1e99999999999999999999",
            "1e9223372036854775807",
            "1e-9223372036854775808",
            "1e2147483648",
            "99999999999999999999999999999999999999999999E",
        ];
        for s in too_large {
            assert_eq!(Quantity::parse(s), Err(QuantityError::OutOfRange), "{s:?}");
        }
        assert_eq!(
            QuantityError::Format.to_string(),
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        );
    }

    #[test]
    fn large_binary_quantities_stay_exact() {
        assert_eq!(q("16Ei").as_nanos(), (16i128 << 60) * NANOS_PER_UNIT);
        assert_eq!(q("16Ei").value(), i64::MAX, "value() saturates");
        assert_eq!(q("-16Ei").value(), i64::MIN);
        assert_eq!(q("16Ei").to_string(), "16Ei");
    }

    #[test]
    fn millis_and_value_round_away_from_zero() {
        let cases: &[(&str, i64, i64)] = &[
            ("0", 0, 0),
            ("1", 1000, 1),
            ("100m", 100, 1),
            ("1500m", 1500, 2),
            ("0.1m", 1, 1),
            ("1n", 1, 1),
            ("-100m", -100, -1),
            ("-1n", -1, -1),
            ("1Gi", 1_073_741_824_000, 1_073_741_824),
            ("1E", i64::MAX, 1_000_000_000_000_000_000),
            ("100E", i64::MAX, i64::MAX),
        ];
        for &(input, millis, value) in cases {
            assert_eq!(q(input).millis(), millis, "{input} millis");
            assert_eq!(q(input).value(), value, "{input} value");
        }
    }

    #[test]
    fn constructors_and_arithmetic() {
        assert_eq!(Quantity::from_millis(500).to_string(), "500m");
        assert_eq!(Quantity::from_millis(2000).to_string(), "2");
        assert_eq!(Quantity::from_value(2000).to_string(), "2k");
        assert_eq!(
            Quantity::from_value(1 << 30)
                .with_format(Format::BinarySI)
                .to_string(),
            "1Gi"
        );
        assert_eq!(Quantity::from_value(1), q("1000m"));
        assert!(q("1Ki") > q("1k"));
        assert!(Quantity::ZERO.is_zero() && q("0Gi").is_zero());

        let sum = q("1Gi").checked_add(q("512Mi")).map(|s| s.to_string());
        assert_eq!(sum.as_deref(), Some("1536Mi"));
        // Kubernetes' Add keeps the receiver's notation unless the receiver is zero.
        let from_zero = Quantity::ZERO.checked_add(q("1Mi")).map(|s| s.to_string());
        assert_eq!(from_zero.as_deref(), Some("1Mi"));
        let diff = q("1").checked_sub(q("250m")).map(|s| s.to_string());
        assert_eq!(diff.as_deref(), Some("750m"));
        let max = Quantity::from_nanos(i128::MAX);
        assert_eq!(max.checked_add(Quantity::from_nanos(1)), None);
        assert_eq!(
            Quantity::from_nanos(i128::MIN).checked_sub(Quantity::from_nanos(1)),
            None
        );
        // Sums past Ei keep the Ei suffix rather than inventing one.
        let huge =
            Quantity::from_nanos((1i128 << 70) * NANOS_PER_UNIT).with_format(Format::BinarySI);
        assert_eq!(huge.to_string(), "1024Ei");
        assert_eq!(q(&huge.to_string()), huge);
    }

    #[test]
    fn converts_from_and_to_the_wire_form() {
        let wire = K8sQuantity(" 250m ".into());
        assert_eq!(Quantity::try_from(&wire).map(|q| q.millis()), Ok(250));
        assert_eq!(K8sQuantity::from(q("1024Mi")).0, "1Gi");
        let json = serde_json::to_string(&q("0.5")).unwrap_or_default();
        assert_eq!(json, "\"500m\"");
        let back: Result<Quantity, _> = serde_json::from_str("\"2Gi\"");
        assert_eq!(back.map(|q| q.to_string()).ok().as_deref(), Some("2Gi"));
        assert!(serde_json::from_str::<Quantity>("\"2gi\"").is_err());
    }

    fn arb_format() -> impl Strategy<Value = Format> {
        prop_oneof![
            Just(Format::BinarySI),
            Just(Format::DecimalSI),
            Just(Format::DecimalExponent)
        ]
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC*") {
            let _ = Quantity::parse(&s);
        }

        #[test]
        fn parse_never_panics_on_quantity_like_text(s in "[-+]?[0-9.]{0,45}[eEinumkKMGTP]{0,3}[-+]?[0-9]{0,25}") {
            let _ = Quantity::parse(&s);
        }

        #[test]
        fn display_then_parse_is_identity(nanos in any::<i128>(), format in arb_format()) {
            let quantity = Quantity::from_nanos(nanos).with_format(format);
            let printed = quantity.to_string();
            prop_assert_eq!(Quantity::parse(&printed), Ok(quantity), "{}", printed);
        }

        #[test]
        fn display_then_parse_is_identity_for_everyday_sizes(
            units in -1_000_000_000_000i64..1_000_000_000_000,
            scale in 0u32..13,
            format in arb_format(),
        ) {
            let quantity = Quantity::from_nanos(i128::from(units) * 10i128.pow(scale)).with_format(format);
            let printed = quantity.to_string();
            prop_assert_eq!(Quantity::parse(&printed), Ok(quantity), "{}", printed);
        }

        #[test]
        fn display_then_parse_is_identity_for_binary_sizes(
            units in -(1i64 << 30)..(1i64 << 30),
            power in 0u32..7,
            format in arb_format(),
        ) {
            let nanos = i128::from(units) * 1024i128.pow(power) * NANOS_PER_UNIT;
            let quantity = Quantity::from_nanos(nanos).with_format(format);
            let printed = quantity.to_string();
            prop_assert_eq!(Quantity::parse(&printed), Ok(quantity), "{}", printed);
        }

        #[test]
        fn parse_then_display_is_stable(s in "[-+]?[0-9]{1,6}(\\.[0-9]{0,4})?(m|k|M|Ki|Mi|Gi|e[0-9]|)") {
            if let Ok(first) = Quantity::parse(&s) {
                let printed = first.to_string();
                let again = Quantity::parse(&printed);
                prop_assert_eq!(again, Ok(first));
                prop_assert_eq!(again.map(|q| q.to_string()), Ok(printed));
            }
        }
    }
}
