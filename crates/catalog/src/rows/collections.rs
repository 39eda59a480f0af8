//! Collection rows and the schema generation.

use bulkhead_core::schema::Collection;

use crate::store::{StoreResult, Tx, malformed};

pub(crate) fn generation(tx: &dyn Tx) -> StoreResult<i64> {
    Ok(crate::store::get_meta(tx, "schema_generation")?
        .and_then(|g| g.parse().ok())
        .unwrap_or(0))
}

pub(crate) fn read_collections(tx: &dyn Tx) -> StoreResult<Vec<Collection>> {
    tx.query("SELECT spec FROM collections ORDER BY name", &[])?
        .iter()
        .map(|r| serde_json::from_str(&r.get::<String>(0)?).map_err(malformed))
        .collect()
}
