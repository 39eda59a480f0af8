//! Reading many records: list pages with filters, sorting, projection and full-text search;
//! and aggregations (bulk ingest is in `bulk`). Text from the caller is parsed and typed here (by
//! `bulkhead_core::query`), so an engine only ever sees checked queries.
//!
//! Cursors are keyset positions (the last row's sort values and id), bound to the tenant's
//! life and to the query that produced them: replaying one against another tenant, the same id
//! created again, or another query is a 400, never someone else's page.

use base64::Engine as _;
use bulkhead_api::{AggregatePage, Page};
use bulkhead_core::access::TenantScope;
use bulkhead_core::error::Error;
use bulkhead_core::keys::hash_secret;
use bulkhead_core::model::TierLimits;
use bulkhead_core::permissions::{self, Action};
use bulkhead_core::query::aggregate::{self, AggregateRequest};
use bulkhead_core::query::search::parse_search;
use bulkhead_core::query::sort::{parse_fields, parse_sort};
use bulkhead_core::query::{self, SortKey};
use bulkhead_core::record::{FieldValue, coerce};
use bulkhead_core::schema::FieldType;
use bulkhead_core::{CollectionName, RecordId, StorageKey, TenantId, TierName};
use bulkhead_engine::{AggregateQuery, Hit, Keyset, ListQuery, QueryBudget};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::rows::paging::page_limit;
use crate::{Catalog, Ctx};

pub const DEFAULT_GROUPS: u32 = 1000;
pub const MAX_GROUPS_PAGE: u32 = 10_000;

/// Query parameters of a record listing, as the caller wrote them.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub filter: Option<String>,
    pub sort: Option<String>,
    pub q: Option<String>,
    pub fields: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct CursorBody {
    /// The binding: the tenant's life, the collection and the query.
    b: String,
    /// Sort-key values (or group-key values).
    v: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
}

/// What a cursor is bound to: the tenant's life (its storage key: the same across moves, new
/// when the id is created again), the collection and the query.
fn binding(life: &StorageKey, collection: &CollectionName, query: &[&str]) -> String {
    let mut text = format!("{life}\u{0}{collection}");
    for part in query {
        text.push('\u{0}');
        text.push_str(part);
    }
    hash_secret(&text)[..24].to_owned()
}

fn encode_cursor(body: &CursorBody) -> Option<String> {
    let json = serde_json::to_vec(body).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json))
}

fn bad_cursor(why: &str) -> Error {
    Error::bad_request("invalid_cursor", format!("cursor {why}"))
}

fn decode_cursor(binding: &str, cursor: &str) -> Result<CursorBody, Error> {
    let foreign = || bad_cursor("is not one this server issued");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| foreign())?;
    let body: CursorBody = serde_json::from_slice(&bytes).map_err(|_| foreign())?;
    if body.b != binding {
        return Err(bad_cursor(
            "belongs to another tenant (or an earlier life of this one) or another query",
        ));
    }
    Ok(body)
}

/// Typed values of a cursor, one per key type.
fn cursor_values(values: &[Value], types: &[FieldType]) -> Result<Vec<Option<FieldValue>>, Error> {
    if values.len() != types.len() {
        return Err(bad_cursor("does not fit this query"));
    }
    values
        .iter()
        .zip(types)
        .map(|(v, t)| match v {
            Value::Null => Ok(None),
            v => coerce(*t, v)
                .map(Some)
                .map_err(|_| bad_cursor("does not fit this query")),
        })
        .collect()
}

fn value_json(value: &Option<FieldValue>) -> Value {
    value.as_ref().map_or(Value::Null, FieldValue::to_json)
}

impl Catalog {
    /// The limits and ceiling of a tier (cached until the tier changes).
    pub(crate) async fn tier_policy(&self, tier: &TierName) -> Result<crate::TierPolicy, Error> {
        if let Some(policy) = self.inner().tier_policy.get(tier) {
            return Ok(policy);
        }
        let name = tier.clone();
        let ticket = self.cache_ticket();
        let spec = self
            .blocking(move |store| store.read(|tx| crate::rows::tiers::read_tier(tx, &name)))
            .await?;
        let policy = spec
            .map(|s| crate::TierPolicy {
                limits: s.limits,
                ceiling: s.ceiling,
            })
            .unwrap_or_default();
        Ok(self
            .inner()
            .tier_policy
            .fill(ticket, tier.clone(), policy, |_, _| false))
    }

