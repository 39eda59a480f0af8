//! `GET /v1/tenants` filtered on the server: `q` (a substring of the id or name, ignoring
//! case, its LIKE wildcards literal), `tier`, `status`, `domain` and `isolation`, alone and
//! together, paged with the cursor; refusals that name the problem; who may list; and
//! `bulkhead tenant list` with the same filters.
#![allow(clippy::unwrap_used)]

mod common;

use bulkhead_api::{CreatePlatformKey, CreateTenant, TenantListQuery, UpdateTenant};
use bulkhead_client::Client;
use bulkhead_core::access::{PlatformRole, TenantRole};
use bulkhead_core::model::{DomainSpec, Isolation, TenantStatus, TierSpec};
use bulkhead_core::{DomainName, TierName};
use common::{Server, assert_bad_queries, audit_rows, cli, key, tid};

fn tier(name: &str) -> TierName {
    TierName::parse(name).unwrap()
}

fn domain(name: &str) -> DomainName {
    DomainName::parse(name).unwrap()
}

async fn tenant(admin: &Client, id: &str, name: &str, tier_name: &str) {
    admin
        .create_tenant(&CreateTenant {
            id: tid(id),
            name: name.into(),
            tier: tier(tier_name),
            labels: Default::default(),
        })
        .await
        .unwrap();
}

/// Tenants on every model, on two domains, one suspended, and names with `%`, `_` and `\`
/// beside names those would match as LIKE wildcards.
async fn populated(dir: &std::path::Path) -> (Server, Client) {
    let server = Server::start(dir);
    let admin = server.admin();
    for (id, name, tier_name) in [
        ("acme", "Acme Corp", "free"),
        ("acme-labs", "Labs of ACME", "standard"),
        ("globex", "Globex", "premium"),
        ("initech", "Initech", "free"),
        ("slashed", "back\\slash", "free"),
    ] {
        tenant(&admin, id, name, tier_name).await;
    }
    // The built-in tiers list no domain, so their tenants go to the first by name: `east`
    // comes once they are placed on `local`.
    admin
        .put_domain(&domain("east"), &DomainSpec::sqlite())
        .await
        .unwrap();
    let eastern = TierSpec {
        domains: vec![domain("east")],
        ..TierSpec::new(Isolation::Pool)
    };
    admin.put_tier(&tier("eastern"), &eastern).await.unwrap();
    tenant(&admin, "promo", "50% off_sale", "eastern").await;
    tenant(&admin, "plain", "500 offXsale", "eastern").await;
    admin
        .update_tenant(
            &tid("initech"),
            &UpdateTenant {
                status: Some(TenantStatus::Suspended),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    (server, admin)
}

/// The ids of every tenant matching `query`, following the cursor page by page.
async fn all_ids(client: &Client, query: &TenantListQuery) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let page = client
            .list_tenants_matching(&TenantListQuery {
                cursor,
                ..query.clone()
            })
            .await
            .unwrap();
        if let Some(limit) = query.limit {
            assert!(page.items.len() <= limit as usize, "{page:?}");
        }
        ids.extend(page.items.into_iter().map(|t| t.id.to_string()));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return ids,
        }
    }
}

fn search(q: &str) -> TenantListQuery {
    TenantListQuery {
        q: Some(q.into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn each_filter_alone_and_together_lists_exactly_the_matching_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, admin) = populated(dir.path()).await;
    let everyone = [
        "acme",
        "acme-labs",
        "globex",
        "initech",
        "plain",
        "promo",
        "slashed",
    ];
    let cases: Vec<(&str, TenantListQuery, Vec<&str>)> = vec![
        ("no filter", TenantListQuery::default(), everyone.to_vec()),
        // q: a substring of the id or of the name, in any case.
        ("q in ids", search("acme"), vec!["acme", "acme-labs"]),
        ("q in upper case", search("ACME"), vec!["acme", "acme-labs"]),
        ("q in a name only", search("corp"), vec!["acme"]),
        ("q matching nothing", search("umbrella"), vec![]),
        ("an empty q", search(""), everyone.to_vec()),
        // `%`, `_` and `\` match themselves, not any text or any character.
        ("q with %", search("50%"), vec!["promo"]),
        ("q with _", search("f_s"), vec!["promo"]),
        ("q of % alone", search("%"), vec!["promo"]),
        ("q with \\", search("k\\s"), vec!["slashed"]),
        (
            "tier",
            TenantListQuery {
                tier: Some(tier("free")),
                ..Default::default()
            },
            vec!["acme", "initech", "slashed"],
        ),
        (
            "an unknown tier",
            TenantListQuery {
                tier: Some(tier("gold")),
                ..Default::default()
            },
            vec![],
        ),
        (
            "status",
            TenantListQuery {
                status: Some(TenantStatus::Suspended),
                ..Default::default()
            },
            vec!["initech"],
        ),
        (
            "domain",
            TenantListQuery {
                domain: Some(domain("east")),
                ..Default::default()
            },
            vec!["plain", "promo"],
        ),
        (
            "isolation",
            TenantListQuery {
                isolation: Some(Isolation::Silo),
                ..Default::default()
            },
            vec!["globex"],
        ),
        (
            "isolation pool",
            TenantListQuery {
                isolation: Some(Isolation::Pool),
                ..Default::default()
            },
            vec!["acme", "initech", "plain", "promo", "slashed"],
        ),
        (
            "q and isolation",
            TenantListQuery {
                isolation: Some(Isolation::Bridge),
                ..search("acme")
            },
            vec!["acme-labs"],
        ),
        (
            "tier and status",
            TenantListQuery {
                tier: Some(tier("free")),
                status: Some(TenantStatus::Active),
                ..Default::default()
            },
            vec!["acme", "slashed"],
        ),
        (
            "domain, isolation and q",
            TenantListQuery {
                domain: Some(domain("local")),
                isolation: Some(Isolation::Pool),
                ..search("a")
            },
            vec!["acme", "slashed"],
        ),
        (
            "every filter",
            TenantListQuery {
                tier: Some(tier("eastern")),
                status: Some(TenantStatus::Active),
                domain: Some(domain("east")),
                isolation: Some(Isolation::Pool),
                ..search("SALE")
            },
            vec!["plain", "promo"],
        ),
    ];
    for (what, query, expected) in cases {
        assert_eq!(all_ids(&admin, &query).await, expected, "{what}");
    }
}

#[tokio::test]
async fn paging_through_a_filtered_listing_returns_every_match_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, admin) = populated(dir.path()).await;
    for i in 0..5 {
        tenant(&admin, &format!("more-{i}"), &format!("More {i}"), "free").await;
    }
    let free_and_active = TenantListQuery {
        tier: Some(tier("free")),
        status: Some(TenantStatus::Active),
        limit: Some(2),
        ..Default::default()
    };
    assert_eq!(
        all_ids(&admin, &free_and_active).await,
        [
            "acme", "more-0", "more-1", "more-2", "more-3", "more-4", "slashed"
        ]
    );
    let searched = TenantListQuery {
        limit: Some(2),
        ..search("M")
    };
    assert_eq!(
        all_ids(&admin, &searched).await,
        [
            "acme",
            "acme-labs",
            "more-0",
            "more-1",
            "more-2",
            "more-3",
            "more-4",
            "promo"
        ]
    );
    // The last page of an exact fit says there is nothing after it.
    let page = admin
        .list_tenants_matching(&TenantListQuery {
            limit: Some(1),
            ..search("globex")
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.next_cursor, None);
}

