//! Mapping wc/v3 wire types into the core product model.

use std::collections::HashMap;

use catalog_core::{
    CatalogError, Category, CurrencyCode, Image, Money, PlatformId, Product, ProductOption,
    ProductStatus, Result, SelectedOption, Variant, Weight, WeightUnit,
};
use chrono::{DateTime, NaiveDateTime, Utc};
use rust_decimal::Decimal;

use crate::wire::{Sellable, WireProduct, WireVariation};

/// The store settings prices and weights are read with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Units {
    /// The store currency (`woocommerce_currency`).
    pub(crate) currency: CurrencyCode,
    /// The store weight unit (`woocommerce_weight_unit`), when known.
    pub(crate) weight: Option<WeightUnit>,
}

/// Product types whose variants come from `/products/{id}/variations`.
pub(crate) fn has_variations(p: &WireProduct) -> bool {
    // Plugin types with variations (`variable-subscription`, ...) too.
    p.kind == "variable" || !p.variations.is_empty()
}

/// Builds a [`Product`].
///
/// - simple, grouped and external products become exactly one variant whose
///   id is the product id;
/// - variable products get one variant per entry of `variations`, ordered like
///   the parent's `variations` id list (the shop's display order), others after
///   by id; `None` (a webhook payload, which carries only variation ids) gives
///   no variants;
/// - `price` is the current selling price; `compare_at_price` is the regular
///   price when the item is on sale (a non-empty `sale_price`), else `None`;
///   an empty price string is no price, not zero.
pub(crate) fn product_from_wire(
    store: &str,
    units: &Units,
    p: WireProduct,
    raw: serde_json::Value,
    variations: Option<Vec<WireVariation>>,
) -> Result<Product> {
    let id = p.id.to_string();
    let options: Vec<ProductOption> = p
        .attributes
        .iter()
        .filter(|a| a.variation)
        .map(|a| ProductOption {
            name: a.name.clone(),
            values: a.options.clone(),
        })
        .collect();
    let variants = if has_variations(&p) {
        let mut vs = variations.unwrap_or_default();
        let order: HashMap<u64, usize> = p
            .variations
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, i))
            .collect();
        vs.sort_by_key(|v| (order.get(&v.id).copied().unwrap_or(usize::MAX), v.id));
        vs.dedup_by_key(|v| v.id);
        vs.into_iter()
            .enumerate()
            .map(|(i, v)| variant_from_variation(units, v, i))
            .collect::<Result<Vec<_>>>()?
    } else {
        vec![variant(units, &id, None, Vec::new(), &p.sellable, "")?]
    };
    Ok(Product {
        id: Product::unified_id(&PlatformId::WOOCOMMERCE, store, &id),
        platform_id: id,
        global_id: None,
        platform: PlatformId::WOOCOMMERCE,
        store: store.to_owned(),
        title: p.name,
        handle: non_empty(p.slug),
        description_html: non_empty(p.description),
        vendor: p.brands.into_iter().map(|b| b.name).find(|n| !n.is_empty()),
        product_type: non_empty(p.kind),
        status: ProductStatus::from_platform(&p.status),
        tags: p
            .tags
            .into_iter()
            .map(|t| t.name.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect(),
        categories: p
            .categories
            .into_iter()
            .map(|c| Category {
                id: c.id.map(|i| i.to_string()),
                name: c.name,
                slug: non_empty(c.slug),
            })
            .collect(),
        options,
        variants,
        images: p
            .images
            .into_iter()
            .filter(|i| !i.src.is_empty())
            .map(|i| Image {
                id: i.id.filter(|&id| id != 0).map(|id| id.to_string()),
                url: i.src,
                alt: non_empty(i.alt),
                width: None,
                height: None,
            })
            .collect(),
        created_at: p.date_created_gmt.as_deref().and_then(parse_gmt),
        updated_at: p.date_modified_gmt.as_deref().and_then(parse_gmt),
        raw,
    })
}

fn variant_from_variation(units: &Units, v: WireVariation, index: usize) -> Result<Variant> {
    let options: Vec<SelectedOption> = v
        .attributes
        .into_iter()
        .map(|a| SelectedOption {
            name: a.name,
            value: a.option,
        })
        .collect();
    let title = options
        .iter()
        .map(|o| o.value.as_str())
        .collect::<Vec<_>>()
        .join(" / ");
    let path = format!("variations[{index}]");
    variant(
        units,
        &v.id.to_string(),
        non_empty(title),
        options,
        &v.sellable,
        &path,
    )
}

