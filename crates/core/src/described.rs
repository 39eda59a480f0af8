//! How the types that serialize themselves by hand appear in the API description (OpenAPI):
//! each is one JSON string (or, for amounts read from a body, a string or a number).

use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{KnownFormat, RefOr, SchemaFormat};

use crate::connection_url::ConnectionUrl;
use crate::money::{Amount, Currency};
use crate::permissions::MemberRole;
use crate::time::Timestamp;

fn string(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
}

macro_rules! described {
    ($ty:ty, $schema:expr) => {
        impl utoipa::PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                $schema.into()
            }
        }
        impl utoipa::ToSchema for $ty {}
    };
}

described!(
    Timestamp,
    string("RFC 3339, UTC, microseconds.")
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
);
described!(
    Amount,
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Number]))
        .description(Some(
            "A decimal amount of money. Answers carry it as a string (\"9.99\"); requests may \
             also send a number."
        ))
);
described!(
    Currency,
    string("An ISO 4217 currency code.").pattern(Some("^[A-Z]{3}$"))
);
described!(
    ConnectionUrl,
    string("A connection URL; its password is redacted in every answer.")
);
described!(
    MemberRole,
    string("A built-in role (owner, admin, member, viewer) or one of the tenant's custom roles.")
);