    pub(crate) async fn tier_limits(&self, tier: &TierName) -> Result<TierLimits, Error> {
        Ok(self.tier_policy(tier).await?.limits)
    }

    /// The query budget of the scope's tenant: its tier's limits over the server's defaults.
    pub(crate) async fn budget(&self, scope: &TenantScope) -> Result<QueryBudget, Error> {
        let limits = self.tier_limits(scope.tier()).await?;
        let default = &self.inner().options.query_budget;
        Ok(QueryBudget {
            time: limits
                .query_time_ms
                .map_or(default.time, std::time::Duration::from_millis),
            rows_examined: limits.query_rows_examined.unwrap_or(default.rows_examined),
            // Metering reads it back (`TenantHandle::metered`).
            examined: if self.metering() {
                bulkhead_engine::Examined::counting()
            } else {
                bulkhead_engine::Examined::default()
            },
        })
    }

    pub async fn list_records(
        &self,
        ctx: &Ctx,
        named: Option<&TenantId>,
        collection: &CollectionName,
        params: ListParams,
    ) -> Result<Page<Hit>, Error> {
        let tenant = self
            .open_read(ctx, named, "record.list", collection.as_str())
            .await?;
        let (permission, collection) = tenant.allow(collection, Action::Read)?;
        // The caller's filter, sort and projection see only the fields they may see.
        let view = permission.view(&collection);
        let limit = page_limit(params.limit)?;
        let text = |s: &Option<String>| s.as_deref().unwrap_or("").trim().to_owned();
        let (filter_text, sort_text, q_text) =
            (text(&params.filter), text(&params.sort), text(&params.q));
        let filter = permissions::and(
            query::filter(&filter_text, &view)?,
            permission.rule(&collection)?,
        );
        let sort: Vec<SortKey> = if sort_text.is_empty() {
            Vec::new()
        } else {
            parse_sort(&sort_text, &view)?
        };
        let search = if q_text.is_empty() {
            None
        } else {
            if !collection.searchable() {
                return Err(Error::bad_request(
                    "invalid_search",
                    format!(
                        "collection '{}' has no text fields to search",
                        collection.name
                    ),
                ));
            }
            let hidden_text = permission.hidden().iter().any(|f| {
                collection
                    .fields
                    .get(f)
                    .is_some_and(|spec| spec.field_type == FieldType::Text)
            });
            if hidden_text {
                return Err(Error::bad_request(
                    "invalid_search",
                    format!(
                        "full-text search on '{}' is not available to this credential: it \
                         would reach text fields hidden from it",
                        collection.name
                    ),
                ));
            }
            Some(parse_search(&q_text)?)
        };
        let fields = match params.fields.as_deref() {
            Some(f) => Some(parse_fields(f, &view)?),
            // Hidden fields are not even read.
            None if !permission.hidden().is_empty() => Some(view.fields.keys().cloned().collect()),
            None => None,
        };
        let bound = binding(
            tenant.scope().storage_key(),
            &collection.name,
            &["list", &filter_text, &sort_text, &q_text],
        );
        let after = match params.cursor.as_deref() {
            None => None,
            Some(cursor) => {
                let body = decode_cursor(&bound, cursor)?;
                let types: Vec<FieldType> = sort.iter().map(|k| k.column.field_type()).collect();
                let values = cursor_values(&body.v, &types)?;
                let ranked = sort.is_empty() && search.is_some();
                if ranked != body.s.is_some() {
                    return Err(bad_cursor("does not fit this query"));
                }
                let id = body
                    .id
                    .as_deref()
                    .and_then(|id| RecordId::parse(id).ok())
                    .ok_or_else(|| bad_cursor("does not fit this query"))?;
                Some(Keyset {
                    values,
                    score: body.s,
                    id,
                })
            }
        };
        let query = ListQuery {
            filter,
            search,
            sort,
            after,
            limit: limit + 1,
            fields,
            budget: tenant.budget().await?,
        };
        let mut items = tenant
            .metered(
                &query.budget,
                tenant.engine().list(tenant.scope(), &collection, &query),
            )
            .await?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        for hit in &mut items {
            permission.redact(&mut hit.record);
        }
        let next_cursor = match (more, items.last()) {
            (true, Some(last)) => encode_cursor(&CursorBody {
                b: bound,
                v: last.sort_values.iter().map(value_json).collect(),
                s: if query.sort.is_empty() {
                    last.score
                } else {
                    None
                },
                id: Some(last.record.id.as_str().to_owned()),
            }),
            _ => None,
        };
        Ok(Page { items, next_cursor })
    }

