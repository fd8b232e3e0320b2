//! Checking request fields on receipt: one error, [`FieldViolation`], answered as
//! `INVALID_ARGUMENT` naming the field, with a `google.rpc.BadRequest` detail that
//! clients read without parsing the message.

use std::borrow::Cow;

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

/// `value` must not be empty.
pub fn required(field: &'static str, value: &str) -> Result<(), FieldViolation> {
    if value.is_empty() {
        return Err(FieldViolation::new(field, "required"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
