//! JSON decoding that says where it failed.

use serde::de::DeserializeOwned;

use crate::CatalogError;

/// Decodes JSON, reporting the path of the first field that failed
/// (`data.products.nodes[3].variants.nodes[0].price`) in [`CatalogError::Decode`].
///
/// # Errors
/// [`CatalogError::Decode`] when the bytes are not JSON of the expected shape.
///
/// ```
/// #[derive(serde::Deserialize, Debug)]
/// struct Wire { id: u64 }
/// let err = catalog_core::json::decode::<Vec<Wire>>(br#"[{"id":1},{"id":"x"}]"#).unwrap_err();
/// assert!(err.to_string().contains("[1].id"));
/// ```
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CatalogError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        CatalogError::Decode {
            path,
            message: err.into_inner().to_string(),
        }
    })
}

/// Like [`decode`], from an already parsed [`serde_json::Value`].
///
/// # Errors
/// [`CatalogError::Decode`] when the value is not of the expected shape.
pub fn decode_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, CatalogError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        CatalogError::Decode {
            path,
            message: err.into_inner().to_string(),
        }
    })
}
