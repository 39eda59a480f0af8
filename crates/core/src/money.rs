//! Money: decimal amounts with a currency, never floats. Prices and costs are written and
//! read as decimal strings (`"12.50"`); a JSON number is accepted on input (as its shortest
//! decimal form: `9.99` is exactly 9.99) so specs stored before are still read.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative decimal amount (at most 6 decimal places).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(Decimal);

/// Decimal places an amount keeps.
const SCALE: u32 = 6;

impl Amount {
    pub const ZERO: Amount = Amount(Decimal::ZERO);

    pub fn parse(raw: &str) -> Result<Amount, String> {
        let value = Decimal::from_str(raw.trim())
            .map_err(|_| format!("{raw:?} is not a decimal amount like \"12.50\""))?;
        Amount::of(value)
    }

    /// `value`, if it is a valid amount.
    pub fn of(value: Decimal) -> Result<Amount, String> {
        if value.is_sign_negative() && !value.is_zero() {
            return Err(format!("{value} is negative"));
        }
        if value.scale() > SCALE && value.round_dp(SCALE) != value {
            return Err(format!("{value} has more than {SCALE} decimal places"));
        }
        Ok(Amount(value.normalize()))
    }

    pub fn value(self) -> Decimal {
        self.0
    }

    /// `self × numerator / denominator`, rounded to [`SCALE`] places (a share of a cost).
    pub fn share(self, numerator: Decimal, denominator: Decimal) -> Amount {
        if denominator.is_zero() {
            return Amount::ZERO;
        }
        Amount(
            (self.0 * numerator / denominator)
                .round_dp(SCALE)
                .max(Decimal::ZERO),
        )
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.round_dp(SCALE).normalize())
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Integer(u64),
            Number(f64),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Text(t) => t,
            Raw::Integer(n) => n.to_string(),
            // The shortest decimal that reads back as this number: what was written.
            Raw::Number(n) if n.is_finite() => n.to_string(),
            Raw::Number(n) => {
                return Err(serde::de::Error::custom(format!("{n} is not an amount")));
            }
        };
        Amount::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// An ISO 4217 currency code: three capital letters (default `USD`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Currency(String);

impl Currency {
    pub fn parse(raw: &str) -> Result<Currency, String> {
        if raw.len() == 3 && raw.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Currency(raw.to_owned()))
        } else {
            Err(format!(
                "{raw:?} is not a currency code like \"USD\" (three capital letters)"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_default(&self) -> bool {
        *self == Currency::default()
    }
}

impl Default for Currency {
    fn default() -> Self {
        Currency("USD".to_owned())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Currency::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn amounts_are_decimal_strings_and_numbers_are_read_exactly() {
        let a: Amount = serde_json::from_str("9.99").unwrap();
        assert_eq!(a.to_string(), "9.99");
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"9.99\"");
        let b: Amount = serde_json::from_str("\"0.1\"").unwrap();
        let c: Amount = serde_json::from_str("0.2").unwrap();
        assert_eq!(
            Amount::of(b.value() + c.value()).unwrap().to_string(),
            "0.3"
        );
        assert_eq!(
            serde_json::from_str::<Amount>("12").unwrap().to_string(),
            "12"
        );
        for bad in ["-1", "\"-0.5\"", "\"abc\"", "\"1.0000001\"", "true"] {
            assert!(serde_json::from_str::<Amount>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn currencies_are_three_capital_letters() {
        assert!(Currency::parse("EUR").is_ok());
        for bad in ["usd", "US", "EURO", ""] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn shares_of_a_cost_never_add_up_to_more_than_it(
            cost in 0u64..10_000_000, parts in proptest::collection::vec(0u64..1_000_000, 1..20)
        ) {
            let total = Amount::of(Decimal::new(cost as i64, 2)).unwrap();
            let sum: u64 = parts.iter().sum();
            let shares: Decimal = parts
                .iter()
                .map(|p| total.share(Decimal::from(*p), Decimal::from(sum)).value())
                .sum();
            // Each share is rounded to 6 places: together within a rounding of each.
            let slack = Decimal::new(parts.len() as i64, 6);
            prop_assert!(shares <= total.value() + slack);
            if sum > 0 {
                prop_assert!(shares + slack >= total.value());
            }
        }

        #[test]
        fn any_text_parses_or_is_refused_without_panicking(raw in ".{0,40}") {
            let _ = Amount::parse(&raw);
            let _ = Currency::parse(&raw);
        }
    }
}
