//! `GET /v1/audit` (and `bulkhead audit list`): the audit log newest first, filtered by
//! tenant, actor, action, outcome and time, paged by cursor; read by platform admins and
//! operators only; the same on a PostgreSQL catalog.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;

use bulkhead_api::{AuditEntry, AuditQuery, CreatePlatformKey};
use bulkhead_client::Client;
use bulkhead_core::access::{PlatformRole, TenantRole};
use bulkhead_core::time::Timestamp;
use common::{Server, items, tid};
use serde_json::json;

fn query() -> AuditQuery {
    AuditQuery::default()
}

/// Every entry matching `q`, following the cursor `page` entries at a time.
async fn all(client: &Client, q: &AuditQuery, page: u32) -> Vec<AuditEntry> {
    let mut out = Vec::new();
    let mut q = AuditQuery {
        limit: Some(page),
        ..q.clone()
    };
    loop {
        let got = client.list_audit(&q).await.unwrap();
        assert!(got.items.len() <= page as usize);
        out.extend(got.items);
        match got.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => return out,
        }
    }
}

fn actions(entries: &[AuditEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.action.as_str()).collect()
}

/// A server with tenants acme and globex, an acme record written by a member and read by the
/// platform admin, and one denial (acme's member asking for the tenant list).
async fn busy_server(dir: &std::path::Path, env: &[(&str, &str)]) -> (Server, Client) {
    let server = Server::start_with(dir, env);
    let admin = server.admin();
    common::put_items(&admin).await;
    common::create_tenant(&admin, "acme", "free").await;
    common::create_tenant(&admin, "globex", "standard").await;
    let member = server.client(&common::key(&admin, "acme", TenantRole::Member).await);
    member
        .create_record(&items(), &json!({"id": "r1", "title": "one"}))
        .await
        .unwrap();
    let as_admin = admin.with_tenant(tid("acme"));
    as_admin
        .get_record(&items(), &bulkhead_core::RecordId::parse("r1").unwrap())
        .await
        .unwrap();
    let denied = member.list_tenants(None, None).await.unwrap_err();
    assert_eq!(denied.status(), Some(403));
    (server, member)
}

/// What every catalog must answer the same way.
async fn check_filters(admin: &Client) {
    let everything = all(admin, &query(), 1000).await;
    // Newest first, each entry once.
    let seqs: Vec<i64> = everything.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "{seqs:?}");
    for action in [
        "tenant.create",
        "key.create",
        "admin_data_access.record.get",
    ] {
        assert!(
            actions(&everything).contains(&action),
            "{action}: {everything:?}"
        );
    }

    // Paging by 3 walks the very same entries.
    assert_eq!(all(admin, &query(), 3).await, everything);

    // One tenant: its entries only, and all of them.
    let acme = AuditQuery {
        tenant: Some(tid("acme")),
        ..query()
    };
    let of_acme = all(admin, &acme, 1000).await;
    let expected: Vec<_> = everything
        .iter()
        .filter(|e| e.tenant == Some(tid("acme")))
        .cloned()
        .collect();
    assert!(!of_acme.is_empty());
    assert_eq!(of_acme, expected);

    // An exact action, and a prefix.
    let exact = AuditQuery {
        action: Some("tenant.create".into()),
        ..query()
    };
    let created = all(admin, &exact, 1000).await;
    let targets: HashSet<&str> = created.iter().map(|e| e.target.as_str()).collect();
    assert_eq!(targets, HashSet::from(["acme", "globex"]), "{created:?}");
    let prefix = AuditQuery {
        action: Some("admin_data_access.*".into()),
        ..query()
    };
    let reads = all(admin, &prefix, 1000).await;
    assert_eq!(
        actions(&reads),
        ["admin_data_access.record.get"],
        "{reads:?}"
    );
    assert_eq!(reads[0].actor, "bootstrap-admin");

    // Outcomes: any denial, one denial, successes.
    let denied = AuditQuery {
        outcome: Some("denied".into()),
        ..query()
    };
    let denials = all(admin, &denied, 1000).await;
    assert!(denials.iter().all(|e| e.outcome.starts_with("denied:")));
    let listing = denials.iter().find(|e| e.action == "tenant.list").unwrap();
    assert_eq!(listing.outcome, "denied:forbidden");
    let forbidden = AuditQuery {
        outcome: Some("denied:forbidden".into()),
        actor: Some(listing.actor.clone()),
        ..query()
    };
    assert_eq!(all(admin, &forbidden, 1000).await, vec![listing.clone()]);
    let ok = AuditQuery {
        outcome: Some("ok".into()),
        ..query()
    };
    let oks = all(admin, &ok, 1000).await;
    assert_eq!(oks.len() + denials.len(), everything.len());

    // Time: from (inclusive) and to (exclusive) split the log at one entry's time.
    let middle = everything[everything.len() / 2].at;
    let after = AuditQuery {
        from: Some(middle),
        ..query()
    };
    let before = AuditQuery {
        to: Some(middle),
        ..query()
    };
    let (late, early) = (
        all(admin, &after, 1000).await,
        all(admin, &before, 1000).await,
    );
    assert!(late.iter().all(|e| e.at >= middle) && early.iter().all(|e| e.at < middle));
    assert_eq!(late.len() + early.len(), everything.len());
    let future = AuditQuery {
        from: Some(Timestamp::parse_rfc3339("2999-01-01T00:00:00Z").unwrap()),
        ..query()
    };
    assert!(all(admin, &future, 10).await.is_empty());
}

