//! The statement that reads one record by id, built once per table and field list.

use std::num::NonZeroUsize;
use std::sync::{Arc, LazyLock};

use bulkhead_core::FieldName;
use lru::LruCache;
use parking_lot::Mutex;

use super::{RecordSql, select_list};

/// A kept [`RecordSql::get_text`].
struct GetText {
    pooled: bool,
    fields: Vec<FieldName>,
    text: Arc<str>,
}

impl RecordSql<'_> {
    /// The statement reading one record by id: `?1` the tenant's key in a pooled table (then
    /// `?2` the id), else `?1` the id. Its text depends only on the table and its fields, so
    /// it is built once per table and field list and shared (issue 24: building it cost a
    /// get by id eight allocations).
    pub fn get_text(&self) -> Arc<str> {
        static TEXTS: LazyLock<Mutex<LruCache<String, GetText>>> = LazyLock::new(|| {
            Mutex::new(LruCache::new(
                NonZeroUsize::new(4096).unwrap_or(NonZeroUsize::MIN),
            ))
        });
        let fields = self.collection.fields.keys();
        if let Some(kept) = TEXTS.lock().get(self.table.raw.as_str())
            && kept.pooled == self.table.pooled
            && kept.fields.iter().eq(fields.clone())
        {
            return Arc::clone(&kept.text);
        }
        let pred = if self.table.pooled {
            "tenant_id = ?1 AND id = ?2"
        } else {
            "id = ?1"
        };
        let text: Arc<str> = format!(
            "SELECT {} FROM {} WHERE {pred}",
            select_list(self.collection),
            self.table.quoted()
        )
        .into();
        TEXTS.lock().put(
            self.table.raw.clone(),
            GetText {
                pooled: self.table.pooled,
                fields: fields.cloned().collect(),
                text: Arc::clone(&text),
            },
        );
        text
    }

    /// The tenant's key, bound as `?1` in a pooled table's statements.
    pub fn pooled_tenant(&self) -> Option<&str> {
        self.table.pooled.then_some(self.tenant)
    }
}

#[cfg(test)]
mod tests {
    use bulkhead_core::model::Isolation;
    use bulkhead_core::schema::{CollectionSpec, plan_change};
    use bulkhead_core::{CollectionName, FieldName, StorageKey, TenantId};
    use bulkhead_engine::conformance;

    use crate::layout::TableName;
    use crate::sql::RecordSql;

    /// The kept text answers only for the table, model and field list it was built for: a
    /// field added to the collection, or the same table name in another model, gets its own.
    #[test]
    fn a_kept_get_text_is_used_only_for_the_same_table_model_and_fields() {
        let key = StorageKey::of(&TenantId::parse("acme").unwrap(), &Default::default());
        // A collection name of this test's own: the kept texts are shared by the process.
        let name = CollectionName::parse("get_text_probe").unwrap();
        let items = conformance::items_collection();
        let mut spec = CollectionSpec {
            fields: items.fields.clone(),
        };
        let before = plan_change(&name, None, &spec).unwrap().collection;
        spec.fields.insert(
            FieldName::parse("color").unwrap(),
            serde_json::from_value(serde_json::json!({"type": "string"})).unwrap(),
        );
        let after = plan_change(&before.name, Some(&before), &spec)
            .unwrap()
            .collection;
        let pool = TableName::new(Isolation::Pool, &key, &before.name);
        let silo = TableName::new(Isolation::Silo, &key, &before.name);
        let text = |table: &TableName, c| RecordSql::new(table, key.as_str(), c).get_text();

        let first = text(&pool, &before);
        assert!(first.contains("tenant_id = ?1 AND id = ?2"), "{first}");
        assert!(!first.contains("color"));
        assert!(std::sync::Arc::ptr_eq(&first, &text(&pool, &before)));
        let added = text(&pool, &after);
        assert!(
            added.contains("\"f_color\"") || added.contains("color"),
            "{added}"
        );
        assert_eq!(
            added.replace(", \"f_color\"", "").replace(", f_color", ""),
            *first
        );
        if silo.raw == pool.raw {
            let alone = text(&silo, &before);
            assert!(!alone.contains("tenant_id"), "{alone}");
            assert!(alone.ends_with("WHERE id = ?1"), "{alone}");
        }
    }
}
