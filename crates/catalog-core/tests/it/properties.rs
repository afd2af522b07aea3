//! Property tests: verification, money, model round-trip, cursors.

use catalog_core::webhook::{HmacVerifier, WebhookError, sign};
use catalog_core::{Cursor, Money};
use proptest::prelude::*;
use secrecy::SecretString;

fn verifier(secrets: &[String]) -> HmacVerifier {
    HmacVerifier::new(secrets.iter().map(|s| SecretString::from(s.clone()))).unwrap()
}

proptest! {
    #[test]
    fn any_configured_secret_verifies(
        secrets in prop::collection::vec("[ -~]{1,40}", 1..4),
        pick in any::<prop::sample::Index>(),
        body in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let secret = pick.get(&secrets);
        let sig = sign(secret.as_bytes(), &body);
        prop_assert!(verifier(&secrets).verify(&body, &sig).is_ok());
    }

    #[test]
    fn any_change_to_the_body_fails(
        body in prop::collection::vec(any::<u8>(), 1..512),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let sig = sign(b"secret", &body);
        let mut changed = body;
        let i = at.index(changed.len());
        changed[i] ^= flip;
        prop_assert_eq!(
            verifier(&["secret".into()]).verify(&changed, &sig),
            Err(WebhookError::SignatureMismatch)
        );
    }

    #[test]
    fn any_change_to_the_signature_fails(
        body in prop::collection::vec(any::<u8>(), 0..256),
        at in any::<prop::sample::Index>(),
        replacement in prop::char::range('!', '~'),
    ) {
        let sig = sign(b"secret", &body);
        let mut chars: Vec<char> = sig.chars().collect();
        let i = at.index(chars.len());
        prop_assume!(chars[i] != replacement);
        chars[i] = replacement;
        let changed: String = chars.into_iter().collect();
        prop_assert!(verifier(&["secret".into()]).verify(&body, &changed).is_err());
    }

    #[test]
    fn arbitrary_signature_text_never_panics_and_never_passes(sig in ".{0,100}") {
        let v = verifier(&["secret".into()]);
        prop_assume!(sig != sign(b"secret", b"body"));
        prop_assert!(v.verify(b"body", &sig).is_err());
    }

    #[test]
    fn money_parse_round_trips(units in -1_000_000_000i64..1_000_000_000, scale in 0u32..6) {
        let amount = rust_decimal::Decimal::new(units, scale);
        let text = amount.to_string();
        let money = Money::parse(&text, "EUR").unwrap().unwrap();
        prop_assert_eq!(money.amount(), amount);
        prop_assert_eq!(money.amount().to_string(), text);
        let json = serde_json::to_string(&money).unwrap();
        let back: Money = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, money);
    }

    #[test]
    fn money_parse_never_panics(text in ".{0,40}", currency in ".{0,5}") {
        let _ = Money::parse(&text, &currency);
    }

    #[test]
    fn cursor_encoding_round_trips(page in any::<u32>(), bound in any::<u64>(), token in ".{0,30}") {
        let state = (page, bound, token);
        let cursor = Cursor::encode(&state).unwrap();
        prop_assert!(cursor.as_str().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        prop_assert_eq!(cursor.decode::<(u32, u64, String)>().unwrap(), state);
    }

    #[test]
    fn cursor_decoding_garbage_never_panics(text in ".{0,60}") {
        let _ = Cursor::new(text).decode::<(u32, u64)>();
    }
}

fn arb_product() -> impl Strategy<Value = catalog_core::Product> {
    use catalog_core::{PlatformId, Product, ProductStatus, Variant};
    (
        "[0-9]{1,19}",
        ".{0,40}",
        prop::collection::vec("[^,]{1,10}", 0..5),
        prop::option::of((-1_000_000i64..1_000_000, 0u32..4)),
        prop::option::of(any::<i64>()),
        ".{0,12}",
    )
        .prop_map(|(id, title, tags, price, qty, status)| Product {
            id: Product::unified_id(&PlatformId::SHOPIFY, "s.myshopify.com", &id),
            platform_id: id.clone(),
            global_id: Some(format!("gid://shopify/Product/{id}")),
            platform: PlatformId::SHOPIFY,
            store: "s.myshopify.com".into(),
            title,
            handle: None,
            description_html: Some("<p>\u{e9}</p>".into()),
            vendor: None,
            product_type: None,
            status: ProductStatus::from_platform(&status),
            tags,
            categories: vec![],
            options: vec![],
            variants: vec![Variant {
                id: id.clone(),
                global_id: None,
                sku: None,
                title: None,
                barcode: None,
                price: price.map(|(u, s)| {
                    Money::new(
                        rust_decimal::Decimal::new(u, s),
                        catalog_core::CurrencyCode::new("USD").unwrap(),
                    )
                }),
                compare_at_price: None,
                inventory_quantity: qty,
                options: vec![],
                weight: None,
            }],
            images: vec![],
            created_at: None,
            updated_at: None,
            raw: serde_json::json!({ "id": id }),
        })
}

proptest! {
    #[test]
    fn model_json_round_trips(product in arb_product()) {
        let json = serde_json::to_string(&product).unwrap();
        let back: catalog_core::Product = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&back, &product);
        prop_assert_eq!(serde_json::to_string(&back).unwrap(), json);
    }
}
