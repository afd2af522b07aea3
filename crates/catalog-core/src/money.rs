//! Exact money: a decimal amount with an ISO 4217 currency code. Never a float.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An amount of money in one currency.
///
/// The amount is a [`Decimal`], so `"19.90"` stays `19.90` (scale included)
/// through parsing, arithmetic and JSON. In JSON it is written as
/// `{"amount": "19.90", "currency": "USD"}`: the amount is a string so that no
/// JSON reader turns it into a binary float.
///
/// ```
/// use catalog_core::Money;
/// let price = Money::parse("19.90", "usd")?.expect("not empty");
/// assert_eq!(price.amount().to_string(), "19.90");
/// assert_eq!(price.currency().as_str(), "USD");
/// // Platforms send "" for "no price": that is `None`, not zero.
/// assert_eq!(Money::parse("", "USD")?, None);
/// # Ok::<(), catalog_core::MoneyError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    #[serde(
        serialize_with = "rust_decimal::serde::str::serialize",
        deserialize_with = "plain_amount"
    )]
    amount: Decimal,
    currency: CurrencyCode,
}

impl Money {
    /// Builds money from an exact amount and a currency.
    pub fn new(amount: Decimal, currency: CurrencyCode) -> Self {
        Self { amount, currency }
    }

    /// Parses a platform's price string (`"19.99"`, `"-1.5"`, `"1e3"` is rejected).
    ///
    /// An empty or all-blank string means "no price" and gives `Ok(None)`.
    ///
    /// # Errors
    /// [`MoneyError::InvalidAmount`] when the string is not a plain decimal
    /// number, [`MoneyError::InvalidCurrency`] when the code is not three ASCII letters.
    pub fn parse(amount: &str, currency: &str) -> Result<Option<Self>, MoneyError> {
        let currency = CurrencyCode::new(currency)?;
        let trimmed = amount.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        parse_decimal(trimmed).map(|amount| Some(Self { amount, currency }))
    }

    /// The exact amount.
    pub fn amount(&self) -> Decimal {
        self.amount
    }

    /// The currency.
    pub fn currency(&self) -> &CurrencyCode {
        &self.currency
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

/// Reads a JSON amount by [`Money::parse`]'s rules: rust_decimal's own
/// reader takes `"1e3"` and `"1_000"` (and loses the scale written), which
/// `parse` refuses; a value must read the same whichever way it came in.
fn plain_amount<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    let text = std::borrow::Cow::<str>::deserialize(d)?;
    parse_decimal(text.trim()).map_err(serde::de::Error::custom)
}

/// Parses a plain decimal (`-12.50`), refusing exponents, hex and the like, so
/// that what the platform wrote is exactly what we keep.
fn parse_decimal(s: &str) -> Result<Decimal, MoneyError> {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    let plain = !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && digits.chars().filter(|&c| c == '.').count() <= 1
        && digits.chars().any(|c| c.is_ascii_digit());
    if !plain {
        return Err(MoneyError::InvalidAmount(crate::excerpt::value(s)));
    }
    Decimal::from_str_exact(s).map_err(|_| MoneyError::InvalidAmount(crate::excerpt::value(s)))
}

/// An ISO 4217 currency code: three ASCII letters, stored upper-case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CurrencyCode([u8; 3]);

impl CurrencyCode {
    /// Validates and upper-cases a code such as `"usd"`.
    ///
    /// # Errors
    /// [`MoneyError::InvalidCurrency`] unless the code is exactly three ASCII letters.
    pub fn new(code: &str) -> Result<Self, MoneyError> {
        let bytes = code.trim().as_bytes();
        match bytes {
            [a, b, c] if bytes.iter().all(u8::is_ascii_alphabetic) => Ok(Self([
                a.to_ascii_uppercase(),
                b.to_ascii_uppercase(),
                c.to_ascii_uppercase(),
            ])),
            _ => Err(MoneyError::InvalidCurrency(crate::excerpt::value(code))),
        }
    }

    /// The code as text, e.g. `"EUR"`.
    pub fn as_str(&self) -> &str {
        // The bytes are ASCII letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl fmt::Display for CurrencyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CurrencyCode {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl Serialize for CurrencyCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CurrencyCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// Why a price or currency could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MoneyError {
    /// The amount is not a plain decimal number (with the first 40
    /// characters of what was given).
    #[error("invalid money amount {0:?}")]
    InvalidAmount(String),
    /// The currency is not a three-letter ISO 4217 code (with the first 40
    /// characters of what was given).
    #[error("invalid currency code {0:?}")]
    InvalidCurrency(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_exact_decimals_and_scale() {
        let m = Money::parse("0.10", "EUR").unwrap().unwrap();
        assert_eq!(m.amount().to_string(), "0.10");
        let sum = m.amount() + Money::parse("0.20", "EUR").unwrap().unwrap().amount();
        assert_eq!(sum.to_string(), "0.30");
        let big = Money::parse("12345678901234567.89", "USD")
            .unwrap()
            .unwrap();
        assert_eq!(big.amount().to_string(), "12345678901234567.89");
    }

    #[test]
    fn empty_is_no_price_not_zero() {
        assert_eq!(Money::parse("", "USD").unwrap(), None);
        assert_eq!(Money::parse("   ", "USD").unwrap(), None);
        assert!(Money::parse("0", "USD").unwrap().is_some());
    }

    #[test]
    fn rejects_non_plain_numbers() {
        for bad in [
            "1e3", "abc", "1.2.3", "-", ".", "0x10", "NaN", "inf", "1,5", "--1",
        ] {
            assert!(
                Money::parse(bad, "USD").is_err(),
                "{bad} should be rejected"
            );
        }
    }

    #[test]
    fn currency_is_validated_and_uppercased() {
        assert_eq!(CurrencyCode::new("usd").unwrap().as_str(), "USD");
        for bad in ["", "US", "USDX", "U$D", "€€€"] {
            assert!(CurrencyCode::new(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn json_form_is_string_amount() {
        let m = Money::parse("19.90", "USD").unwrap().unwrap();
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"amount":"19.90","currency":"USD"}"#);
        let back: Money = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.amount().scale(), 2);
    }

    #[test]
    fn json_amounts_follow_the_parse_rules() {
        for refused in ["1e3", "1_000", "0x10", "", "NaN", "1.2.3"] {
            let json = format!(r#"{{"amount":"{refused}","currency":"USD"}}"#);
            assert!(serde_json::from_str::<Money>(&json).is_err(), "{refused}");
        }
        let m: Money = serde_json::from_str(r#"{"amount":"-0.50","currency":"EUR"}"#).unwrap();
        assert_eq!(m.amount().to_string(), "-0.50");
        // A number is not the form: it may already have been a float.
        assert!(serde_json::from_str::<Money>(r#"{"amount":1.5,"currency":"EUR"}"#).is_err());
    }
}
