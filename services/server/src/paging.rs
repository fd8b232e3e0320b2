//! Page sizes and opaque page tokens, the same for every list method.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

/// Page size when the request says 0.
pub const DEFAULT_PAGE_SIZE: i64 = 50;
/// Larger requests are served this many.
pub const MAX_PAGE_SIZE: i64 = 100;

/// The number of items to return for a requested `page_size`; negative sizes
/// are refused.
pub fn page_size(requested: i32) -> Result<i64, &'static str> {
    match requested {
        ..0 => Err("must not be negative"),
        0 => Ok(DEFAULT_PAGE_SIZE),
        n => Ok(i64::from(n).min(MAX_PAGE_SIZE)),
    }
}

/// An opaque page token for a cursor (the last item's sort key).
pub fn encode_token(cursor: &str) -> String {
    URL_SAFE_NO_PAD.encode(cursor)
}

/// The cursor in `token`; `None` for the first page.
pub fn decode_token(token: &str) -> Result<Option<String>, &'static str> {
    if token.is_empty() {
        return Ok(None);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| "not a token this service issued")?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| "not a token this service issued")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_clamped_and_tokens_round_trip() {
        assert_eq!(page_size(0), Ok(DEFAULT_PAGE_SIZE));
        assert_eq!(page_size(7), Ok(7));
        assert_eq!(page_size(10_000), Ok(MAX_PAGE_SIZE));
        assert!(page_size(-1).is_err());
        assert_eq!(
            decode_token(&encode_token("P-101")),
            Ok(Some("P-101".into()))
        );
        assert_eq!(decode_token(""), Ok(None));
        assert!(decode_token("***").is_err());
    }
}
