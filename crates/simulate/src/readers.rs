//! Readers beside the writers: one through a tenant token with a record rule, one as a JWT
//! user with a custom role; every record either is shown is checked against what it may see.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bulkhead_client::{Client, ListRecords};
use serde_json::{Value, json};

use crate::history::{Op, Outcome};
use crate::schedule::Rng;
use crate::workload::{Shared, TenantState, collection, list_seen, seen, status_of};

/// A reader of one tenant through a tenant token minted from its key with the record rule
/// `w = 0`: every record it is shown must be writer 0's, of this tenant and life.
pub async fn token_reader(
    shared: Arc<Shared>,
    tenant: Arc<TenantState>,
    slot: usize,
    mut rng: Rng,
) {
    let name = format!("{}/token", tenant.id);
    let collection = collection();
    let mut token: Option<(u32, Client)> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        let (life, key) = tenant.current.read().await.clone();
        if token.as_ref().is_none_or(|(l, _)| *l != life) {
            let Ok(parent) = Client::new(shared.url(slot + 1), key) else {
                return;
            };
            let request = bulkhead_api::MintToken {
                collections: Some(vec![collection.clone()]),
                actions: vec![bulkhead_core::permissions::Action::Read],
                rule: Some("w = 0".into()),
                expires_in: Some(3600),
            };
            match parent.mint_token(&request).await {
                Ok(minted) => match Client::new(shared.url(slot + 1), minted.token) {
                    Ok(client) => token = Some((life, client)),
                    Err(_) => return,
                },
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        let Some((_, client)) = &token else { continue };
        let start = shared.now_ms();
        let (status, outcome, found) = list_seen(client, &collection, None, 50).await;
        if matches!(status, Some(401)) {
            // The token's life is over (a re-created tenant): mint another.
            token = None;
        }
        let op = Op::TokenList { w: 0, seen: found };
        shared
            .record(&name, &tenant.id, life, start, status, outcome, op)
            .await;
        tokio::time::sleep(Duration::from_millis(30 + rng.below(70))).await;
    }
}

/// A JWT user of one tenant, member with the custom role `sim-reader` (rule `w = 1`, `n`
/// hidden): every record it is shown must be writer 1's, of this tenant and life, without `n`.
pub async fn user_reader(shared: Arc<Shared>, tenant: Arc<TenantState>, slot: usize, mut rng: Rng) {
    let Some(idp) = &shared.idp else { return };
    let name = format!("{}/user", tenant.id);
    let collection = collection();
    // A fresh JWT (and client) every minute; each is valid for ten.
    let mut client: Option<(Instant, Client)> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        let life = tenant.current.read().await.0;
        if client
            .as_ref()
            .is_none_or(|(made, _)| made.elapsed() > Duration::from_secs(60))
        {
            let Ok(jwt) = idp.token(&tenant.id) else {
                return;
            };
            let Ok(made) = Client::new(shared.url(slot + 2), jwt) else {
                return;
            };
            client = Some((Instant::now(), made));
        }
        let Some((_, client)) = &client else { return };
        let start = shared.now_ms();
        let query = ListRecords {
            limit: Some(50),
            ..ListRecords::default()
        };
        let answer = client.list_records(&collection, &query).await;
        let (status, outcome, found, shown_hidden) = match &answer {
            Ok(page) => {
                let shown_hidden = page
                    .items
                    .iter()
                    .filter(|r| r.get("n").is_some())
                    .filter_map(|r| r.get("id").and_then(Value::as_str).map(str::to_owned))
                    .collect();
                let found = page
                    .items
                    .iter()
                    .filter_map(|r| {
                        let mut with_n = r.clone();
                        with_n["n"] = json!(-1);
                        seen(&with_n)
                    })
                    .collect();
                (Some(200), Outcome::Ok, found, shown_hidden)
            }
            Err(e) => (
                status_of(e),
                Outcome::of_status(status_of(e)),
                Vec::new(),
                Vec::new(),
            ),
        };
        let op = Op::UserList {
            w: 1,
            seen: found,
            shown_hidden,
        };
        shared
            .record(&name, &tenant.id, life, start, status, outcome, op)
            .await;
        tokio::time::sleep(Duration::from_millis(30 + rng.below(70))).await;
    }
}
