//! Data-plane routes: records of a collection, for the tenant the credential implies (or the
//! tenant a platform admin names explicitly).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bulkhead_api::{AccessView, AggregatePage, BulkReport, Page};
use bulkhead_catalog::{BulkResults, Ctx, ListParams, UpdateKind};
use bulkhead_core::query::aggregate::AggregateRequest;
use bulkhead_core::record::Record;
use bulkhead_core::{CollectionName, RecordId, TenantId};
use serde::Deserialize;
use serde_json::Value;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{Auth, Json, NamedTenant, Writer};
use crate::openapi::records::{
    CollectionPath, IfMatchHeader, RecordInputSchema, RecordPath, RecordSchema, TenantHeader,
    WatchEventSchema,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read, replace, patch, remove))
        .routes(routes!(bulk))
        .routes(routes!(aggregate))
        .routes(routes!(access))
        .routes(routes!(export))
        .routes(routes!(watch))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct WatchQuery {
    /// Only changes to records this filter holds for (docs/query.md).
    filter: Option<String>,
}

#[utoipa::path(
    get, path = "/v1/collections/{collection}/records:watch", tag = "records",
    operation_id = "watch_records",
    summary = "Follow the collection's changes as server-sent events",
    description = "The caller's tenant's changes, each record as the caller may see it. A refusal is an ordinary error answer; once streaming, access that ends sends one `closed` event with the error body.",
    params(
        CollectionPath,
        WatchQuery,
        ("Last-Event-ID" = Option<String>, Header, nullable = false,
            description = "Resume after this event (an event id this feed sent)"),
        TenantHeader,
    ),
    responses((status = 200, description = "Server-sent events: `ready`, `created`, `updated`, `deleted`, `resync` and a final `closed` (docs/watch.md)", body = WatchEventSchema, content_type = "text/event-stream"))
)]
/// Server-sent events: the caller's tenant's changes on the collection, as the caller may
/// see them (`catalog::watch`). A refusal is a plain error response; once streaming, access
/// that ends sends one `closed` event with the error body.
async fn watch(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    NamedTenant(named): NamedTenant,
    Path(collection): Path<String>,
    headers: HeaderMap,
    query: Result<Query<WatchQuery>, QueryRejection>,
) -> ApiResult<Response> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use bulkhead_catalog::WatchEvent;

    let Query(query) = query.map_err(crate::routes::query_error)?;
    let collection = CollectionName::parse(&collection)?;
    let last = match headers.get("last-event-id") {
        None => None,
        Some(value) => Some(value.to_str().map_err(|_| {
            bulkhead_core::error::Error::bad_request(
                "invalid_last_event_id",
                "Last-Event-ID must be an event id this feed sent",
            )
        })?),
    };
    let watcher = state
        .catalog
        .watch_records(
            &ctx,
            named.as_ref(),
            &collection,
            query.filter.as_deref().unwrap_or_default(),
            last,
        )
        .await?;
    let request_id = ctx.request_id.clone();
    // A record's JSON text straight from the record, as the other routes write it.
    fn record_json(record: &bulkhead_core::record::Record) -> String {
        serde_json::to_string(record).unwrap_or_else(|_| record.to_json().to_string())
    }
    let events = futures_util::stream::unfold(watcher, move |mut watcher| {
        let request_id = request_id.clone();
        async move {
            let event = match watcher.next().await? {
                WatchEvent::Ready { position } => Event::default()
                    .event("ready")
                    .id(position)
                    .retry(std::time::Duration::from_secs(1))
                    .data("{}"),
                WatchEvent::Created { position, record } => Event::default()
                    .event("created")
                    .id(position)
                    .data(record_json(&record)),
                WatchEvent::Updated { position, record } => Event::default()
                    .event("updated")
                    .id(position)
                    .data(record_json(&record)),
                WatchEvent::Deleted { position, id } => Event::default()
                    .event("deleted")
                    .id(position)
                    .data(serde_json::json!({ "id": id }).to_string()),
                WatchEvent::Resync { position, reason } => Event::default()
                    .event("resync")
                    .id(position)
                    .data(serde_json::json!({ "reason": reason }).to_string()),
                WatchEvent::Closed { error } => Event::default().event("closed").data(
                    serde_json::json!({"error": {
                        "code": error.code, "message": error.message, "request_id": request_id,
                        "status": error.kind.status(),
                    }})
                    .to_string(),
                ),
            };
            Some((Ok::<_, std::convert::Infallible>(event), watcher))
        }
    });
    Ok(Sse::new(futures_util::StreamExt::fuse(events))
        .keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)))
        .into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    /// Only records this filter holds for (docs/query.md).
    filter: Option<String>,
}