fn variant(
    units: &Units,
    id: &str,
    title: Option<String>,
    options: Vec<SelectedOption>,
    s: &Sellable,
    path: &str,
) -> Result<Variant> {
    let price = money(&s.price, &units.currency, path, "price")?;
    let on_sale = !s.sale_price.trim().is_empty();
    let compare_at_price = if on_sale {
        money(&s.regular_price, &units.currency, path, "regular_price")?
            .filter(|r| Some(r) != price.as_ref())
    } else {
        None
    };
    Ok(Variant {
        id: id.to_owned(),
        global_id: None,
        sku: non_empty(s.sku.clone()),
        title,
        barcode: non_empty(s.global_unique_id.clone()),
        price,
        compare_at_price,
        inventory_quantity: s.stock_quantity.as_ref().and_then(stock),
        options,
        weight: weight(&s.weight, units.weight.as_ref()),
    })
}

/// A weight in the store unit; none when the unit is unknown or the text is
/// empty or not a plain number (a bad weight should not fail a product).
fn weight(text: &str, unit: Option<&WeightUnit>) -> Option<Weight> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    Some(Weight {
        value: Decimal::from_str_exact(text).ok()?,
        unit: unit?.clone(),
    })
}

fn money(amount: &str, currency: &CurrencyCode, path: &str, field: &str) -> Result<Option<Money>> {
    Money::parse(amount, currency.as_str()).map_err(|e| CatalogError::Decode {
        path: if path.is_empty() {
            field.to_owned()
        } else {
            format!("{path}.{field}")
        },
        message: e.to_string(),
    })
}

/// Stock is an integer, or a number with a fraction when a plugin enables
/// fractional stock (the REST schema's "number if non-integer stock
/// enabled"). The model counts whole units, so a fraction is rounded down:
/// 2.5 in stock can fill 2 orders of one unit, never 3, and -2.5 (on
/// backorder) is 3 short. Dropping it instead read as "stock not tracked",
/// which a consumer may take for "always available". The exact figure stays
/// in `raw`.
fn stock(n: &serde_json::Number) -> Option<i64> {
    n.as_i64().or_else(|| {
        n.as_f64()
            .map(f64::floor)
            // Within what an f64 holds as an exact integer: a count past
            // 2^53 is not stock but a broken plugin.
            .filter(|f| f.is_finite() && f.abs() < 9.0e15)
            .map(|f| f as i64)
    })
}

fn non_empty(s: String) -> Option<String> {
    if s.trim().is_empty() { None } else { Some(s) }
}

