//! Checking request fields on receipt: the longest value each string field may
//! hold ([`max_len`], one table), one error, [`FieldViolation`], answered as
//! `INVALID_ARGUMENT` naming the field, and [`shown`] for client input in logs.

use std::{borrow::Cow, fmt};

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// A request field that is missing or malformed, named as in the proto.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldViolation {
    /// The proto field name.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: Cow<'static, str>,
}

impl FieldViolation {
    /// `field` is wrong for `reason`.
    pub fn new(field: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

impl From<FieldViolation> for Status {
    fn from(violation: FieldViolation) -> Self {
        let details = ErrorDetails::with_bad_request_violation(
            violation.field,
            violation.reason.clone().into_owned(),
        );
        Status::with_error_details(Code::InvalidArgument, violation.to_string(), details)
    }
}

/// The longest value, in bytes, of the request string field `field` (its proto
/// name, the same meaning in every service). Sized to what the field carries,
/// so that an oversized value is refused before any work (hashing, a lookup, a
/// throttle entry, a log line). A test checks that every string field of every
/// request message in the contract is listed here.
pub fn max_len(field: &str) -> usize {
    declared_max_len(field).unwrap_or(DEFAULT_MAX_LEN)
}

fn declared_max_len(field: &str) -> Option<usize> {
    Some(match field {
        // Names: users, service clients, audiences, subjects.
        "username" | "client_id" | "audience" | "subject" => 128,
        "product_id" | "id" => 64,
        "request_id" => 128,
        "password" | "current_password" | "new_password" | "client_secret" => 1024,
        "scopes" => 1024,
        "name" => 256,
        "description" => 4096,
        // Each item of a repeated field: "view", "order".
        "actions" => 16,
        // Opaque 256-bit random strings.
        "refresh_token" => 256,
        "page_token" => 1024,
        // An access token travels in a header too: at most the header list.
        "subject_token" => 16 * 1024,
        // Products' grants are capped by `--grant-max-bytes` (4 KiB by default).
        "entitlement_token" => 64 * 1024,
        _ => return None,
    })
}

/// The bound of a string field [`max_len`] does not list.
pub const DEFAULT_MAX_LEN: usize = 256;

/// `value` must not be empty, nor longer than [`max_len`]`(field)`.
pub fn required(field: &'static str, value: &str) -> Result<(), FieldViolation> {
    bounded(field, value)?;
    if value.is_empty() {
        return Err(FieldViolation::new(field, "required"));
    }
    Ok(())
}

/// `value` (which may be empty) must not be longer than [`max_len`]`(field)`.
pub fn bounded(field: &'static str, value: &str) -> Result<(), FieldViolation> {
    let max = max_len(field);
    if value.len() > max {
        return Err(FieldViolation::new(
            field,
            format!("longer than {max} bytes"),
        ));
    }
    Ok(())
}

/// The longest piece of client input a log line or span field shows.
pub const SHOWN_MAX: usize = 64;

/// Client input as logs and spans may carry it: at most [`SHOWN_MAX`] bytes,
/// control characters escaped (no forged lines), and how much was cut.
pub fn shown(value: &str) -> Shown<'_> {
    Shown(value)
}

/// See [`shown`].
#[derive(Debug, Clone, Copy)]
pub struct Shown<'a>(&'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut end = self.0.len().min(SHOWN_MAX);
        while !self.0.is_char_boundary(end) {
            end -= 1;
        }
        write!(f, "{}", self.0[..end].escape_debug())?;
        if end < self.0.len() {
            write!(f, "…[{} more bytes]", self.0.len() - end)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    /// Every string field of every request message of every tokenmesh service
    /// has a bound of its own in [`max_len`], not the fallback: a field added to
    /// the contract fails here until its bound is chosen.
    #[test]
    fn every_request_string_field_has_a_declared_bound() {
        use prost_types::field_descriptor_proto::Type;
        let set = prost_types::FileDescriptorSet::decode(tokenmesh_proto::FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let mut checked = Vec::new();
        for file in set
            .file
            .iter()
            .filter(|f| f.package().starts_with("tokenmesh."))
        {
            let inputs: Vec<String> = file
                .service
                .iter()
                .flat_map(|service| service.method.iter())
                .map(|method| {
                    method
                        .input_type()
                        .rsplit('.')
                        .next()
                        .unwrap_or("")
                        .to_owned()
                })
                .collect();
            for message in file
                .message_type
                .iter()
                .filter(|message| inputs.iter().any(|input| input == message.name()))
            {
                for field in message.field.iter().filter(|f| f.r#type() == Type::String) {
                    assert!(
                        declared_max_len(field.name()).is_some(),
                        "{}.{} has no bound in max_len",
                        message.name(),
                        field.name()
                    );
                    checked.push(format!("{}.{}", message.name(), field.name()));
                }
            }
        }
        assert!(
            checked.len() >= 25,
            "request string fields checked: {checked:?}"
        );
    }

    #[test]
    fn a_field_longer_than_its_bound_is_invalid_argument_naming_it() {
        let long = "a".repeat(129);
        let status = Status::from(required("username", &long).expect_err("too long"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "username: longer than 128 bytes");
        assert_eq!(bounded("description", ""), Ok(()));
        assert_eq!(required("username", &long[..128]), Ok(()));
    }

    #[test]
    fn shown_input_is_cut_and_escaped() {
        assert_eq!(shown("alice").to_string(), "alice");
        assert_eq!(shown("a\nb\u{1b}").to_string(), "a\\nb\\u{1b}");
        let long = "é".repeat(100);
        assert_eq!(
            shown(&long).to_string(),
            format!("{}…[136 more bytes]", "é".repeat(32))
        );
    }

    #[test]
    fn an_empty_required_field_is_invalid_argument_with_a_bad_request_detail() {
        assert_eq!(required("username", "alice"), Ok(()));
        let status = Status::from(required("username", "").expect_err("empty"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "username: required");
        let bad_request = status.get_details_bad_request().expect("BadRequest detail");
        assert_eq!(bad_request.field_violations.len(), 1);
        assert_eq!(bad_request.field_violations[0].field, "username");
        assert_eq!(bad_request.field_violations[0].description, "required");
    }
}