fn ndjson(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    for record in records {
        // Serialising a record into memory cannot fail.
        let _ = serde_json::to_writer(&mut out, record);
        out.push(b'\n');
    }
    out
}

#[utoipa::path(
    get, path = "/v1/collections/{collection}/records:export", tag = "records",
    operation_id = "export_records",
    summary = "Every record the credential may export, as NDJSON",
    description = "In id order. A refusal is an ordinary error answer; an error after the first page ends the stream with one `{\"error\": {...}}` line.",
    params(CollectionPath, ExportQuery, TenantHeader),
    responses((status = 200, description = "NDJSON: one record (as `Record`) per line, in id order; an error after the first page ends it with one `{\"error\": {...}}` line", body = String, content_type = "application/x-ndjson"))
)]
/// NDJSON of every record the credential may export, in id order. The first page is read
/// before answering (so a refusal is a plain error response); later pages stream, each
/// authorized afresh. An error after the first page ends the stream with one
/// `{"error": {...}}` line.
async fn export(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    NamedTenant(named): NamedTenant,
    Path(collection): Path<String>,
    query: Result<Query<ExportQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(crate::routes::query_error)?;
    let collection = CollectionName::parse(&collection)?;
    let filter = query.filter.unwrap_or_default();
    let (first, next) = state
        .catalog
        .export_page(&ctx, named.as_ref(), &collection, &filter, None)
        .await?;
    let request_id = ctx.request_id.clone();
    let pages = futures_util::stream::unfold(
        (Some(ndjson(&first)), next, false),
        move |(ready, after, done)| {
            let (catalog, ctx, named, collection, filter, request_id) = (
                state.catalog.clone(),
                ctx.clone(),
                named.clone(),
                collection.clone(),
                filter.clone(),
                request_id.clone(),
            );
            async move {
                if let Some(chunk) = ready {
                    return Some((
                        Ok::<_, std::convert::Infallible>(chunk),
                        (None, after, done),
                    ));
                }
                let cursor = after.filter(|_| !done)?;
                match catalog
                    .export_page(&ctx, named.as_ref(), &collection, &filter, Some(cursor))
                    .await
                {
                    Ok((records, next)) => Some((Ok(ndjson(&records)), (None, next, false))),
                    Err(e) => {
                        // The status line went out with the first page: the line carries the
                        // status the same refusal would have had.
                        let line = serde_json::json!({"error": {
                            "code": e.code, "message": e.message, "request_id": request_id,
                            "status": e.kind.status(),
                        }});
                        Some((Ok(format!("{line}\n").into_bytes()), (None, None, true)))
                    }
                }
            }
        },
    );
    // Fused: a layer that polls the body again after its end (gzip does, at the end of an
    // empty export) gets the end again instead of a panic.
    let mut response =
        axum::body::Body::from_stream(futures_util::StreamExt::fuse(pages)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}

#[utoipa::path(
    get, path = "/v1/collections/{collection}/access", tag = "records",
    operation_id = "get_access",
    params(CollectionPath, TenantHeader),
    responses((status = 200, description = "What this credential may do on the collection", body = AccessView))
)]
/// What this credential may do on the collection.
async fn access(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    NamedTenant(named): NamedTenant,
    Path(collection): Path<String>,
) -> ApiResult<Response> {
    let collection = CollectionName::parse(&collection)?;
    let view = state
        .catalog
        .access_view(&ctx, named.as_ref(), &collection)
        .await?;
    Ok(axum::Json(view).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Only records this filter holds for (docs/query.md), e.g. `status = "open" && n > 3`.
    filter: Option<String>,
    /// Fields to order by, `-` for descending, e.g. `-created_at,title`.
    sort: Option<String>,
    /// Full-text search over the collection's `text` fields.
    q: Option<String>,
    /// Schema fields to return, comma-separated (system fields always come back).
    fields: Option<String>,
    /// Records per page (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct BulkQuery {
    /// Which lines the report lists: `all` (the default) or only the failed ones (`errors`).
    #[serde(default)]
    #[param(schema_with = bulk_results_schema)]
    results: BulkResults,
}

fn bulk_results_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::from(Type::String))
        .enum_values(Some(["all", "errors"]))
        .default(Some(Value::from("all")))
        .into()
}

