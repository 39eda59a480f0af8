//! The record routes' parts of the API description that no wire type carries: their path
//! and header parameters, and the record and change-event schemas (a record's fields are the
//! collection's own, so its schema names only the system fields and leaves the rest open).

use std::borrow::Cow;

use bulkhead_core::time::Timestamp;
use bulkhead_core::{CollectionName, RecordId, TenantId};
use serde_json::Value;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

/// The path of a collection's routes (described, never constructed).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct CollectionPath {
    /// The collection's name.
    collection: CollectionName,
}

/// The path of a record's routes (described, never constructed).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct RecordPath {
    /// The collection's name.
    collection: CollectionName,
    /// The record's id.
    id: RecordId,
}

/// `Bulkhead-Tenant` ([`NamedTenant`]), read by every data route (described, never constructed).
#[derive(utoipa::IntoParams)]
#[into_params(names("Bulkhead-Tenant"), parameter_in = Header)]
#[allow(dead_code)]
pub(crate) struct TenantHeader(
    /// The tenant whose data to reach: required for a platform admin and for a user who is a
    /// member of several tenants; other credentials may only name their own.
    #[param(nullable = false)]
    Option<TenantId>,
);

/// `If-Match` ([`if_match`]) (described, never constructed).
#[derive(utoipa::IntoParams)]
#[into_params(names("If-Match"), parameter_in = Header)]
#[allow(dead_code)]
pub(crate) struct IfMatchHeader(
    /// Apply only if the record is at this version (`"3"`, as its `ETag`; `*` for any).
    #[param(nullable = false, pattern = r#"^\s*(\*|(W/)?"?[0-9]+"?)\s*$"#)]
    Option<String>,
);

/// `Record` in the API description: what the server answers for a record
/// ([`Record::to_json`]): the system fields, then the collection's own fields the caller may
/// see.
pub(crate) struct RecordSchema;

impl PartialSchema for RecordSchema {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "A record: its system fields, then the collection's own fields (those the \
                 caller may see; `fields=` narrows them).",
            ))
            .property("id", Ref::from_schema_name(RecordId::name()))
            .property("created_at", Ref::from_schema_name(Timestamp::name()))
            .property("updated_at", Ref::from_schema_name(Timestamp::name()))
            .property(
                "version",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                        utoipa::openapi::KnownFormat::Int64,
                    )))
                    .description(Some(
                        "Starts at 1 and grows by one with each change; the `ETag`.",
                    )),
            )
            .required("id")
            .required("created_at")
            .required("updated_at")
            .required("version")
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .into()
    }
}

impl ToSchema for RecordSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Record")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((RecordId::name().into_owned(), RecordId::schema()));
        schemas.push((Timestamp::name().into_owned(), Timestamp::schema()));
    }
}

/// `WatchEvent` in the API description: one server-sent event of `records:watch`, as an
/// event-stream reader parses it (`event`, `id`, `retry`, `data`); `data` is JSON whose shape
/// the event names.
pub(crate) struct WatchEventSchema;

impl PartialSchema for WatchEventSchema {
    fn schema() -> RefOr<Schema> {
        let event = |name: &str, description: &str, data: Value| {
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some(description))
                .property(
                    "event",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some([name])),
                )
                .property(
                    "id",
                    ObjectBuilder::new().schema_type(Type::String).description(Some(
                        "The event's position: send it back as `Last-Event-ID` to resume after it.",
                    )),
                )
                .property("retry", ObjectBuilder::new().schema_type(Type::Integer))
                .property(
                    "data",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .content_media_type("application/json")
                        .extensions(Some(utoipa::openapi::extensions::Extensions::from_iter([
                            ("contentSchema", data),
                        ]))),
                )
                .required("event")
                .required("data")
        };
        let schema_ref = |name: Cow<'static, str>| serde_json::json!({ "$ref": format!("#/components/schemas/{name}") });
        utoipa::openapi::schema::OneOfBuilder::new()
            .description(Some(
                "One server-sent event of the change feed (docs/watch.md).",
            ))
            .item(event(
                "ready",
                "The feed is open; every change from here follows.",
                serde_json::json!({ "type": "object" }),
            ))
            .item(event(
                "created",
                "A record entered the caller's view.",
                schema_ref(RecordSchema::name()),
            ))
            .item(event(
                "updated",
                "A record in the caller's view changed.",
                schema_ref(RecordSchema::name()),
            ))
            .item(event(
                "deleted",
                "A record left the caller's view.",
                serde_json::json!({
                    "type": "object",
                    "required": ["id"],
                    "properties": { "id": schema_ref(RecordId::name()) },
                }),
            ))
            .item(event(
                "resync",
                "Events were lost: list again, then apply what follows.",
                serde_json::json!({
                    "type": "object",
                    "required": ["reason"],
                    "properties": { "reason": {
                        "type": "string",
                        "description": "`unknown_position`, `expired_position`, `lagged` or `restored`.",
                    } },
                }),
            ))
            .item(event(
                "closed",
                "Access ended; nothing follows.",
                schema_ref(bulkhead_api::ErrorBody::name()),
            ))
            .into()
    }
}

impl ToSchema for WatchEventSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("WatchEvent")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((RecordSchema::name().into_owned(), RecordSchema::schema()));
        RecordSchema::schemas(schemas);
        schemas.push((
            bulkhead_api::ErrorBody::name().into_owned(),
            bulkhead_api::ErrorBody::schema(),
        ));
        bulkhead_api::ErrorBody::schemas(schemas);
    }
}

/// `RecordInput` in the API description: a record body (create, replace, patch).
pub(crate) struct RecordInputSchema;

impl PartialSchema for RecordInputSchema {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "The collection's fields by name. System fields may be sent back as read: \
                 `id` (on a create, the new record's id; otherwise it must match the path), \
                 `version` (on a replace or patch, a precondition like `If-Match`; ignored \
                 on a create); `created_at` and `updated_at` are ignored.",
            ))
            .property("id", Ref::from_schema_name(RecordId::name()))
            .property(
                "version",
                ObjectBuilder::new().schema_type(Type::Integer).format(Some(
                    utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Int64),
                )),
            )
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .into()
    }
}

impl ToSchema for RecordInputSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("RecordInput")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((RecordId::name().into_owned(), RecordId::schema()));
    }
}
