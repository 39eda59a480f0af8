//! What tenants' data occupies, for metering (`Engine::measure`): a silo is its database
//! (`pg_database_size`); a bridge tenant the tables of its schema with their indexes and
//! TOAST (`pg_total_relation_size`); a pool tenant its share of each pooled table's total
//! size, in proportion to the bytes of its rows (`pg_column_size` of the row), read in one
//! pass per table when the owner role may read past row-level security. Without that, each
//! pool tenant's rows are read under its own tenant setting, and the table's rows are taken
//! to weigh what its heap does (`pg_relation_size`).

use std::collections::{BTreeMap, HashMap};

use bulkhead_core::model::Isolation;
use bulkhead_core::schema::Collection;
use bulkhead_engine::{Measured, PlacementRef, pool_share};
use tokio_postgres::Client;

use crate::PgError;
use crate::ddl::TENANT_SETTING;
use crate::engine::PgEngine;
use crate::names::{self, Table};

fn n(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

async fn exists(owner: &Client, table: &Table) -> Result<bool, PgError> {
    Ok(owner
        .query_one(
            "SELECT to_regclass($1::text) IS NOT NULL",
            &[&table.quoted()],
        )
        .await?
        .get(0))
}

async fn count(owner: &Client, table: &Table) -> Result<u64, PgError> {
    let row = owner
        .query_one(&format!("SELECT count(*) FROM {}", table.quoted()), &[])
        .await?;
    Ok(n(row.get(0)))
}

impl PgEngine {
    pub(crate) async fn measure_placements(
        &self,
        placements: &[PlacementRef],
        collections: &[Collection],
    ) -> Result<Vec<Measured>, PgError> {
        let mut out = Vec::new();
        let mut pool = Vec::new();
        let mut domain = None;
        for p in placements {
            match p.isolation {
                Isolation::Silo => out.extend(self.measure_silo(p, collections).await?),
                Isolation::Bridge => {
                    let owner = match &mut domain {
                        Some(owner) => owner,
                        None => domain.insert(self.pools.owner(None).await?),
                    };
                    out.extend(measure_bridge(owner, p, collections).await?);
                }
                Isolation::Pool => pool.push(p),
            }
        }
        if !pool.is_empty() {
            let owner = match &mut domain {
                Some(owner) => owner,
                None => domain.insert(self.pools.owner(None).await?),
            };
            out.extend(measure_pool(owner, &pool, collections).await?);
        }
        Ok(out)
    }

    async fn measure_silo(
        &self,
        p: &PlacementRef,
        collections: &[Collection],
    ) -> Result<Option<Measured>, PgError> {
        let database = names::silo_database(&p.key);
        let owner = self.pools.owner(None).await?;
        let present: bool = owner
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
                &[&database],
            )
            .await?
            .get(0);
        if !present {
            return Ok(None);
        }
        let bytes: i64 = owner
            .query_one("SELECT pg_database_size($1::text::name)", &[&database])
            .await?
            .get(0);
        drop(owner);
        let owner = self.pools.owner(Some(&database)).await?;
        let mut records = BTreeMap::new();
        for c in collections {
            let table = Table::new(Isolation::Silo, &p.key, &c.name);
            if exists(&owner, &table).await? {
                records.insert(c.name.clone(), count(&owner, &table).await?);
            }
        }
        Ok(Some(Measured {
            key: p.key.clone(),
            records,
            bytes: n(bytes),
        }))
    }
}

async fn measure_bridge(
    owner: &Client,
    p: &PlacementRef,
    collections: &[Collection],
) -> Result<Option<Measured>, PgError> {
    let schema = names::bridge_schema(&p.key);
    let bytes: Option<i64> = owner
        .query_one(
            "SELECT CAST(sum(pg_total_relation_size(c.oid)) AS bigint) FROM pg_class c \
                 JOIN pg_namespace s ON s.oid = c.relnamespace \
                 WHERE s.nspname = $1 AND c.relkind IN ('r', 'm')",
            &[&schema],
        )
        .await?
        .get(0);
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    let mut records = BTreeMap::new();
    for c in collections {
        let table = Table::new(Isolation::Bridge, &p.key, &c.name);
        if exists(owner, &table).await? {
            records.insert(c.name.clone(), count(owner, &table).await?);
        }
    }
    Ok(Some(Measured {
        key: p.key.clone(),
        records,
        bytes: n(bytes),
    }))
}

async fn measure_pool(
    owner: &mut Client,
    members: &[&PlacementRef],
    collections: &[Collection],
) -> Result<Vec<Measured>, PgError> {
    let sees_all = crate::inventory::owner_sees_all(owner).await?;
    let mut found: BTreeMap<String, Measured> = members
        .iter()
        .map(|p| {
            (
                p.key.as_str().to_owned(),
                Measured {
                    key: p.key.clone(),
                    records: BTreeMap::new(),
                    bytes: 0,
                },
            )
        })
        .collect();
    for c in collections {
        let Some(first) = members.first() else {
            break;
        };
        let table = Table::new(Isolation::Pool, &first.key, &c.name);
        if !exists(owner, &table).await? {
            continue;
        }
        let sizes = owner
            .query_one(
                "SELECT pg_total_relation_size($1::text::regclass), pg_relation_size($1::text::regclass)",
                &[&table.quoted()],
            )
            .await?;
        let (total, heap) = (n(sizes.get(0)), n(sizes.get(1)));
        let indexes: i64 = owner
            .query_one(
                "SELECT count(*) FROM pg_index WHERE indrelid = $1::text::regclass",
                &[&table.quoted()],
            )
            .await?
            .get(0);
        // A row's bytes: its tuple, its line pointer, and an entry in each index (entry
        // header and pointer, with the tenant and id as key).
        let row_bytes = format!(
            "pg_column_size(r.*) + 4 + {indexes} * (12 + octet_length(r.tenant_id) + octet_length(r.id))"
        );
        let mut rows: HashMap<String, (u64, u64)> = HashMap::new();
        let all = if sees_all {
            let sql = format!(
                "SELECT tenant_id, count(*), CAST(sum({row_bytes}) AS bigint) \
                     FROM {} r GROUP BY tenant_id",
                table.quoted()
            );
            let mut all = 0;
            for row in owner.query(&sql, &[]).await? {
                let bytes = n(row.get::<_, Option<i64>>(2).unwrap_or(0));
                all += bytes;
                rows.insert(row.get(0), (n(row.get(1)), bytes));
            }
            all
        } else {
            let sql = format!(
                "SELECT count(*), CAST(coalesce(sum({row_bytes}), 0) AS bigint) FROM {} r",
                table.quoted()
            );
            for p in members {
                let tx = owner.transaction().await?;
                tx.query_one(
                    &format!("SELECT set_config('{TENANT_SETTING}', $1, true)"),
                    &[&p.key.as_str()],
                )
                .await?;
                let row = tx.query_one(&sql, &[]).await?;
                tx.commit().await?;
                rows.insert(p.key.as_str().to_owned(), (n(row.get(0)), n(row.get(1))));
            }
            heap
        };
        for (key, m) in found.iter_mut() {
            if let Some((records, bytes)) = rows.get(key)
                && *records > 0
            {
                m.records.insert(c.name.clone(), *records);
                m.bytes += pool_share(total, *bytes, all.max(*bytes));
            }
        }
    }
    Ok(found.into_values().collect())
}