fn with_etag(status: StatusCode, record: &Record) -> Response {
    let mut response = (status, axum::Json(record)).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", record.version)) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

fn if_match(headers: &HeaderMap) -> ApiResult<Option<i64>> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| {
        bulkhead_core::Error::bad_request("invalid_if_match", "If-Match is not text")
    })?;
    Ok(bulkhead_catalog::parse_if_match(text)?)
}

fn ids(collection: &str, id: &str) -> ApiResult<(CollectionName, RecordId)> {
    Ok((CollectionName::parse(collection)?, RecordId::parse(id)?))
}

#[utoipa::path(
    post, path = "/v1/collections/{collection}/records", tag = "records",
    operation_id = "create_record",
    params(CollectionPath, TenantHeader),
    request_body = RecordInputSchema,
    responses((status = 201, description = "Created", body = RecordSchema,
        headers(("ETag" = String, description = "The record's version, quoted"), ("Location" = String, description = "The record's URL path"))))
)]
async fn create(
    State(state): State<AppState>,
    Writer(ctx): Writer,
    NamedTenant(named): NamedTenant,
    Path(collection): Path<String>,
    Json(body): Json<Value>,
) -> ApiResult<Response> {
    let collection = CollectionName::parse(&collection)?;
    let record = state
        .catalog
        .create_record(&ctx, named.as_ref(), &collection, &body)
        .await?;
    let mut response = with_etag(StatusCode::CREATED, &record);
    if let Ok(location) = HeaderValue::from_str(&format!(
        "/v1/collections/{collection}/records/{}",
        record.id
    )) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

#[utoipa::path(
    get, path = "/v1/collections/{collection}/records/{id}", tag = "records",
    operation_id = "get_record",
    params(RecordPath, TenantHeader),
    responses((status = 200, description = "The record", body = RecordSchema, headers(("ETag" = String, description = "The record's version, quoted"))))
)]
async fn read(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    NamedTenant(named): NamedTenant,
    Path((collection, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (collection, id) = ids(&collection, &id)?;
    let record = state
        .catalog
        .get_record(&ctx, named.as_ref(), &collection, &id)
        .await?;
    Ok(with_etag(StatusCode::OK, &record))
}

async fn update(
    state: AppState,
    ctx: Ctx,
    named: Option<TenantId>,
    headers: HeaderMap,
    (collection, id): (String, String),
    kind: UpdateKind,
    body: Value,
) -> ApiResult<Response> {
    let (collection, id) = ids(&collection, &id)?;
    let expected = if_match(&headers)?;
    let record = state
        .catalog
        .update_record(
            &ctx,
            named.as_ref(),
            &collection,
            &id,
            kind,
            &body,
            expected,
        )
        .await?;
    Ok(with_etag(StatusCode::OK, &record))
}

#[utoipa::path(
    put, path = "/v1/collections/{collection}/records/{id}", tag = "records",
    operation_id = "replace_record",
    params(RecordPath, IfMatchHeader, TenantHeader),
    request_body(content = RecordInputSchema, description = "The record's new fields, all of them"),
    responses((status = 200, description = "Replaced", body = RecordSchema, headers(("ETag" = String, description = "The record's version, quoted"))))
)]
async fn replace(
    State(state): State<AppState>,
    Writer(ctx): Writer,
    NamedTenant(named): NamedTenant,
    headers: HeaderMap,
    Path(path): Path<(String, String)>,
    Json(body): Json<Value>,
) -> ApiResult<Response> {
    update(state, ctx, named, headers, path, UpdateKind::Replace, body).await
}