/// `*_gmt` dates are `YYYY-MM-DDTHH:MM:SS` in UTC without offset.
pub(crate) fn parse_gmt(s: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%dT%H:%M:%S")
        .ok()
        .map(|n| n.and_utc())
        .or_else(|| {
            DateTime::parse_from_rfc3339(s.trim())
                .ok()
                .map(|d| d.with_timezone(&Utc))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> Units {
        Units {
            currency: CurrencyCode::new("USD").unwrap(),
            weight: None,
        }
    }

    fn wire(json: &str) -> (WireProduct, serde_json::Value) {
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        (serde_json::from_value(v.clone()).unwrap(), v)
    }

    #[test]
    fn simple_product_sample_becomes_one_variant() {
        let (p, raw) = wire(include_str!(
            "../tests/fixtures/product-794.docs-sample.json"
        ));
        let prod = product_from_wire("https://example.com", &usd(), p, raw, None).unwrap();
        assert_eq!(prod.id, "woocommerce:https://example.com:794");
        assert_eq!(prod.title, "Premium Quality");
        assert_eq!(prod.status, ProductStatus::Active);
        assert_eq!(prod.variants.len(), 1);
        let v = &prod.variants[0];
        assert_eq!(v.id, "794");
        assert_eq!(v.price.as_ref().unwrap().amount().to_string(), "21.99");
        assert_eq!(v.compare_at_price, None, "not on sale");
        assert_eq!(v.sku, None);
        assert_eq!(prod.categories.len(), 2);
        assert_eq!(prod.images.len(), 2);
        assert_eq!(
            prod.created_at.unwrap().to_rfc3339(),
            "2017-03-23T20:01:14+00:00"
        );
        assert_eq!(prod.raw["id"], 794);
    }

    #[test]
    fn variable_sample_has_options_and_no_price() {
        let (p, raw) = wire(include_str!(
            "../tests/fixtures/product-variable-799.docs-sample.json"
        ));
        let var: WireVariation = serde_json::from_str(include_str!(
            "../tests/fixtures/variation-732.docs-sample.json"
        ))
        .unwrap();
        let prod =
            product_from_wire("https://example.com", &usd(), p, raw, Some(vec![var])).unwrap();
        assert_eq!(prod.options.len(), 2);
        assert_eq!(prod.options[0].values, vec!["Black", "Green"]);
        assert_eq!(prod.variants.len(), 1);
        let v = &prod.variants[0];
        assert_eq!(v.id, "732");
        assert_eq!(v.title.as_deref(), Some("Black"));
        assert_eq!(v.price.as_ref().unwrap().amount().to_string(), "9.00");
    }

    #[test]
    fn sale_and_empty_prices() {
        let (p, raw) = wire(
            r#"{"id":1,"type":"simple","price":"8.50","regular_price":"10.00","sale_price":"8.50","stock_quantity":7}"#,
        );
        let prod = product_from_wire("s", &usd(), p, raw, None).unwrap();
        let v = &prod.variants[0];
        assert_eq!(v.price.as_ref().unwrap().amount().to_string(), "8.50");
        assert_eq!(
            v.compare_at_price.as_ref().unwrap().amount().to_string(),
            "10.00"
        );
        assert_eq!(v.inventory_quantity, Some(7));
        // Fractional stock (a plugin) counts whole units, rounded down.
        for (json, want) in [
            ("2.5", Some(2)),
            ("2.0", Some(2)),
            ("0.4", Some(0)),
            ("-2.5", Some(-3)),
            ("-4", Some(-4)),
            ("1e300", None),
            ("null", None),
        ] {
            let (p, raw) = wire(&format!(
                r#"{{"id":9,"price":"1","stock_quantity":{json}}}"#
            ));
            let prod = product_from_wire("s", &usd(), p, raw, None).unwrap();
            assert_eq!(prod.variants[0].inventory_quantity, want, "{json}");
        }
        let (p, raw) = wire(r#"{"id":2,"price":"","regular_price":"","sale_price":""}"#);
        let prod = product_from_wire("s", &usd(), p, raw, None).unwrap();
        assert_eq!(prod.variants[0].price, None, "empty is no price, not zero");
        let (p, raw) = wire(r#"{"id":3,"price":"abc"}"#);
        let err = product_from_wire("s", &usd(), p, raw, None).unwrap_err();
        assert!(err.to_string().contains("price"), "{err}");
        // Null is no price; a structure is not a price at all.
        let (p, raw) = wire(r#"{"id":4,"price":null,"regular_price":7}"#);
        let prod = product_from_wire("s", &usd(), p, raw, None).unwrap();
        assert_eq!(prod.variants[0].price, None);
        for bad in [
            r#"{"id":5,"price":{"a":1}}"#,
            r#"{"id":6,"sale_price":[1]}"#,
        ] {
            let err = catalog_core::json::decode::<WireProduct>(bad.as_bytes()).unwrap_err();
            assert!(err.to_string().contains("expected a price"), "{err}");
            // Read through the flattened fields, the path names the field.
            let value: serde_json::Value = serde_json::from_str(bad).unwrap();
            match crate::wire::decode_listed::<WireProduct>(&value).unwrap_err() {
                catalog_core::CatalogError::Decode { path, .. } => {
                    assert!(path == "price" || path == "sale_price", "{path}");
                }
                other => panic!("{other}"),
            }
        }
    }

    #[test]
    fn weight_needs_the_store_unit() {
        let json = r#"{"id":1,"price":"1","weight":"0.250"}"#;
        let (p, raw) = wire(json);
        assert_eq!(
            product_from_wire("s", &usd(), p, raw, None)
                .unwrap()
                .variants[0]
                .weight,
            None
        );
        let units = Units {
            weight: Some(WeightUnit::Kilograms),
            ..usd()
        };
        let (p, raw) = wire(json);
        let w = product_from_wire("s", &units, p, raw, None)
            .unwrap()
            .variants[0]
            .weight
            .clone()
            .unwrap();
        assert_eq!(
            (w.value.to_string(), w.unit),
            ("0.250".to_owned(), WeightUnit::Kilograms)
        );
        let (p, raw) = wire(r#"{"id":1,"price":"1","weight":"heavy"}"#);
        assert_eq!(
            product_from_wire("s", &units, p, raw, None)
                .unwrap()
                .variants[0]
                .weight,
            None
        );
    }

    #[test]
    fn variations_follow_parent_order() {
        let (p, raw) = wire(r#"{"id":9,"type":"variable","variations":[30,10,20]}"#);
        let vs: Vec<WireVariation> =
            serde_json::from_str(r#"[{"id":10,"price":"1"},{"id":20,"price":"2"},{"id":30,"price":"3"},{"id":40,"price":"4"}]"#)
                .unwrap();
        let prod = product_from_wire("s", &usd(), p, raw, Some(vs)).unwrap();
        let ids: Vec<_> = prod.variants.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(ids, ["30", "10", "20", "40"]);
    }
}
