//! Page sizes and opaque page tokens, the same for every list method.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

/// Page size when the request says 0.
pub const DEFAULT_PAGE_SIZE: i64 = 50;
/// Larger requests are served this many.
pub const MAX_PAGE_SIZE: i64 = 100;

/// A list request's paging fields, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// How many items to return.
    pub limit: i64,
    /// The cursor after which to start; `None` for the first page.
    pub after: Option<String>,
}

/// A paging field that is not acceptable, named as in the proto.
pub type PagingError = crate::FieldViolation;

impl PageRequest {
    /// Validates `page_size` and `page_token` from a list request.
    pub fn parse(page_size: i32, page_token: &str) -> Result<Self, PagingError> {
        crate::validate::bounded("page_token", page_token)?;
        let limit =
            self::page_size(page_size).map_err(|reason| PagingError::new("page_size", reason))?;
        let after =
            decode_token(page_token).map_err(|reason| PagingError::new("page_token", reason))?;
        Ok(Self { limit, after })
    }

    /// How many rows to fetch: one more than the page, to know if another follows.
    pub fn fetch_limit(&self) -> i64 {
        self.limit + 1
    }

    /// Cuts `rows` (fetched with [`PageRequest::fetch_limit`]) to the page, and the
    /// token of the next page (empty on the last), made from the last item's cursor.
    pub fn finish<T>(&self, mut rows: Vec<T>, cursor: impl Fn(&T) -> String) -> (Vec<T>, String) {
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        if rows.len() <= limit {
            return (rows, String::new());
        }
        rows.truncate(limit);
        let next = rows
            .last()
            .map(|row| encode_token(&cursor(row)))
            .unwrap_or_default();
        (rows, next)
    }
}

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

    #[test]
    fn a_page_is_cut_and_points_at_the_next() {
        let request = PageRequest::parse(2, "").expect("valid");
        let (page, next) = request.finish(vec!["a", "b", "c"], |s| (*s).to_owned());
        assert_eq!(
            (page, decode_token(&next)),
            (vec!["a", "b"], Ok(Some("b".into())))
        );
        let (page, next) = request.finish(vec!["a", "b"], |s| (*s).to_owned());
        assert_eq!((page, next.as_str()), (vec!["a", "b"], ""));
        assert_eq!(
            PageRequest::parse(1, "!")
                .expect_err("bad token")
                .to_string(),
            "page_token: not a token this service issued"
        );
    }
}
