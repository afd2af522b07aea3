//! Platform API response bodies to `Product`: never a panic, and every mapped
//! product serialises and keeps string ids and exact money.
#![no_main]

use libfuzzer_sys::fuzz_target;

// Byte 0 picks the platform. For WooCommerce, the rest is a product body,
// optionally followed by a NUL byte and a variations list body.
fuzz_target!(|data: &[u8]| {
    let [platform, body @ ..] = data else {
        return;
    };
    let product = if platform % 2 == 0 {
        catalog_shopify::fuzzing::product_from_graphql_json(body)
    } else {
        let (product, variations) = match body.iter().position(|b| *b == 0) {
            Some(i) => (&body[..i], Some(&body[i + 1..])),
            None => (body, None),
        };
        catalog_woocommerce::fuzzing::product_from_api_json(product, variations)
    };
    if let Ok(product) = product {
        let json = serde_json::to_value(&product).expect("a mapped product serialises");
        assert!(json["platform_id"].is_string());
        for variant in json["variants"].as_array().into_iter().flatten() {
            assert!(variant["id"].is_string());
            if let Some(price) = variant["price"].as_object() {
                assert!(
                    price["amount"].is_string(),
                    "money must not become a JSON number"
                );
            }
        }
    }
});
