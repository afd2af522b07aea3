use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::WebhookError;

type HmacSha256 = Hmac<Sha256>;

/// Length in bytes of an HMAC-SHA256 signature.
pub const SIGNATURE_LEN: usize = 32;

/// Verifies base64 HMAC-SHA256 signatures over raw bodies, the scheme Shopify
/// (`X-Shopify-Hmac-Sha256`) and WooCommerce (`X-WC-Webhook-Signature`) share.
///
/// Holds one or more secrets so a rotation can accept old and new at once.
/// Every secret is tried, in constant time, whatever the outcome of the others,
/// so timing does not reveal which secret matched or how much of a signature
/// was right. `Debug` shows only how many secrets there are.
#[derive(Clone)]
pub struct HmacVerifier {
    // Keyed HMAC states, precomputed once: cloning one is cheaper than
    // re-keying for every delivery.
    keys: Vec<HmacSha256>,
}

impl HmacVerifier {
    /// Builds a verifier from one or more secrets.
    ///
    /// # Errors
    /// [`WebhookError::NoSecret`] when there is no secret or one of them is
    /// empty: an empty key would make signatures anyone can compute.
    pub fn new(secrets: impl IntoIterator<Item = SecretString>) -> Result<Self, WebhookError> {
        let keys = secrets
            .into_iter()
            .map(|secret| {
                let bytes = secret.expose_secret().as_bytes();
                if bytes.is_empty() {
                    return Err(WebhookError::NoSecret);
                }
                HmacSha256::new_from_slice(bytes).map_err(|_| WebhookError::NoSecret)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(WebhookError::NoSecret);
        }
        Ok(Self { keys })
    }

    /// How many secrets are accepted.
    pub fn secret_count(&self) -> usize {
        self.keys.len()
    }

    /// Checks a base64 signature against the raw body.
    ///
    /// # Errors
    /// [`WebhookError::EmptySignature`], [`WebhookError::MalformedSignature`]
    /// (not base64), [`WebhookError::SignatureLength`] (not 32 bytes) or
    /// [`WebhookError::SignatureMismatch`].
    pub fn verify(&self, body: &[u8], signature_b64: &str) -> Result<(), WebhookError> {
        let signature_b64 = signature_b64.trim();
        if signature_b64.is_empty() {
            return Err(WebhookError::EmptySignature);
        }
        let signature = STANDARD
            .decode(signature_b64)
            .map_err(|_| WebhookError::MalformedSignature)?;
        if signature.len() != SIGNATURE_LEN {
            return Err(WebhookError::SignatureLength(signature.len()));
        }
        let mut matched = false;
        for key in &self.keys {
            let mut mac = key.clone();
            mac.update(body);
            // `verify_slice` compares in constant time; `|` (not `||`) keeps
            // trying every key.
            matched |= mac.verify_slice(&signature).is_ok();
        }
        if matched {
            Ok(())
        } else {
            Err(WebhookError::SignatureMismatch)
        }
    }
}

impl fmt::Debug for HmacVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HmacVerifier")
            .field("secrets", &format_args!("[{} redacted]", self.keys.len()))
            .finish()
    }
}

/// Signs a body the way Shopify and WooCommerce do: base64 of HMAC-SHA256.
///
/// For tests, tools (`catalog webhook sign`) and outgoing deliveries.
///
/// ```
/// use catalog_core::webhook::{sign, HmacVerifier};
/// let sig = sign(b"secret", b"{}");
/// HmacVerifier::new([catalog_core::secrecy::SecretString::from("secret")])?.verify(b"{}", &sig)?;
/// # Ok::<(), catalog_core::webhook::WebhookError>(())
/// ```
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut mac) = HmacSha256::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier(secrets: &[&str]) -> HmacVerifier {
        HmacVerifier::new(secrets.iter().map(|s| SecretString::from(*s))).unwrap()
    }

    const BODY: &[u8] = br#"{"id":788032119674292922,"title":"Example T-Shirt"}"#;

    #[test]
    fn either_rotated_secret_verifies() {
        let v = verifier(&["new-secret", "old-secret"]);
        v.verify(BODY, &sign(b"old-secret", BODY)).unwrap();
        v.verify(BODY, &sign(b"new-secret", BODY)).unwrap();
        assert_eq!(
            v.verify(BODY, &sign(b"other", BODY)),
            Err(WebhookError::SignatureMismatch)
        );
    }

    #[test]
    fn one_byte_difference_is_rejected() {
        let v = verifier(&["s"]);
        let sig = sign(b"s", BODY);
        let mut body = BODY.to_vec();
        for i in [0, body.len() / 2, body.len() - 1] {
            body[i] ^= 1;
            assert_eq!(v.verify(&body, &sig), Err(WebhookError::SignatureMismatch));
            body[i] ^= 1;
        }
        v.verify(&body, &sig).unwrap();
    }

    #[test]
    fn garbled_signatures_get_distinct_errors() {
        let v = verifier(&["s"]);
        let good = sign(b"s", BODY);
        assert_eq!(v.verify(BODY, ""), Err(WebhookError::EmptySignature));
        assert_eq!(v.verify(BODY, "   "), Err(WebhookError::EmptySignature));
        assert_eq!(
            v.verify(BODY, "not base64!!"),
            Err(WebhookError::MalformedSignature)
        );
        // Truncated base64 (still valid base64, fewer bytes).
        let short = STANDARD.encode(&STANDARD.decode(&good).unwrap()[..31]);
        assert_eq!(
            v.verify(BODY, &short),
            Err(WebhookError::SignatureLength(31))
        );
        // Cut mid-quantum: no longer valid base64.
        assert_eq!(
            v.verify(BODY, &good[..good.len() - 3]),
            Err(WebhookError::MalformedSignature)
        );
        let long = STANDARD.encode([0u8; 33]);
        assert_eq!(
            v.verify(BODY, &long),
            Err(WebhookError::SignatureLength(33))
        );
        // Hex of the right MAC is not accepted: the scheme is base64.
        let hex: String = STANDARD
            .decode(&good)
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(v.verify(BODY, &hex).is_err());
    }

    #[test]
    fn empty_secrets_are_refused() {
        assert_eq!(
            HmacVerifier::new(Vec::<SecretString>::new()).unwrap_err(),
            WebhookError::NoSecret
        );
        assert_eq!(
            HmacVerifier::new([SecretString::from("")]).unwrap_err(),
            WebhookError::NoSecret
        );
    }

    #[test]
    fn debug_does_not_show_secrets() {
        let v = verifier(&["hunter2-very-secret"]);
        let dbg = format!("{v:?}");
        assert!(!dbg.contains("hunter2"));
        assert!(dbg.contains("1 redacted"));
    }
}
