//! Setting a run up: the collection, the tenants with their keys and JWT users, and the
//! domains and tiers for PostgreSQL and for a full disk.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bulkhead_api::{CreateKey, CreateTenant};
use bulkhead_client::Client;
use bulkhead_core::roles::TenantRole;
use bulkhead_core::schema::CollectionSpec;
use bulkhead_core::{TenantId, TierName};

use crate::SimulateArgs;
use crate::workload::{self, TenantState};

/// The simulator's collection; with `extra`, the fields rollouts `0..extra` added too.
pub(crate) fn collection_spec(extra: Option<u32>) -> anyhow::Result<CollectionSpec> {
    let mut fields = serde_json::json!({
        "owner": {"type": "string", "required": true},
        "life": {"type": "integer", "required": true},
        "n": {"type": "integer", "required": true, "index": true},
        "w": {"type": "integer"},
        "title": {"type": "text"}
    });
    if let Some(extra) = extra {
        for k in 0..=extra {
            fields[format!("extra_{k}")] = serde_json::json!({"type": "string"});
        }
    }
    Ok(serde_json::from_value(
        serde_json::json!({ "fields": fields }),
    )?)
}

/// The SQLite domain `full` (on the small disk) and the pool tier `sim-full` placing there.
pub(crate) async fn put_full_tier(admin: &Client) -> anyhow::Result<()> {
    use bulkhead_core::model::{DomainSpec, Isolation, TierSpec};
    let domain =
        bulkhead_core::DomainName::parse("full").map_err(|e| anyhow::anyhow!(e.message))?;
    admin
        .put_domain(&domain, &DomainSpec::sqlite())
        .await
        .context("registering the domain full")?;
    let tier = TierSpec {
        domains: vec![domain],
        ..TierSpec::new(Isolation::Pool)
    };
    let name = TierName::parse("sim-full").map_err(|e| anyhow::anyhow!(e.message))?;
    admin
        .put_tier(&name, &tier)
        .await
        .context("the tier sim-full")?;
    Ok(())
}

/// The domain `pg` on the PostgreSQL server at `url` (silos allowed; with `pooler`, its data
/// connections go through that transaction-mode pooler), and a tier per model placing
/// tenants there.
pub(crate) async fn put_pg_tiers(
    admin: &Client,
    url: &str,
    pooler: Option<&str>,
) -> anyhow::Result<()> {
    use bulkhead_core::model::{DomainSpec, Isolation, TierSpec};
    let domain = bulkhead_core::DomainName::parse("pg").map_err(|e| anyhow::anyhow!(e.message))?;
    let spec = DomainSpec {
        engine: "postgres".into(),
        url: Some(bulkhead_core::ConnectionUrl::new(url)),
        data_url: pooler.map(bulkhead_core::ConnectionUrl::new),
        transaction_pooler: pooler.is_some(),
        silos: true,
        ..DomainSpec::sqlite()
    };
    admin
        .put_domain(&domain, &spec)
        .await
        .context("registering the domain pg")?;
    for (name, isolation) in [
        ("sim-pool", Isolation::Pool),
        ("sim-bridge", Isolation::Bridge),
        ("sim-silo", Isolation::Silo),
    ] {
        let tier = TierSpec {
            domains: vec![domain.clone()],
            ..TierSpec::new(isolation)
        };
        let name = TierName::parse(name).map_err(|e| anyhow::anyhow!(e.message))?;
        admin
            .put_tier(&name, &tier)
            .await
            .with_context(|| format!("the tier {}", name.as_str()))?;
    }
    Ok(())
}

