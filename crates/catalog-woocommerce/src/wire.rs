//! Wire types of the wc/v3 REST API, lenient where WooCommerce is loose.
//!
//! Unknown fields are ignored (current WooCommerce adds many to the 2017 docs
//! samples). Money fields stay strings here; `convert` parses them.

use serde::{Deserialize, Deserializer};

/// A product (`GET /products/{id}`), also a variation when `type` is `variation`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct WireProduct {
    pub(crate) id: u64,
    #[serde(default, deserialize_with = "lenient_string")]
    pub(crate) name: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub(crate) slug: String,
    #[serde(default, rename = "type", deserialize_with = "lenient_string")]
    pub(crate) kind: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub(crate) status: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub(crate) description: String,
    #[serde(flatten)]
    pub(crate) sellable: Sellable,
    #[serde(default)]
    pub(crate) parent_id: Option<u64>,
    #[serde(default)]
    pub(crate) categories: Vec<Term>,
    #[serde(default)]
    pub(crate) tags: Vec<Term>,
    #[serde(default)]
    pub(crate) brands: Vec<Term>,
    #[serde(default)]
    pub(crate) images: Vec<WireImage>,
    #[serde(default)]
    pub(crate) attributes: Vec<WireAttribute>,
    #[serde(default)]
    pub(crate) variations: Vec<u64>,
    #[serde(default)]
    pub(crate) date_created_gmt: Option<String>,
    #[serde(default)]
    pub(crate) date_modified_gmt: Option<String>,
}

/// The fields a product and a variation share: what is sold.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Sellable {
    #[serde(default, deserialize_with = "lenient_string")]
    pub(crate) sku: String,
    #[serde(default, deserialize_with = "price_text")]
    pub(crate) price: String,
    #[serde(default, deserialize_with = "price_text")]
    pub(crate) regular_price: String,
    #[serde(default, deserialize_with = "price_text")]
    pub(crate) sale_price: String,
    #[serde(default)]
    pub(crate) stock_quantity: Option<serde_json::Number>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub(crate) weight: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub(crate) global_unique_id: String,
}

/// A variation (`GET /products/{id}/variations`).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct WireVariation {
    pub(crate) id: u64,
    #[serde(flatten)]
    pub(crate) sellable: Sellable,
    #[serde(default)]
    pub(crate) attributes: Vec<WireVariationAttribute>,
}

/// A category, tag or brand reference.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Term {
    #[serde(default)]
    pub(crate) id: Option<u64>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub(crate) name: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub(crate) slug: String,
}

/// An image.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct WireImage {
    #[serde(default)]
    pub(crate) id: Option<u64>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub(crate) src: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub(crate) alt: String,
}

/// A product attribute definition.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct WireAttribute {
    #[serde(default, deserialize_with = "lenient_string")]
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) variation: bool,
    #[serde(default)]
    pub(crate) options: Vec<String>,
}

/// The attribute value a variation selects.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct WireVariationAttribute {
    #[serde(default, deserialize_with = "lenient_string")]
    pub(crate) name: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub(crate) option: String,
}

/// A WordPress REST error body: `{"code","message","data":{"status"}}`.
#[cfg(feature = "client")]
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct WpError {
    pub(crate) code: String,
    #[serde(default)]
    pub(crate) message: String,
}

/// `GET /settings/general/woocommerce_currency`.
#[cfg(feature = "client")]
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct SettingValue {
    #[serde(deserialize_with = "lenient_string")]
    pub(crate) value: String,
}

/// A price as text: a string or a number as written, null as empty (no
/// price). An object or an array is an error, not "no price": a plugin
/// that puts a structure there has changed what the field means, and a
/// product read as unpriced would be sold as such downstream.
fn price_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::Bool(b) => Ok(b.to_string()),
        serde_json::Value::Null => Ok(String::new()),
        serde_json::Value::Object(_) => Err(serde::de::Error::custom(
            "expected a price (a string or a number), found an object",
        )),
        serde_json::Value::Array(_) => Err(serde::de::Error::custom(
            "expected a price (a string or a number), found an array",
        )),
    }
}

/// Accepts a string, a number or null (→ empty) where WooCommerce documents a
/// string but plugins sometimes send something else.
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => s,
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        _ => String::new(),
    })
}

/// Decodes a product or a variation (`T`), naming the field when the one
/// that fails is in the flattened [`Sellable`]: serde reads a flattened
/// struct from a buffer and the error's path ends at the parent (`.`), so
/// a price object read "at `.`: expected a price" (an outside audit). On
/// such a failure the sellable fields are decoded on their own, which
/// gives the field's path.
pub(crate) fn decode_listed<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
) -> Result<T, catalog_core::CatalogError> {
    catalog_core::json::decode_value_ref::<T>(value).map_err(|e| {
        match catalog_core::json::decode_value_ref::<Sellable>(value) {
            Err(precise @ catalog_core::CatalogError::Decode { .. }) => precise,
            _ => e,
        }
    })
}