#[utoipa::path(
    patch, path = "/v1/collections/{collection}/records/{id}", tag = "records",
    operation_id = "patch_record",
    params(RecordPath, IfMatchHeader, TenantHeader),
    request_body(content = RecordInputSchema, description = "Fields to set; `null` removes an optional field (a top-level merge patch)"),
    responses((status = 200, description = "Patched", body = RecordSchema, headers(("ETag" = String, description = "The record's version, quoted"))))
)]
async fn patch(
    State(state): State<AppState>,
    Writer(ctx): Writer,
    NamedTenant(named): NamedTenant,
    headers: HeaderMap,
    Path(path): Path<(String, String)>,
    Json(body): Json<Value>,
) -> ApiResult<Response> {
    update(state, ctx, named, headers, path, UpdateKind::Patch, body).await
}

#[utoipa::path(
    delete, path = "/v1/collections/{collection}/records/{id}", tag = "records",
    operation_id = "delete_record",
    params(RecordPath, IfMatchHeader, TenantHeader),
    responses((status = 204, description = "Deleted"))
)]
async fn remove(
    State(state): State<AppState>,
    Writer(ctx): Writer,
    NamedTenant(named): NamedTenant,
    headers: HeaderMap,
    Path((collection, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (collection, id) = ids(&collection, &id)?;
    let expected = if_match(&headers)?;
    state
        .catalog
        .delete_record(&ctx, named.as_ref(), &collection, &id, expected)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get, path = "/v1/collections/{collection}/records", tag = "records",
    operation_id = "list_records",
    params(CollectionPath, ListQuery, TenantHeader),
    responses((status = 200, description = "A page of records", body = Page<RecordSchema>))
)]
async fn list(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    NamedTenant(named): NamedTenant,
    Path(collection): Path<String>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(crate::routes::query_error)?;
    let collection = CollectionName::parse(&collection)?;
    let params = ListParams {
        filter: query.filter,
        sort: query.sort,
        q: query.q,
        fields: query.fields,
        limit: query.limit,
        cursor: query.cursor,
    };
    let page = state
        .catalog
        .list_records(&ctx, named.as_ref(), &collection, params)
        .await?;
    // Records go to text straight from the rows (`impl Serialize for Record`).
    let body = Page {
        items: page.items.iter().map(|hit| &hit.record).collect::<Vec<_>>(),
        next_cursor: page.next_cursor,
    };
    Ok(axum::Json(body).into_response())
}

#[utoipa::path(
    post, path = "/v1/collections/{collection}/aggregate", tag = "records",
    operation_id = "aggregate_records",
    params(CollectionPath, TenantHeader),
    request_body = AggregateRequest,
    responses((status = 200, description = "A page of groups", body = AggregatePage))
)]
async fn aggregate(
    State(state): State<AppState>,
    Auth(ctx): Auth,
    NamedTenant(named): NamedTenant,
    Path(collection): Path<String>,
    Json(request): Json<AggregateRequest>,
) -> ApiResult<Response> {
    let collection = CollectionName::parse(&collection)?;
    let page = state
        .catalog
        .aggregate_records(&ctx, named.as_ref(), &collection, &request)
        .await?;
    Ok(axum::Json(page).into_response())
}

