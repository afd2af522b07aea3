//! Signing per the Standard Webhooks specification, so consumers can verify
//! our forwarded events with any Standard Webhooks library:
//!
//! - `webhook-id`: the event id (the same on every retry);
//! - `webhook-timestamp`: seconds since the epoch;
//! - `webhook-signature`: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`,
//!   keyed with the base64-decoded part of the `whsec_<base64>` secret.

use std::fmt;

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// The secret is not `whsec_<base64>` of at least [`MIN_KEY_BYTES`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "Standard Webhooks secret must be whsec_ followed by the base64 of at least 24 random bytes (e.g. whsec_$(openssl rand -base64 32))"
)]
pub struct InvalidSecret;

/// The shortest key accepted: "Secret keys should be between 24 bytes and
/// 64 bytes" (Standard Webhooks). A short key is guessable offline from one
/// signed delivery. Longer keys are taken, as the reference libraries take
/// them (HMAC hashes a key past its block size first).
pub const MIN_KEY_BYTES: usize = 24;

/// Base64 with or without its `=` padding: the reference libraries accept
/// secrets either way (Python's appends the padding), so a secret that
/// verifies there is taken here.
const SECRET_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Signs outgoing deliveries. `Debug` never shows the key.
#[derive(Clone)]
pub struct Signer {
    key: Hmac<Sha256>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signer([redacted])")
    }
}

impl Signer {
    /// A signer from a `whsec_<base64>` secret.
    ///
    /// # Errors
    /// [`InvalidSecret`] when the secret is not of that form.
    pub fn new(secret: &SecretString) -> Result<Self, InvalidSecret> {
        let s = secret.expose_secret().trim();
        let b64 = s.strip_prefix("whsec_").ok_or(InvalidSecret)?;
        let key = SECRET_BASE64.decode(b64).map_err(|_| InvalidSecret)?;
        if key.len() < MIN_KEY_BYTES {
            return Err(InvalidSecret);
        }
        let key = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| InvalidSecret)?;
        Ok(Self { key })
    }

    /// The `webhook-signature` value for a message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = self.key.clone();
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_vector() {
        // The test vector shared by the Standard Webhooks reference libraries.
        let signer = Signer::new(&SecretString::from(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ))
        .unwrap();
        assert_eq!(
            signer.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn refuses_secrets_of_the_wrong_form() {
        for bad in [
            "",
            "whsec_",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_!!!",
            // 5 and 23 bytes: too short to keep the key from being guessed.
            "whsec_c2hvcnQ=",
            "whsec_MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI=",
        ] {
            assert_eq!(
                Signer::new(&SecretString::from(bad)).unwrap_err(),
                InvalidSecret
            );
        }
        let s = Signer::new(&SecretString::from(
            "whsec_MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIz",
        ))
        .unwrap();
        assert!(!format!("{s:?}").contains("MDEy"));
        // Without its padding, and longer than 64 bytes: taken, as the
        // reference libraries take them, and signing alike.
        let padded = Signer::new(&SecretString::from(
            "whsec_dGVzdC1zZWNyZXQtb2YtdGhlLXRlc3RzLTMyYnl0ZXM=",
        ))
        .unwrap();
        let bare = Signer::new(&SecretString::from(
            "whsec_dGVzdC1zZWNyZXQtb2YtdGhlLXRlc3RzLTMyYnl0ZXM",
        ))
        .unwrap();
        assert_eq!(padded.sign("id", 1, b"{}"), bare.sign("id", 1, b"{}"));
        let long = format!("whsec_{}", STANDARD.encode([7u8; 100]));
        assert!(Signer::new(&SecretString::from(long)).is_ok());
    }
}
