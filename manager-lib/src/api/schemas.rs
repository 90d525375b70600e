//! The schemas of the status texts in the views: closed sets of strings that
//! the views hold as `&'static str`.

use utoipa::openapi::schema::{ObjectBuilder, Type};

fn text_enum(values: &[&str]) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
}

/// The schema of a node's `actualStatus`.
pub(crate) fn actual_status() -> ObjectBuilder {
    text_enum(&["Running", "Stopped", "Error"])
}

/// The schema of a node's `requiredStatus`.
pub(crate) fn required_status() -> ObjectBuilder {
    text_enum(&["Running", "Stopped"])
}

/// The schema of a user's `status`.
pub(crate) fn user_status() -> ObjectBuilder {
    text_enum(&["Enabled", "Disabled"])
}