#[tokio::test]
async fn bad_filters_are_refused_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, admin) = populated(dir.path()).await;
    let long = format!("q={}", "a".repeat(101));
    assert_bad_queries(
        &admin,
        "/v1/tenants",
        &[
            ("status=frozen", "invalid_query", "status"),
            ("status=Active", "invalid_query", "status"),
            ("isolation=cluster", "invalid_query", "isolation"),
            ("tier=Not_A_Slug", "invalid_query", "tier"),
            ("domain=x", "invalid_query", "domain"),
            (&long, "invalid_filter", "q must be at most 100 characters"),
            // No id or name holds a NUL: SQLite's matching stopped reading at it, so `%00zz`
            // listed every tenant.
            ("q=%00zzzz", "invalid_filter", "NUL"),
            ("q=zz%00", "invalid_filter", "NUL"),
            // An unknown parameter is refused, as on every listing.
            ("search=acme", "invalid_query", "search"),
            ("limit=0", "invalid_limit", "limit"),
            ("cursor=nope", "invalid_cursor", "cursor"),
        ],
    )
    .await;
    // A hundred characters (not bytes) are accepted.
    let hundred = "é".repeat(100);
    assert!(
        admin
            .list_tenants_matching(&search(&hundred))
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn platform_admins_and_operators_may_list_and_tenant_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (server, admin) = populated(dir.path()).await;
    let operator_key = admin
        .create_platform_key(&CreatePlatformKey {
            name: "ops".into(),
            role: PlatformRole::Operator,
            expires_in: None,
        })
        .await
        .unwrap()
        .key;
    let operator = server.client(&operator_key);
    let isolated = TenantListQuery {
        isolation: Some(Isolation::Silo),
        ..Default::default()
    };
    for who in [&admin, &operator] {
        assert_eq!(all_ids(who, &isolated).await, ["globex"]);
    }
    let owner = server.client(&key(&admin, "acme", TenantRole::Owner).await);
    let err = owner
        .list_tenants_matching(&search("acme"))
        .await
        .unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(403), Some("forbidden")));
    let denied = audit_rows(&server.data_dir, |r| {
        r.1 == "tenant.list" && r.4 == "denied:forbidden"
    });
    assert_eq!(denied.len(), 1, "the refusal is audited: {denied:?}");
}

#[tokio::test]
async fn the_cli_lists_tenants_with_the_same_filters() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _admin) = populated(dir.path()).await;
    let (ok, out) = cli(
        &server,
        &["tenant", "list", "--search", "ACME", "--isolation", "pool"],
    );
    assert!(ok, "{out}");
    assert!(out.contains("Acme Corp"), "{out}");
    assert!(!out.contains("Labs of ACME"), "{out}");
    let (ok, out) = cli(
        &server,
        &[
            "tenant",
            "list",
            "--status",
            "suspended",
            "--tier",
            "free",
            "--domain",
            "local",
            "--json",
        ],
    );
    assert!(ok, "{out}");
    let page: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["initech"]);
    let (ok, out) = cli(&server, &["tenant", "list", "--status", "frozen"]);
    assert!(
        !ok,
        "an unknown status is refused before any request: {out}"
    );
    assert!(out.contains("--status"), "{out}");
}