#[tokio::test]
async fn the_audit_log_is_listed_newest_first_filtered_and_paged() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = busy_server(dir.path(), &[]).await;
    check_filters(&server.admin()).await;
}

#[tokio::test]
async fn the_audit_api_reads_a_postgres_catalog_the_same_way() {
    let Some(pg) = bulkhead_pg_testkit::require("audit") else {
        return;
    };
    pg.psql("postgres", "CREATE DATABASE bulkhead").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let catalog = pg.url("bulkhead");
    let (server, _) = busy_server(dir.path(), &[("BULKHEAD_CATALOG", &catalog)]).await;
    check_filters(&server.admin()).await;
}

#[tokio::test]
async fn only_platform_admins_and_operators_read_the_audit_log_and_refusals_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let (server, member) = busy_server(dir.path(), &[]).await;
    let admin = server.admin();
    let owner = server.client(&common::key(&admin, "acme", TenantRole::Owner).await);
    for tenant_side in [&member, &owner] {
        let err = tenant_side.list_audit(&query()).await.unwrap_err();
        assert_eq!(err.status(), Some(403), "{err}");
        assert_eq!(err.code(), Some("forbidden"));
    }
    let operator_key = CreatePlatformKey {
        name: "ops".into(),
        role: PlatformRole::Operator,
        expires_in: None,
    };
    let operator = server.client(&admin.create_platform_key(&operator_key).await.unwrap().key);
    let seen = operator.list_audit(&query()).await.unwrap();
    assert!(!seen.items.is_empty());

    let refusals = AuditQuery {
        action: Some("audit.read".into()),
        ..query()
    };
    let refused = all(&admin, &refusals, 100).await;
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused.iter().all(|e| e.outcome == "denied:forbidden"));
}

#[tokio::test]
async fn bad_audit_queries_are_400s_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    let cases = [
        ("tenant=Not_A_Slug", "invalid_query", "tenant"),
        ("from=yesterday", "invalid_query", "from"),
        ("to=2026-13-01T00:00:00Z", "invalid_query", "to"),
        ("outcome=refused", "invalid_outcome", "outcome"),
        ("action=mo*ve", "invalid_filter", "action"),
        ("actor=", "invalid_filter", "actor"),
        ("limit=0", "invalid_limit", "limit"),
        ("cursor=bm9wZQ", "invalid_cursor", "cursor"),
        ("tennant=acme", "invalid_query", "tennant"),
        (
            "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
            "invalid_time_range",
            "before",
        ),
    ];
    common::assert_bad_queries(&admin, "/v1/audit", &cases).await;
}

/// Audit retention: with `BULKHEAD_AUDIT_RETENTION_DAYS`, the oldest run of rows older than
/// that is removed (at start, then hourly), the removal is itself audited, newer rows stay,
/// and the hash chain still verifies from the new anchor.
#[tokio::test]
async fn audit_rows_past_their_retention_are_removed_and_the_removal_audited() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = common::Server::start(dir.path());
    common::create_tenant(&server.admin(), "first", "free").await;
    common::create_tenant(&server.admin(), "second", "free").await;
    common::put_items(&server.admin()).await;
    server.stop();
    {
        let conn = rusqlite::Connection::open(server.data_dir.join("catalog.db")).unwrap();
        // The first two entries made ancient (their hashes no longer match; retention
        // removes them, so the chain starts after them).
        conn.execute(
            "UPDATE audit SET at = 0, action = 'ancient.thing' \
             WHERE seq <= (SELECT min(seq) + 1 FROM audit)",
            [],
        )
        .unwrap();
    }
    let server = common::Server::start_with(dir.path(), &[("BULKHEAD_AUDIT_RETENTION_DAYS", "30")]);
    let data_dir = server.data_dir.clone();
    let removal = common::audit_rows(&data_dir, |r| r.1 == "audit.retention");
    assert_eq!(removal.len(), 1, "{removal:?}");
    assert!(common::audit_rows(&data_dir, |r| r.1 == "ancient.thing").is_empty());
    assert!(
        !common::audit_rows(&data_dir, |r| r.1 == "collection.put").is_empty(),
        "recent rows stay"
    );
    let chain = server.admin().verify_audit(None).await.unwrap();
    assert!(chain.ok && chain.anchor.seq == 2, "{chain:?}");
}