/// The collection and the tenants (`sim-<run>-<n>`), each with a key.
pub(crate) async fn set_up(
    admin: &Client,
    args: &SimulateArgs,
    run_id: &str,
    users: bool,
) -> anyhow::Result<Vec<Arc<TenantState>>> {
    let spec = collection_spec(None)?;
    admin
        .put_collection(&workload::collection(), &spec)
        .await
        .context("defining the simulator's collection")?;
    let mut tenants = Vec::new();
    for i in 0..args.tenants {
        let id = format!("sim-{run_id}-{i}");
        let tier = args.tiers[i % args.tiers.len()].clone();
        let key = create(admin, &id, &tier, users).await?;
        tenants.push(Arc::new(TenantState {
            id,
            tier,
            users,
            current: tokio::sync::RwLock::new((1, key)),
        }));
    }
    Ok(tenants)
}

/// Creates tenant `id` on `tier` (waiting while it provisions) and a member key for it; with
/// `users`, also its custom role `sim-reader` and the JWT user holding it.
pub(crate) async fn create(
    admin: &Client,
    id: &str,
    tier: &str,
    users: bool,
) -> anyhow::Result<String> {
    let tenant = TenantId::parse(id).map_err(|e| anyhow::anyhow!(e.message))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let made = admin
            .create_tenant(&CreateTenant {
                id: tenant.clone(),
                name: format!("simulated {id}"),
                tier: TierName::parse(tier).map_err(|e| anyhow::anyhow!(e.message))?,
                labels: Default::default(),
            })
            .await;
        match made {
            Ok(view) if view.status != bulkhead_core::model::TenantStatus::Provisioning => break,
            Ok(_) => {}
            Err(e)
                if e.status().is_some_and(|s| {
                    (400..500).contains(&s) && s != 409 && s != 408 && s != 429
                }) =>
            {
                bail!("creating tenant {id}: {e}")
            }
            Err(_) => {}
        }
        if Instant::now() > deadline {
            bail!("tenant {id} was not created within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    loop {
        let key = admin
            .create_key(
                &tenant,
                &CreateKey {
                    name: "simulate".into(),
                    role: TenantRole::Member,
                    expires_in: None,
                },
            )
            .await;
        match key {
            Ok(created) => {
                if users {
                    add_user(admin, &tenant).await?;
                }
                return Ok(created.key);
            }
            Err(e)
                if e.status()
                    .is_some_and(|s| (400..500).contains(&s) && s != 408 && s != 429) =>
            {
                bail!("a key for {id}: {e}")
            }
            Err(_) if Instant::now() > deadline => bail!("no key for {id} within 120 s"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The tenant's role `sim-reader` (read `sim_records` where `w = 1`, `n` hidden) and the JWT
/// user `reader-<tenant>` of the simulator's issuer holding it.
async fn add_user(admin: &Client, tenant: &TenantId) -> anyhow::Result<()> {
    let spec: bulkhead_core::permissions::RoleSpec = serde_json::from_value(serde_json::json!({
        "description": "the simulator's JWT reader",
        "collections": {workload::COLLECTION: {"actions": ["read"], "rule": "w = 1", "hidden_fields": ["n"]}}
    }))?;
    let role = bulkhead_core::RoleName::parse(workload::USER_ROLE)
        .map_err(|e| anyhow::anyhow!(e.message))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = async {
            admin.put_role(tenant, &role, &spec).await?;
            admin
                .add_member(
                    tenant,
                    &bulkhead_api::AddMember {
                        issuer: Some("sim".into()),
                        sub: Some(format!("reader-{}", tenant.as_str())),
                        email: None,
                        role: bulkhead_core::permissions::MemberRole::Custom(role.clone()),
                    },
                )
                .await
        }
        .await;
        match done {
            Ok(_) => return Ok(()),
            Err(e) if e.status() == Some(409) => return Ok(()),
            Err(e)
                if e.status()
                    .is_some_and(|s| (400..500).contains(&s) && s != 408 && s != 429) =>
            {
                bail!("the JWT user of {}: {e}", tenant.as_str())
            }
            Err(_) if Instant::now() > deadline => {
                bail!("no JWT user for {} within 120 s", tenant.as_str())
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