#[utoipa::path(
    post, path = "/v1/collections/{collection}/records:bulk", tag = "records",
    operation_id = "bulk_records",
    summary = "Create, upsert and delete records from an NDJSON body",
    description = "Each line is validated and applied on its own and reports its own result; the body may be at most the tenant's tier's bulk size.",
    params(CollectionPath, BulkQuery, TenantHeader),
    request_body(content = String, content_type = "application/x-ndjson",
        description = "NDJSON (also accepted as `application/ndjson`, `application/jsonl`, `application/json-lines`, `application/x-jsonlines`): each line a record to create, or `{\"op\": \"create\" | \"upsert\" | \"delete\", \"id\": ..., \"record\": {...}}`"),
    responses((status = 200, description = "What each line did (a failed line fails alone)", body = BulkReport))
)]
/// NDJSON bulk ingest. The caller and its tier are resolved before the body is read, and the
/// body is never read past the tier's size limit.
async fn bulk(
    State(state): State<AppState>,
    Writer(ctx): Writer,
    NamedTenant(named): NamedTenant,
    Path(collection): Path<String>,
    query: Result<Query<BulkQuery>, QueryRejection>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> ApiResult<Response> {
    let started = std::time::Instant::now();
    let Query(query) = query.map_err(crate::routes::query_error)?;
    let collection = CollectionName::parse(&collection)?;
    require_ndjson(&headers)?;
    let limit = state
        .catalog
        .bulk_limit(&ctx, named.as_ref(), &collection)
        .await?;
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let too_large = || {
        bulkhead_core::Error::new(
            bulkhead_core::ErrorKind::PayloadTooLarge,
            "payload_too_large",
            format!("a bulk body may be at most {limit} bytes on this tenant's tier; split it"),
        )
    };
    // A declared length over the limit is refused before anything is read or applied.
    if declared_length(&headers).is_some_and(|len| len > limit as u64) {
        return Err(too_large().into());
    }
    let Ok(_slot) = state.bulk_slots.clone().try_acquire_owned() else {
        return Err(bulkhead_core::Error::new(
            bulkhead_core::ErrorKind::Unavailable,
            "busy",
            "this server is applying as many bulk bodies as it takes at once; retry shortly",
        )
        .into());
    };
    let mut session = state
        .catalog
        .bulk_begin(&ctx, named.as_ref(), &collection, query.results)
        .await?;
    // Lines stop being read with a quarter of the request's time (at most 5 s) left, for the
    // last chunk and the report: a bulk cut off by the request timeout would answer 408 with
    // no word of the lines it applied.
    let timeout = state.config.request_timeout;
    let margin = (timeout / 4).min(std::time::Duration::from_secs(5));
    let deadline = (
        tokio::time::Instant::from_std(started) + timeout.saturating_sub(margin),
        timeout.as_secs(),
    );
    crate::bulk_body::feed(body, limit, state.config.body_limit, deadline, &mut session).await;
    Ok(axum::Json(session.finish().await).into_response())
}

/// A bulk body is NDJSON (JSON lines): other content types are refused before it is read.
fn require_ndjson(headers: &axum::http::HeaderMap) -> Result<(), bulkhead_core::Error> {
    const ACCEPTED: [&str; 5] = [
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/json-lines",
        "application/x-jsonlines",
    ];
    let given = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match given {
        Some(t) if ACCEPTED.contains(&t.as_str()) => Ok(()),
        other => Err(bulkhead_core::Error::new(
            bulkhead_core::ErrorKind::UnsupportedMediaType,
            "unsupported_media_type",
            format!(
                "a bulk body is NDJSON: send Content-Type: application/x-ndjson (got {})",
                other.as_deref().unwrap_or("none")
            ),
        )),
    }
}

/// The request's `Content-Length`, when it sent a sane one.
fn declared_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}
