//! `bulkhead-bench planner`: how long a placement plan takes over many tenants. `--tenants`
//! pooled tenants on a tier that promotes past 4× the pool's mean; every tenth one makes a
//! few requests, one makes many; then `GET /v1/placement/plan` is timed (three times).

use std::time::Instant;

use bulkhead_api::{CreateTenant, PlanQuery};
use bulkhead_client::Client;
use bulkhead_core::model::{Isolation, PlacementPolicy, TierSpec};
use bulkhead_core::{CollectionName, TenantId, TierName};
use futures_util::StreamExt;

use crate::bar;
use crate::pocketbase::in_process::{ADMIN_KEY, InProcess};

#[derive(Debug, clap::Args)]
pub struct PlannerArgs {
    #[arg(long, default_value_t = 10_000)]
    tenants: usize,
}

pub async fn run(args: PlannerArgs) -> anyhow::Result<()> {
    let server = InProcess::start_with(bulkhead::config::ServeArgs {
        audit_watch_secs: Some(0),
        storage_sample_minutes: Some(0),
        retention_minutes: Some(0),
        ..Default::default()
    })
    .await?;
    let admin = Client::new(&server.url, ADMIN_KEY)?;
    let items = CollectionName::parse("items")?;
    admin
        .put_collection(
            &items,
            &serde_json::from_value(serde_json::json!({"fields": {"title": {"type": "string"}}}))?,
        )
        .await?;
    let tier = TierName::parse("grow")?;
    admin
        .put_tier(
            &tier,
            &TierSpec {
                placement: PlacementPolicy {
                    promote_to: Some(Isolation::Silo),
                    promote_factor: None,
                    demote_to: None,
                },
                ..TierSpec::new(Isolation::Pool)
            },
        )
        .await?;
    let creating = bar(args.tenants, "tenants");
    let mut created = futures_util::stream::iter(0..args.tenants)
        .map(|i| {
            let (admin, tier) = (admin.clone(), tier.clone());
            async move {
                let id = TenantId::parse(&format!("t{i:05}"))?;
                admin
                    .create_tenant(&CreateTenant {
                        id: id.clone(),
                        name: id.to_string(),
                        tier,
                        labels: Default::default(),
                    })
                    .await?;
                anyhow::Ok(i)
            }
        })
        .buffer_unordered(8);
    while let Some(result) = created.next().await {
        result?;
        creating.inc(1);
    }
    creating.finish_and_clear();
    // Every tenth tenant writes 3 records; tenant 0 writes 300.
    for i in (0..args.tenants).step_by(10) {
        let id = format!("t{i:05}");
        let key = admin
            .create_key(
                &TenantId::parse(&id)?,
                &bulkhead_api::CreateKey {
                    name: "bench".into(),
                    role: bulkhead_core::access::TenantRole::Member,
                    expires_in: None,
                },
            )
            .await?
            .key;
        let client = Client::new(&server.url, &key)?;
        let writes = if i == 0 { 300 } else { 3 };
        let body: Vec<u8> = (0..writes)
            .flat_map(|n| format!("{{\"title\":\"{n}\"}}\n").into_bytes())
            .collect();
        client.bulk(&items, body, true).await?;
    }
    println!("## planner ({} tenants)", args.tenants);
    for round in 1..=3 {
        let started = Instant::now();
        let plan = admin.placement_plan(&PlanQuery::default()).await?;
        println!(
            "plan {round}: {:.2} s, {} moves proposed",
            started.elapsed().as_secs_f64(),
            plan.moves.len()
        );
    }
    server.stop().await?;
    Ok(())
}
