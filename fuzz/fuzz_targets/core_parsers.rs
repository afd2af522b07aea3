//! Money, currency, cursor and model parsing on arbitrary input: no panics,
//! and whatever parses round-trips exactly.
#![no_main]

use catalog_core::{Cursor, Money, Product};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let (amount, currency) = text.split_once('|').unwrap_or((text, "USD"));
        if let Ok(Some(money)) = Money::parse(amount, currency) {
            let json = serde_json::to_string(&money).expect("money serialises");
            let back: Money = serde_json::from_str(&json).expect("money reads back");
            assert_eq!(back, money);
        }
        let _ = Cursor::new(text).decode::<(u32, u64, String)>();
    }
    if let Ok(product) = serde_json::from_slice::<Product>(data) {
        let json = serde_json::to_string(&product).expect("product serialises");
        let back: Product = serde_json::from_str(&json).expect("product reads back");
        // `raw` may hold floats, whose JSON text is canonicalised; the rest is exact.
        assert_eq!(back.id, product.id);
        assert_eq!(back.variants, product.variants);
        assert_eq!(serde_json::to_string(&back).expect("again"), json);
    }
});
