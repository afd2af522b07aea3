//! Reading a response body with a ceiling.
//!
//! Platform clients read each API response whole before decoding it. A
//! server that sends without end (a misconfigured proxy, a hostile host
//! named as the store) would otherwise take all the memory there is
//! before the request timeout; a few pages read at once multiply it. The
//! platform crates collect their bodies through [`collect_capped`].

use futures::{Stream, StreamExt as _};

use crate::CatalogError;

/// Most bytes a platform client reads of one API response: 32 MiB. The
/// largest pages the clients ask for (250 Shopify products within the
/// query cost limit, 100 WooCommerce products with their descriptions)
/// are a few MiB.
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// Why a capped body could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum CappedBodyError<E> {
    /// The body is longer than the limit (declared, or as it arrived).
    TooLarge {
        /// The limit, bytes.
        limit: usize,
    },
    /// Reading the body failed (the connection was cut).
    Read(E),
}

impl<E> CappedBodyError<E> {
    /// The error a platform client reports for a body past the limit, or
    /// `read`'s for a failed read.
    pub fn into_catalog_error(self, read: impl FnOnce(E) -> CatalogError) -> CatalogError {
        match self {
            Self::TooLarge { limit } => CatalogError::Decode {
                path: String::new(),
                message: format!(
                    "the response is longer than {} KiB: not a page this client asked for",
                    limit / 1024
                ),
            },
            Self::Read(e) => read(e),
        }
    }
}

/// The body a stream of chunks makes, refused as soon as it passes `limit`
/// bytes. `declared` is the `Content-Length` when the server sent one: a
/// body declared too long is refused before any of it is read.
///
/// # Errors
/// [`CappedBodyError::TooLarge`] past the limit, [`CappedBodyError::Read`]
/// when a chunk cannot be read.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use catalog_core::body::{collect_capped, CappedBodyError};
/// let chunks = futures::stream::iter([Ok::<_, ()>(&b"{\"a\""[..]), Ok(&b":1}"[..])]);
/// assert_eq!(collect_capped(chunks, None, 16).await.unwrap(), b"{\"a\":1}");
/// let long = futures::stream::iter([Ok::<_, ()>(&[0u8; 10][..]), Ok(&[0u8; 10][..])]);
/// assert!(matches!(
///     collect_capped(long, None, 16).await,
///     Err(CappedBodyError::TooLarge { limit: 16 })
/// ));
/// # });
/// ```
pub async fn collect_capped<S, B, E>(
    stream: S,
    declared: Option<u64>,
    limit: usize,
) -> Result<Vec<u8>, CappedBodyError<E>>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
{
    let too_large = CappedBodyError::TooLarge { limit };
    let declared = match declared.map(usize::try_from) {
        Some(Ok(n)) if n <= limit => Some(n),
        Some(_) => return Err(too_large),
        None => None,
    };
    // Reserved up to what was declared (within the limit), not more: a
    // declared length is a promise, not a fact.
    let mut body = Vec::with_capacity(declared.unwrap_or(0).min(1024 * 1024));
    let mut stream = std::pin::pin!(stream);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(CappedBodyError::Read)?;
        let chunk = chunk.as_ref();
        if body.len().saturating_add(chunk.len()) > limit {
            return Err(too_large);
        }
        body.extend_from_slice(chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_body_up_to_the_limit_is_read_whole() {
        let chunks = futures::stream::iter(vec![Ok::<_, ()>(vec![1u8; 8]), Ok(vec![2u8; 8])]);
        assert_eq!(run(collect_capped(chunks, Some(16), 16)).unwrap().len(), 16);
    }

    #[test]
    fn a_declared_length_past_the_limit_is_refused_before_reading() {
        let read = std::cell::Cell::new(0);
        let chunks = futures::stream::iter(vec![Ok::<_, ()>(vec![1u8; 4])]).inspect(|_| {
            read.set(read.get() + 1);
        });
        assert!(matches!(
            run(collect_capped(chunks, Some(u64::MAX), 16)),
            Err(CappedBodyError::TooLarge { limit: 16 })
        ));
        assert_eq!(read.get(), 0);
    }

    #[test]
    fn a_body_longer_than_declared_or_undeclared_stops_at_the_limit() {
        for declared in [None, Some(4)] {
            // Endless: only the limit stops it.
            let chunks = futures::stream::repeat_with(|| Ok::<_, ()>(vec![0u8; 1000]));
            assert!(matches!(
                run(collect_capped(chunks, declared, 10_000)),
                Err(CappedBodyError::TooLarge { limit: 10_000 })
            ));
        }
    }

    #[test]
    fn a_read_error_is_passed_on() {
        let chunks = futures::stream::iter(vec![Ok(vec![1u8]), Err("cut")]);
        assert!(matches!(
            run(collect_capped(chunks, None, 16)),
            Err(CappedBodyError::Read("cut"))
        ));
    }
}
