//! `GET /v1/moves`: every tenant's moves, newest first, paged; `active=true` keeps those
//! under way, `tenant` one tenant's (every life); who may list; `bulkhead move list`; and a
//! tenant's own listing, of its current life.

use bulkhead_api::{CreatePlatformKey, MoveListQuery};
use bulkhead_client::Client;
use bulkhead_core::access::{PlatformRole, TenantRole};
use bulkhead_core::model::{Isolation, MovePhase};

use crate::common::{Server, assert_bad_queries, cli, key, tid};
use crate::{mover_and_neighbour, slow_copy, start, wait_for, workload};

/// The ids of every move matching `query`, following the cursor page by page.
async fn all_ids(client: &Client, query: &MoveListQuery) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let page = client
            .list_all_moves(&MoveListQuery {
                cursor,
                ..query.clone()
            })
            .await
            .unwrap();
        ids.extend(page.items.into_iter().map(|m| m.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return ids,
        }
    }
}

#[tokio::test]
async fn moves_of_every_tenant_list_newest_first_and_active_keeps_the_running_one() {
    let dir = tempfile::tempdir().unwrap();
    let env = slow_copy();
    let server = Server::start_with(dir.path(), &env);
    let (admin, mover, _neighbour) = mover_and_neighbour(&server).await;
    // The neighbour holds nothing, so its move ends at once; the mover's copy of 1000
    // records at 100 a second runs for ten seconds.
    let finished = start(&admin, "neighbour", Isolation::Bridge, None).await;
    let finished = wait_for(&admin, &finished.id, None).await;
    assert_eq!(finished.phase, MovePhase::Done);
    workload::seed(&mover, "m", 1000).await;
    let running = start(&admin, "mover", Isolation::Silo, None).await;

    let everything = MoveListQuery::default();
    let (newest, oldest) = (running.id.as_str(), finished.id.as_str());
    assert_eq!(all_ids(&admin, &everything).await, [newest, oldest]);
    let page = admin.list_all_moves(&everything).await.unwrap();
    assert_eq!(page.items[0].tenant, tid("mover"));
    assert!(!page.items[0].phase.is_final(), "{:?}", page.items[0]);
    assert_eq!(page.items[1].phase, MovePhase::Done);
    // A page at a time, each move once.
    let one_by_one = MoveListQuery {
        limit: Some(1),
        ..Default::default()
    };
    assert_eq!(all_ids(&admin, &one_by_one).await, [newest, oldest]);
    for (query, expected) in [
        (
            MoveListQuery {
                active: Some(true),
                ..Default::default()
            },
            vec![newest],
        ),
        (
            MoveListQuery {
                active: Some(false),
                ..Default::default()
            },
            vec![oldest],
        ),
        (
            MoveListQuery {
                tenant: Some(tid("neighbour")),
                ..Default::default()
            },
            vec![oldest],
        ),
        (
            MoveListQuery {
                active: Some(true),
                tenant: Some(tid("neighbour")),
                ..Default::default()
            },
            vec![],
        ),
        (
            MoveListQuery {
                tenant: Some(tid("nobody")),
                ..Default::default()
            },
            vec![],
        ),
    ] {
        assert_eq!(all_ids(&admin, &query).await, expected, "{query:?}");
    }

    // The CLI's table shows the running move only, with its tenant.
    let (ok, out) = cli(&server, &["move", "list", "--active"]);
    assert!(ok, "{out}");
    assert!(out.contains(newest) && out.contains("mover"), "{out}");
    assert!(!out.contains(oldest), "{out}");
    let (ok, out) = cli(&server, &["move", "list", "--tenant-id", "neighbour"]);
    assert!(ok, "{out}");
    assert!(out.contains(oldest) && !out.contains(newest), "{out}");

    // Operators may list, like reading one move; a tenant's own key may not.
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
    assert_eq!(all_ids(&operator, &everything).await, [newest, oldest]);
    let owner = server.client(&key(&admin, "mover", TenantRole::Owner).await);
    let err = owner.list_all_moves(&everything).await.unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(403), Some("forbidden")));

    assert_bad_queries(
        &admin,
        "/v1/moves",
        &[
            ("active=yes", "invalid_query", "active"),
            ("tenant=Not_A_Slug", "invalid_query", "tenant"),
            ("phase=copying", "invalid_query", "phase"),
            ("limit=0", "invalid_limit", "limit"),
            ("cursor=nope", "invalid_cursor", "cursor"),
        ],
    )
    .await;

    // Cancelled, the running move has ended: nothing is active any more.
    let cancelled = admin.cancel_move(newest).await.unwrap();
    let cancelled = wait_for(&admin, &cancelled.id, None).await;
    assert_eq!(cancelled.phase, MovePhase::RolledBack);
    let active = MoveListQuery {
        active: Some(true),
        ..Default::default()
    };
    assert!(all_ids(&admin, &active).await.is_empty());

    // A tenant's own listing is of its current life: re-created, the neighbour has no move
    // there, while the listing of every move keeps the old life's (named by its source).
    let old_life = admin
        .get_tenant(&tid("neighbour"))
        .await
        .unwrap()
        .placement
        .incarnation;
    assert_eq!(
        admin
            .list_moves(&tid("neighbour"))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    admin.delete_tenant(&tid("neighbour")).await.unwrap();
    crate::common::create_tenant(&admin, "neighbour", "free").await;
    assert!(
        admin
            .list_moves(&tid("neighbour"))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let history = admin
        .list_all_moves(&MoveListQuery {
            tenant: Some(tid("neighbour")),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(history.items.len(), 1);
    assert_eq!(history.items[0].source.incarnation, old_life);
    // An id no tenant has is not found, as its keys and members are.
    let err = admin.list_moves(&tid("nobody")).await.unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(404), Some("tenant_not_found"))
    );
}
