//! Signs a body with a fake secret and verifies it, the way a receiver checks
//! Shopify's `X-Shopify-Hmac-Sha256` or WooCommerce's `X-WC-Webhook-Signature`.
//!
//! Run with `cargo run -p example-verify-webhook`.
#![allow(clippy::print_stdout)]

use catalog_core::webhook::{HmacVerifier, WebhookError, sign};
use secrecy::SecretString;

fn main() -> Result<(), WebhookError> {
    let body = br#"{"id":788032119674292922,"title":"Example T-Shirt"}"#;

    // The platform signs the raw bytes with the shared secret...
    let signature = sign(b"old-secret", body);
    println!("X-Shopify-Hmac-Sha256: {signature}");

    // ...and the receiver, mid-rotation, accepts the old and the new secret.
    let verifier = HmacVerifier::new([
        SecretString::from("new-secret"),
        SecretString::from("old-secret"),
    ])?;
    verifier.verify(body, &signature)?;
    println!("verified with {verifier:?}");

    // Re-serialising the JSON (here: one extra space) breaks the signature.
    let reserialised = br#"{"id": 788032119674292922,"title":"Example T-Shirt"}"#;
    match verifier.verify(reserialised, &signature) {
        Err(e) => println!("re-serialised body rejected: {e}"),
        Ok(()) => println!("unexpected: re-serialised body accepted"),
    }
    Ok(())
}
