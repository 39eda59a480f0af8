//! Tier rows.

use bulkhead_core::TierName;
use bulkhead_core::model::TierSpec;

use crate::store::{StoreError, StoreResult, Tx, malformed, params};

pub(crate) fn read_tier(tx: &dyn Tx, name: &TierName) -> StoreResult<Option<TierSpec>> {
    let raw: Option<String> = tx
        .query_opt(
            "SELECT spec FROM tiers WHERE name = ?1",
            params![name.as_str()],
        )?
        .map(|r| r.get(0))
        .transpose()?;
    raw.map(|r| tier_spec_from(&r)).transpose()
}

pub(crate) fn tier_spec_from(raw: &str) -> Result<TierSpec, StoreError> {
    serde_json::from_str(raw).map_err(malformed)
}

pub(crate) fn tier_name(raw: &str) -> Result<TierName, StoreError> {
    TierName::parse(raw).map_err(|e| malformed(e.message))
}
