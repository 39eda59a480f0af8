//! Domain rows.

use bulkhead_core::DomainName;
use bulkhead_core::model::DomainSpec;

use crate::store::{StoreResult, Tx, malformed, params};

pub(crate) fn read_domains(tx: &dyn Tx) -> StoreResult<Vec<(DomainName, DomainSpec)>> {
    let mut out = Vec::new();
    for row in tx.query("SELECT name, spec FROM domains ORDER BY name", &[])? {
        let (name, spec): (String, String) = (row.get(0)?, row.get(1)?);
        out.push((
            DomainName::parse(&name).map_err(|e| malformed(e.message))?,
            serde_json::from_str(&spec).map_err(malformed)?,
        ));
    }
    Ok(out)
}

pub(crate) fn read_domain(tx: &dyn Tx, name: &DomainName) -> StoreResult<Option<DomainSpec>> {
    let raw: Option<String> = tx
        .query_opt(
            "SELECT spec FROM domains WHERE name = ?1",
            params![name.as_str()],
        )?
        .map(|r| r.get(0))
        .transpose()?;
    raw.map(|r| serde_json::from_str(&r).map_err(malformed))
        .transpose()
}