    pub async fn aggregate_records(
        &self,
        ctx: &Ctx,
        named: Option<&TenantId>,
        collection: &CollectionName,
        request: &AggregateRequest,
    ) -> Result<AggregatePage, Error> {
        let tenant = self
            .open_read(ctx, named, "record.aggregate", collection.as_str())
            .await?;
        let (permission, collection) = tenant.allow(collection, Action::Aggregate)?;
        // Groups, metrics and the filter see only visible fields (no oracle through a
        // terms aggregation on a hidden field); the record rule narrows the rows.
        let view = permission.view(&collection);
        let filter_text = request.filter.as_deref().unwrap_or("").trim().to_owned();
        let filter = query::filter(&filter_text, &view)?;
        let mut plan = aggregate::check(request, filter, &view)?;
        plan.filter = permissions::and(plan.filter.take(), permission.rule(&collection)?);
        let limit = match request.limit {
            None => DEFAULT_GROUPS,
            Some(n) if (1..=MAX_GROUPS_PAGE).contains(&n) => n,
            Some(_) => {
                return Err(Error::bad_request(
                    "invalid_limit",
                    format!("limit must be 1 to {MAX_GROUPS_PAGE}"),
                ));
            }
        };
        let shape = serde_json::to_string(&AggregateRequest {
            limit: None,
            cursor: None,
            ..request.clone()
        })
        .unwrap_or_default();
        let bound = binding(
            tenant.scope().storage_key(),
            &collection.name,
            &["aggregate", &shape],
        );
        let after = match request.cursor.as_deref() {
            None => None,
            Some(cursor) => {
                let body = decode_cursor(&bound, cursor)?;
                let types: Vec<FieldType> = plan.groups.iter().map(|g| g.value_type()).collect();
                Some(cursor_values(&body.v, &types)?)
            }
        };
        if after.is_some() && plan.groups.is_empty() {
            return Err(bad_cursor("does not fit this query"));
        }
        let query = AggregateQuery {
            plan,
            after,
            limit: limit + 1,
            budget: tenant.budget().await?,
        };
        let mut rows = tenant
            .metered(
                &query.budget,
                tenant
                    .engine()
                    .aggregate(tenant.scope(), &collection, &query),
            )
            .await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = match (more, rows.last()) {
            (true, Some(last)) => encode_cursor(&CursorBody {
                b: bound,
                v: last.key.iter().map(value_json).collect(),
                s: None,
                id: None,
            }),
            _ => None,
        };
        let groups = rows
            .iter()
            .map(|row| {
                let mut out = Map::new();
                for (key, value) in query.plan.groups.iter().zip(&row.key) {
                    out.insert(key.name().to_owned(), value_json(value));
                }
                for (metric, value) in query.plan.metrics.iter().zip(&row.metrics) {
                    out.insert(metric.name.clone(), value_json(value));
                }
                out
            })
            .collect();
        Ok(AggregatePage {
            groups,
            next_cursor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_bound_to_the_tenants_life_collection_and_query() {
        let acme = TenantId::parse("acme").unwrap();
        let life = |id: &TenantId| StorageKey::of(id, &bulkhead_core::Incarnation::generate());
        let (a, b) = (life(&acme), life(&TenantId::parse("globex").unwrap()));
        let items = CollectionName::parse("items").unwrap();
        let bound = binding(&a, &items, &["list", "n = 1", "", ""]);
        let cursor = encode_cursor(&CursorBody {
            b: bound.clone(),
            v: vec![],
            s: None,
            id: Some("r9".into()),
        })
        .unwrap();
        assert_eq!(
            decode_cursor(&bound, &cursor).unwrap().id.as_deref(),
            Some("r9")
        );
        let other_tenant = binding(&b, &items, &["list", "n = 1", "", ""]);
        assert!(
            decode_cursor(&other_tenant, &cursor)
                .unwrap_err()
                .message
                .contains("another tenant")
        );
        // The same id created again: its cursors are its own.
        let again = binding(&life(&acme), &items, &["list", "n = 1", "", ""]);
        assert!(decode_cursor(&again, &cursor).is_err());
        let other_query = binding(&a, &items, &["list", "n = 2", "", ""]);
        assert!(decode_cursor(&other_query, &cursor).is_err());
        assert!(decode_cursor(&bound, "garbage!").is_err());
    }
}
