//! The API description (OpenAPI 3.1), served at `GET /v1/openapi.json`.
//!
//! Routes are registered through `utoipa_axum`'s `routes!`, which takes each handler's
//! `#[utoipa::path]` and mounts the handler in one step: a route the server answers is a route
//! the description lists, with no list to keep in step by hand. Bodies are the wire types of
//! `bulkhead-api` and `bulkhead-core`, whose schemas are derived from the same serde
//! definitions the server (de)serializes with. What every operation shares is added here
//! once: the error body for every status the operation does not list, and who may call it.

pub(crate) mod records;

use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi as _, ToSchema};

use bulkhead_api::ErrorBody;

/// The credentials a request may carry, each as `Authorization: Bearer <secret>`.
pub const SCHEMES: [(&str, &str); 4] = [
    (
        "platformKey",
        "A platform key (`bk_…`, role admin or operator): the control plane; an admin also \
         reaches one tenant's data by naming it in the `Bulkhead-Tenant` header.",
    ),
    (
        "tenantKey",
        "A tenant's API key (`bk_…`): that tenant's data, with the key's role.",
    ),
    (
        "userJwt",
        "A JWT from an identity provider the server trusts, for a user who is a member of \
         the tenant it names.",
    ),
    (
        "tenantToken",
        "A short-lived tenant token minted with `POST /v1/tokens`, narrowed to what its \
         parent allows (for browsers).",
    ),
];

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Bulkhead",
        description = "A multi-tenant data server for B2B SaaS. Every error answers with \
                       the one error body (`ErrorBody`); its codes are listed in docs/errors.md.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(ErrorBody)),
    modifiers(&Shared),
)]
pub struct ApiDoc;

struct Shared;

impl Modify for Shared {
    fn modify(&self, api: &mut OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        for (name, description) in SCHEMES {
            let mut http = Http::new(HttpAuthScheme::Bearer);
            http.description = Some(description.to_owned());
            if name == "userJwt" || name == "tenantToken" {
                http.bearer_format = Some("JWT".to_owned());
            }
            components.add_security_scheme(name, SecurityScheme::Http(http));
        }
        // Any one of the credentials; operations that need none say so with `security(())`.
        api.security = Some(
            SCHEMES
                .iter()
                .map(|(name, _)| SecurityRequirement::new(*name, Vec::<String>::new()))
                .collect(),
        );
    }
}

/// The description of `routes` (the server's router, split), with the shared parts added to
/// each operation, as the JSON the server serves.
pub fn finish(api: OpenApi) -> serde_json::Value {
    let mut json = serde_json::to_value(with_defaults(api)).unwrap_or_default();
    open_flattened(&mut json);
    describe_itself(&mut json);
    list_error_codes(&mut json);
    json
}

/// The error catalogue: every code the server answers with, its status and meaning (a test,
/// `tests/error_catalogue.rs`, holds it to the code).
const CATALOGUE: &str = include_str!("../../../../docs/errors.md");

/// `ErrorDetail.code` names the codes of the catalogue, each with its status and meaning.
fn list_error_codes(json: &mut serde_json::Value) {
    let rows: Vec<(&str, &str, &str)> = CATALOGUE
        .lines()
        .filter_map(|line| {
            let mut cells = line.strip_prefix("| `")?.splitn(3, '|');
            let code = cells.next()?.trim().trim_end_matches('`');
            let status = cells.next()?.trim();
            let meaning = cells.next()?.trim().trim_end_matches('|').trim();
            Some((code, status, meaning))
        })
        .collect();
    let description: String = std::iter::once(
        "Stable, for programs (the message is for people). Each code with its status and \
         meaning:"
            .to_owned(),
    )
    .chain(
        rows.iter()
            .map(|(code, status, meaning)| format!("- `{code}` ({status}): {meaning}")),
    )
    .collect::<Vec<_>>()
    .join("\n");
    if let Some(code) = json.pointer_mut("/components/schemas/ErrorDetail/properties/code") {
        *code = serde_json::json!({
            "type": "string",
            "enum": rows.iter().map(|(code, _, _)| *code).collect::<Vec<_>>(),
            "description": description,
        });
    }
}

/// `GET /v1/openapi.json` is served from the finished description, so it is added to it here.
fn describe_itself(json: &mut serde_json::Value) {
    let error = json
        .pointer("/paths/~1healthz/get/responses/default")
        .cloned()
        .unwrap_or_default();
    if let Some(paths) = json
        .get_mut("paths")
        .and_then(serde_json::Value::as_object_mut)
    {
        paths.insert(
            "/v1/openapi.json".to_owned(),
            serde_json::json!({"get": {
                "tags": ["health"],
                "operationId": "openapi",
                "summary": "This description (OpenAPI 3.1).",
                "security": [{}],
                "responses": {
                    "200": {
                        "description": "The API description",
                        "content": {"application/json": {"schema": {"type": "object"}}}
                    },
                    "default": error
                }
            }}),
        );
    }
}

/// A body that flattens another type (`DomainView` holds a `DomainSpec` and adds its own
/// fields) is described as `allOf` the two; the flattened type refuses unknown fields as a
/// request body (`additionalProperties: false`), which would refuse the other part's fields
/// in the answer. Schemas used inside an `allOf` leave additional properties open.
fn open_flattened(json: &mut serde_json::Value) {
    let mut flattened = std::collections::BTreeSet::new();
    collect_all_of_refs(json, &mut flattened);
    let Some(schemas) = json
        .pointer_mut("/components/schemas")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    for name in flattened {
        if let Some(schema) = schemas.get_mut(&name).and_then(|s| s.as_object_mut())
            && schema.get("additionalProperties") == Some(&serde_json::Value::Bool(false))
        {
            schema.remove("additionalProperties");
        }
    }
}

fn collect_all_of_refs(json: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
    match json {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Array(parts)) = map.get("allOf") {
                for part in parts {
                    if let Some(name) = part
                        .get("$ref")
                        .and_then(|r| r.as_str())
                        .and_then(|r| r.strip_prefix("#/components/schemas/"))
                    {
                        out.insert(name.to_owned());
                    }
                }
            }
            map.values().for_each(|v| collect_all_of_refs(v, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_all_of_refs(v, out)),
        _ => {}
    }
}

fn with_defaults(mut api: OpenApi) -> OpenApi {
    api.info.version = env!("CARGO_PKG_VERSION").to_owned();
    api.openapi = utoipa::openapi::OpenApiVersion::Version31;
    let error = ResponseBuilder::new()
        .description(
            "An error: `error.code` names it (docs/errors.md lists every code with its status).",
        )
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    ErrorBody::name(),
                ))))
                .build(),
        )
        .build();
    for item in api.paths.paths.values_mut() {
        for op in operations(item) {
            op.responses
                .responses
                .entry("default".to_owned())
                .or_insert_with(|| RefOr::T(error.clone()));
        }
    }
    api
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
        item.head.as_mut(),
        item.options.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// The description the router starts from (info, security schemes, shared schemas).
pub fn base() -> OpenApi {
    ApiDoc::openapi()
}
