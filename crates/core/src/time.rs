//! Time as Bulkhead stores it: microseconds since the Unix epoch, UTC, shown as RFC 3339.
//! The clock is injected ([`Clock`]) so tests can control it.

use std::fmt;

use ::time::format_description::well_known::Rfc3339;
use ::time::{OffsetDateTime, UtcOffset};

/// A point in time with microsecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// The earliest time Bulkhead keeps: 0000-01-01T00:00:00Z.
    pub const EARLIEST: Timestamp = Timestamp(-62_167_219_200_000_000);
    /// The latest: 9999-12-31T23:59:59.999999Z.
    pub const LATEST: Timestamp = Timestamp(253_402_300_799_999_999);

    /// Parses an RFC 3339 timestamp with any offset; returns `None` when it is not one, or when
    /// its UTC form falls outside the years 0000 to 9999 ([`Timestamp::EARLIEST`] to
    /// [`Timestamp::LATEST`]): an offset could otherwise take a valid text to year -1 or
    /// 10000, whose canonical text would not parse again.
    pub fn parse_rfc3339(raw: &str) -> Option<Self> {
        let parsed = OffsetDateTime::parse(raw, &Rfc3339).ok()?;
        let micros = parsed.unix_timestamp_nanos() / 1_000;
        i64::try_from(micros)
            .ok()
            .map(Timestamp)
            .filter(|t| (Self::EARLIEST..=Self::LATEST).contains(t))
    }

    /// RFC 3339 in UTC with exactly six fractional digits, so text order equals time order.
    pub fn to_rfc3339(self) -> String {
        match self.rfc3339_ascii() {
            Some(text) => text.iter().map(|&b| char::from(b)).collect(),
            None => self.to_rfc3339_slow(),
        }
    }

    /// [`Timestamp::to_rfc3339`] without allocating, for the years 0..=9999 (all that parsing
    /// yields): written digit by digit, since every record of every answer has two of these
    /// and `format!` was a few per cent of a listed page (issue 24).
    fn rfc3339_ascii(self) -> Option<[u8; 27]> {
        let nanos = i128::from(self.0) * 1_000;
        let t = OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .ok()?
            .to_offset(UtcOffset::UTC);
        let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
        let mut out = *b"0000-00-00T00:00:00.000000Z";
        let mut put = |at: usize, width: usize, mut value: u32| {
            for i in (at..at + width).rev() {
                out[i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, u32::from(u8::from(t.month())));
        put(8, 2, u32::from(t.day()));
        put(11, 2, u32::from(t.hour()));
        put(14, 2, u32::from(t.minute()));
        put(17, 2, u32::from(t.second()));
        put(20, 6, t.microsecond());
        Some(out)
    }

    fn to_rfc3339_slow(self) -> String {
        let nanos = i128::from(self.0) * 1_000;
        match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(t) => {
                let t = t.to_offset(UtcOffset::UTC);
                format!(
                    "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
                    t.year(),
                    u8::from(t.month()),
                    t.day(),
                    t.hour(),
                    t.minute(),
                    t.second(),
                    t.microsecond()
                )
            }
            // Only reachable for values outside years -9999..9999, which parsing never yields.
            Err(_) => format!("{}us", self.0),
        }
    }

    pub fn plus_seconds(self, seconds: i64) -> Self {
        Timestamp(self.0.saturating_add(seconds.saturating_mul(1_000_000)))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.rfc3339_ascii() {
            // ASCII digits and separators only.
            Some(text) => s.serialize_str(std::str::from_utf8(&text).unwrap_or_default()),
            None => s.serialize_str(&self.to_rfc3339_slow()),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&raw)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid RFC 3339 timestamp {raw:?}")))
    }
}

/// Where "now" comes from.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    /// Microseconds since the Unix epoch, straight from the system time (no calendar
    /// fields are worked out: a request reads the clock several times).
    fn now(&self) -> Timestamp {
        let micros = match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(since) => i64::try_from(since.as_micros()).unwrap_or(i64::MAX),
            // A clock set before 1970.
            Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |m| -m),
        };
        Timestamp(micros)
    }
}

/// The wall clock set off by a fixed amount: fault injection (clock skew between servers).
#[derive(Debug, Clone, Copy)]
pub struct SkewedClock {
    pub offset_micros: i64,
}

impl Clock for SkewedClock {
    fn now(&self) -> Timestamp {
        Timestamp(SystemClock.now().0.saturating_add(self.offset_micros))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_reads_the_same_time_as_the_calendar_clock() {
        let calendar = || (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000) as i64;
        let before = calendar();
        let now = SystemClock.now().as_micros();
        let after = calendar();
        assert!(
            before <= now && now <= after,
            "{before} <= {now} <= {after}"
        );
    }

    proptest::proptest! {
        /// The digit-by-digit text is what `format!` of the same fields writes, and parses
        /// back to the same instant, for any time in years 0 to 9999.
        #[test]
        fn rfc3339_text_matches_format_and_round_trips(
            micros in -62_167_219_200_000_000i64..253_402_300_799_999_999i64
        ) {
            let t = Timestamp::from_micros(micros);
            let text = t.to_rfc3339();
            let odt = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000).unwrap();
            let expected = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
                odt.year(), u8::from(odt.month()), odt.day(), odt.hour(), odt.minute(),
                odt.second(), odt.microsecond()
            );
            proptest::prop_assert_eq!(&text, &expected);
            proptest::prop_assert_eq!(Timestamp::parse_rfc3339(&text).unwrap(), t);
        }
    }

    proptest::proptest! {
        /// Whatever parses — any date of years 0000 to 9999 with any offset up to ±23:59 — is
        /// within the kept range and its canonical text parses back to it, so an answer never
        /// holds a time a write of it would refuse.
        #[test]
        fn any_time_that_parses_round_trips_through_its_text(
            year in 0u32..=9999, month in 1u32..=12, day in 1u32..=28,
            hour in 0u32..=23, minute in 0u32..=59, second in 0u32..=59,
            east in proptest::bool::ANY, off_h in 0u32..=23, off_m in 0u32..=59,
        ) {
            let sign = if east { '+' } else { '-' };
            let text = format!(
                "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{sign}{off_h:02}:{off_m:02}"
            );
            if let Some(t) = Timestamp::parse_rfc3339(&text) {
                proptest::prop_assert!((Timestamp::EARLIEST..=Timestamp::LATEST).contains(&t));
                proptest::prop_assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Some(t));
            } else {
                // Refused only when the offset takes it out of the years 0000 to 9999.
                proptest::prop_assert!(year == 0 || year == 9999, "{} refused", text);
            }
        }
    }

    #[test]
    fn times_an_offset_takes_out_of_years_0000_to_9999_are_refused() {
        for text in [
            "9999-12-31T23:59:59-23:59",
            "0000-01-01T00:00:00+23:59",
            "0000-01-01T00:00:00+00:01",
        ] {
            assert_eq!(Timestamp::parse_rfc3339(text), None, "{text}");
        }
        assert_eq!(
            Timestamp::parse_rfc3339("9999-12-31T23:59:59.999999Z"),
            Some(Timestamp::LATEST)
        );
        assert_eq!(
            Timestamp::parse_rfc3339("0000-01-01T00:00:00Z"),
            Some(Timestamp::EARLIEST)
        );
    }

    #[test]
    fn rfc3339_round_trips_and_normalises_offsets() {
        let t = Timestamp::parse_rfc3339("2026-11-21T10:00:00.5+01:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-21T09:00:00.500000Z");
        assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Some(t));
        assert_eq!(Timestamp::parse_rfc3339("yesterday"), None);
    }
}
