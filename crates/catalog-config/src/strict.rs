//! Strict readers for numbers and switches, for `#[serde(deserialize_with)]`.
//!
//! Why: the `config` crate converts between kinds on the way to a field. A
//! whole-number field takes `true` as 1 and `false` as 0 (so `APP_PORT=true`
//! listened on port 1, and `delivered_days = true` deleted events after a
//! day instead of keeping them 30), rounds decimals (`port = 8061.7` bound
//! 8062, `delivered_days = 0.4` turned retention off), and a switch takes
//! `0`, `"no"` or `"off"`. These readers take what a person means and
//! refuse the rest, naming the problem but never the value:
//!
//! - [`uint`]: a whole number, from the file or from an environment
//!   variable's digits;
//! - [`boolean`]: `true` or `false` (any case in an environment variable);
//! - [`choice`]: one of a fixed set of names, in any case (for enums:
//!   `config` names a refused one by its Rust type, without the choices).
//!
//! ```
//! #[derive(serde::Deserialize)]
//! struct Server {
//!     #[serde(deserialize_with = "catalog_config::strict::uint")]
//!     port: u16,
//! }
//! let env = vec![("CATALOG_SERVER__PORT".to_owned(), "true".to_owned())];
//! let layers = catalog_config::Layers { defaults: Some("[server]\nport = 8050\n"), file: None, env: &env };
//! #[derive(serde::Deserialize)]
//! struct Settings { server: Server }
//! assert!(catalog_config::load::<Settings>(&layers).is_err());
//! ```

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, Visitor};

/// A whole number that fits `T`.
///
/// # Errors
/// For a switch, a decimal, a negative number, text other than digits, or a
/// number out of `T`'s range.
pub fn uint<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    deserializer.deserialize_any(Uint(PhantomData))
}

/// `true` or `false`.
///
/// # Errors
/// For anything else: numbers, `yes`, `off`, text.
pub fn boolean<'de, D>(deserializer: D) -> Result<bool, D::Error>
where
    D: Deserializer<'de>,
{
    deserializer.deserialize_any(Switch)
}

/// One of `choices`, by name, in any case; an error lists the names (never
/// the value given). For a hand-written `Deserialize` of a settings enum.
///
/// # Errors
/// For a name not among `choices`, or a value that is not text.
pub fn choice<'de, D, T>(deserializer: D, choices: &[(&str, T)]) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Copy,
{
    let given = <String as serde::Deserialize>::deserialize(deserializer)?;
    choices
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(given.trim()))
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            de::Error::custom(format!("expected one of {}", names.join(", ")))
        })
}

struct Uint<T>(PhantomData<T>);

impl<T: TryFrom<u64>> Visitor<'_> for Uint<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a whole number")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::custom("expected a whole number, got one out of range"))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        let v = u64::try_from(v)
            .map_err(|_| E::custom("expected a whole number, got a negative one"))?;
        self.visit_u64(v)
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<T, E> {
        let v = u64::try_from(v)
            .map_err(|_| E::custom("expected a whole number, got one out of range"))?;
        self.visit_u64(v)
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<T, E> {
        let v = u64::try_from(v)
            .map_err(|_| E::custom("expected a whole number, got one out of range"))?;
        self.visit_u64(v)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<T, E> {
        Err(E::custom("expected a whole number, got a decimal"))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<T, E> {
        Err(E::custom("expected a whole number, got true or false"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        let digits = v.trim();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(E::custom("expected a whole number (digits only)"));
        }
        let v = digits
            .parse::<u64>()
            .map_err(|_| E::custom("expected a whole number, got one out of range"))?;
        self.visit_u64(v)
    }
}

struct Switch;

impl Visitor<'_> for Switch {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("true or false")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        Ok(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        match v.trim() {
            t if t.eq_ignore_ascii_case("true") => Ok(true),
            t if t.eq_ignore_ascii_case("false") => Ok(false),
            _ => Err(E::custom("expected true or false")),
        }
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Err(E::custom("expected true or false, got a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Err(E::custom("expected true or false, got a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Err(E::custom("expected true or false, got a number"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Layers, load};

    #[derive(Debug, serde::Deserialize)]
    struct Section {
        #[serde(deserialize_with = "uint")]
        port: u16,
        #[serde(deserialize_with = "boolean")]
        enabled: bool,
    }

    #[derive(Debug, serde::Deserialize)]
    struct Settings {
        server: Section,
    }

    const DEFAULTS: &str = "[server]\nport = 8050\nenabled = true\n";

    fn from(file: Option<&str>, env: &[(&str, &str)]) -> Result<Settings, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("c.toml");
        if let Some(text) = file {
            std::fs::write(&path, text).map_err(|e| e.to_string())?;
        }
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        load(&Layers {
            defaults: Some(DEFAULTS),
            file: file.map(|_| path.as_path()),
            env: &env,
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn whole_numbers_and_switches_as_a_person_writes_them() {
        let s = from(
            None,
            &[
                ("CATALOG_SERVER__PORT", " 9000 "),
                ("CATALOG_SERVER__ENABLED", "FALSE"),
            ],
        )
        .unwrap();
        assert_eq!((s.server.port, s.server.enabled), (9000, false));
        let s = from(Some("[server]\nport = 9001\nenabled = false\n"), &[]).unwrap();
        assert_eq!((s.server.port, s.server.enabled), (9001, false));
        let s = from(None, &[("APP_PORT", "9002")]).unwrap();
        assert_eq!(s.server.port, 9002);
    }

    #[test]
    fn coercions_the_config_crate_would_make_are_refused_naming_the_key() {
        for (file, env) in [
            (None, vec![("APP_PORT", "true")]),
            (None, vec![("CATALOG_SERVER__PORT", "false")]),
            (None, vec![("CATALOG_SERVER__PORT", "80.5")]),
            (None, vec![("CATALOG_SERVER__PORT", "-1")]),
            (None, vec![("CATALOG_SERVER__PORT", "70000")]),
            (None, vec![("CATALOG_SERVER__PORT", "0x50")]),
            (Some("[server]\nport = 8061.7\n"), vec![]),
            (Some("[server]\nport = true\n"), vec![]),
            (Some("[server]\nenabled = 0\n"), vec![]),
            (Some("[server]\nenabled = \"no\"\n"), vec![]),
            (None, vec![("CATALOG_SERVER__ENABLED", "off")]),
            (None, vec![("CATALOG_SERVER__ENABLED", "1")]),
        ] {
            let err = from(file, &env).expect_err(&format!("{file:?} {env:?} accepted"));
            assert!(err.contains("server."), "{file:?} {env:?}: {err}");
            assert!(!err.contains("8061.7") && !err.contains("70000"), "{err}");
        }
    }
}