/// The `free` tier's name and spec as the server has it.
async fn free_tier(admin: &Client) -> (bulkhead_core::TierName, bulkhead_core::model::TierSpec) {
    let free = bulkhead_core::TierName::parse("free").unwrap();
    let spec = admin
        .list_tiers()
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|t| t.name == free)
        .unwrap()
        .spec;
    (free, spec)
}

/// Operators tune tiers but cannot loosen them: an admin bans `export` on the free tier and
/// caps its rate; an operator's attempts to lift the ban or raise the rate are 403 and
/// audited, while tightening further works.
#[tokio::test]
async fn operators_cannot_weaken_a_tiers_ceiling_or_raise_its_limits() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    let (free, mut spec) = free_tier(&admin).await;
    spec.ceiling
        .forbid
        .insert(bulkhead_core::permissions::Action::Export);
    spec.limits.requests_per_second = std::num::NonZeroU32::new(10);
    admin.put_tier(&free, &spec).await.unwrap();
    let operator_key = CreatePlatformKey {
        name: "ops".into(),
        role: PlatformRole::Operator,
        expires_in: None,
    };
    let operator = server.client(&admin.create_platform_key(&operator_key).await.unwrap().key);
    let mut lifted = spec.clone();
    lifted.ceiling.forbid.clear();
    let err = operator.put_tier(&free, &lifted).await.unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    assert!(err.to_string().contains("export"), "{err}");
    let mut faster = spec.clone();
    faster.limits.requests_per_second = std::num::NonZeroU32::new(100);
    let err = operator.put_tier(&free, &faster).await.unwrap_err();
    assert!(err.to_string().contains("requests_per_second"), "{err}");
    let mut unlimited = spec.clone();
    unlimited.limits.requests_per_second = None;
    assert_eq!(
        operator
            .put_tier(&free, &unlimited)
            .await
            .unwrap_err()
            .status(),
        Some(403)
    );
    // Tightening is fine.
    let mut tighter = spec.clone();
    tighter
        .ceiling
        .forbid
        .insert(bulkhead_core::permissions::Action::Delete);
    tighter.limits.requests_per_second = std::num::NonZeroU32::new(5);
    operator.put_tier(&free, &tighter).await.unwrap();
    let refused = common::audit_rows(&server.data_dir, |r| {
        r.1 == "tier.put" && r.4 == "denied:forbidden"
    });
    assert_eq!(refused.len(), 3, "{refused:?}");
}

/// Lines a bulk request refuses for the caller's rights are audited as the record routes
/// audit each such refusal: one entry for the request, naming the refused lines.
#[tokio::test]
async fn lines_refused_inside_a_bulk_request_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let admin = server.admin();
    common::put_items(&admin).await;
    common::create_tenant(&admin, "acme", "free").await;
    let (free, mut spec) = free_tier(&admin).await;
    spec.ceiling
        .forbid
        .insert(bulkhead_core::permissions::Action::Delete);
    admin.put_tier(&free, &spec).await.unwrap();
    let member = server.client(&common::key(&admin, "acme", TenantRole::Member).await);
    let body = [
        r#"{"op": "delete", "id": "a"}"#,
        r#"{"title": "kept"}"#,
        r#"{"op": "delete", "id": "b"}"#,
    ]
    .join("\n")
    .into_bytes();
    let report = member.bulk(&items(), body, false).await.unwrap();
    assert_eq!((report.created, report.failed), (1, 2), "{report:?}");
    let rows = common::audit_rows(&server.data_dir, |r| {
        r.1 == "record.bulk" && r.4.starts_with("denied:")
    });
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].3.as_deref(), Some("acme"));
    let entries = admin
        .list_audit(&AuditQuery {
            action: Some("record.bulk".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap()
        .items;
    let detail = entries[0].detail.clone().unwrap_or_default();
    assert!(
        detail.contains("\"refused\":2") && detail.contains("[1,") && detail.contains("[3,"),
        "{detail}"
    );
}
