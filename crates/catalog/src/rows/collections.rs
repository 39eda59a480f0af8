//! Collection rows and the schema generation.

use bulkhead_core::schema::Collection;

use crate::store::{StoreResult, Tx, malformed};

pub(crate) fn generation(tx: &dyn Tx) -> StoreResult<i64> {
    Ok(crate::store::get_meta(tx, "schema_generation")?
        .and_then(|g| g.parse().ok())
        .unwrap_or(0))
}

/// Every version of every collection's definition, with the generation that made it, in
/// order of name and version.
pub(crate) fn read_history(tx: &dyn Tx) -> StoreResult<Vec<(i64, Collection)>> {
    tx.query(
        "SELECT generation, spec FROM collection_versions ORDER BY name, version",
        &[],
    )?
    .iter()
    .map(|r| {
        Ok((
            r.get::<i64>(0)?,
            serde_json::from_str(&r.get::<String>(1)?).map_err(malformed)?,
        ))
    })
    .collect()
}

/// Records a new version of a definition, made by `generation`.
pub(crate) fn insert_version(
    tx: &dyn Tx,
    collection: &Collection,
    generation: i64,
) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO collection_versions (name, version, generation, spec) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (name, version) DO NOTHING",
        crate::store::params![
            collection.name.as_str(),
            collection.version,
            generation,
            serde_json::to_string(collection).map_err(malformed)?
        ],
    )?;
    Ok(())
}

pub(crate) fn read_collections(tx: &dyn Tx) -> StoreResult<Vec<Collection>> {
    tx.query("SELECT spec FROM collections ORDER BY name", &[])?
        .iter()
        .map(|r| serde_json::from_str(&r.get::<String>(0)?).map_err(malformed))
        .collect()
}
