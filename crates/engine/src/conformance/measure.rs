//! `Engine::measure`: records per collection and bytes per placement, in every model.

use bulkhead_core::access::DataAction;
use serde_json::json;

use super::{MODELS, items_collection, new_record, provision, scope, target, tenant};
use crate::Engine;

/// `len` characters that do not compress (PostgreSQL compresses long values).
fn noise(seed: usize, len: usize) -> String {
    let mut x = seed as u64 * 2_654_435_761 + 1;
    (0..len.div_ceil(16))
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            format!("{x:016x}")
        })
        .collect::<String>()[..len]
        .to_owned()
}

/// A heavy tenant (600 records of ~2 KB) and a light one (60 of ~100 B) in each model: each
/// is counted exactly, occupies bytes, and the heavy one several times the light one's —
/// also where they share the pool's tables. Storage never made is left out (silo, bridge).
pub async fn measure_counts_records_and_bytes_per_model(engine: &dyn Engine) {
    let c = items_collection();
    for isolation in MODELS {
        let heavy = provision(engine, "heavy", isolation, &c).await;
        let light = provision(engine, "light", isolation, &c).await;
        for (t, n, size) in [(&heavy, 600, 2_000), (&light, 60, 100)] {
            let w = scope(t, isolation, DataAction::Write);
            let records = (0..n)
                .map(|i| new_record(&c, json!({"title": noise(i, size)})))
                .collect();
            engine.insert(&w, &c, records).await.expect("insert");
        }
        let never = tenant(&format!("never-{isolation}"));
        let placements = [
            target(&heavy, isolation),
            target(&light, isolation),
            target(&never, isolation),
        ];
        let measured = engine
            .measure(&placements, std::slice::from_ref(&c))
            .await
            .expect("measure");
        let of = |i: usize| {
            measured
                .iter()
                .find(|m| m.key == placements[i].key)
                .unwrap_or_else(|| panic!("{isolation}: {} not measured", placements[i].key))
        };
        // Paced, the same answer (engines that pace rest between units; others ignore it).
        let mut paced = engine
            .measure_paced(
                &placements,
                std::slice::from_ref(&c),
                std::sync::Arc::new(crate::NoRest),
            )
            .await
            .expect("measure paced");
        let mut plain = measured.clone();
        paced.sort_by(|a, b| a.key.cmp(&b.key));
        plain.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(
            paced, plain,
            "{isolation}: paced and unpaced measures differ"
        );
        let (h, l) = (of(0), of(1));
        assert_eq!(h.records.get(&c.name), Some(&600), "{isolation}: {h:?}");
        assert_eq!(l.records.get(&c.name), Some(&60), "{isolation}: {l:?}");
        assert!(
            h.bytes >= 600 * 2_000,
            "{isolation}: the heavy tenant's {} bytes hold less than its data",
            h.bytes
        );
        // A silo's bytes include its empty database (several MB on PostgreSQL): the heavy
        // one is larger by about the data it has more of.
        assert!(
            h.bytes >= l.bytes + (600 * 2_000 - 60 * 100) / 2,
            "{isolation}: heavy {} bytes, light {}",
            h.bytes,
            l.bytes
        );
        if isolation != bulkhead_core::model::Isolation::Silo {
            assert!(
                h.bytes > 5 * l.bytes.max(1),
                "{isolation}: heavy {} bytes, light {}",
                h.bytes,
                l.bytes
            );
        }
        if let Some(n) = measured.iter().find(|m| m.key == placements[2].key) {
            assert!(
                n.records.values().all(|r| *r == 0) && n.bytes == 0,
                "{isolation}: {n:?}"
            );
        }
    }
}
