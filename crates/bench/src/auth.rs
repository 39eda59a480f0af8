//! `bulkhead-bench auth`: what authentication and authorization cost per request, as a share
//! of a get-by-id request, for each kind of credential.
//!
//! One server (catalog, local engine, HTTP) in this process, with an RS256 issuer whose key
//! `openssl` makes. Per credential, in interleaved rounds:
//! - `auth`: `Catalog::authenticate` + `Catalog::access_view` in process: key lookup or JWT
//!   verification with cached keys, user and membership lookup, role and tier ceiling, token
//!   parent check, record rule compilation — everything a data request does before the engine;
//! - `get (http)`: a sequential `GET /v1/collections/deals/records/{id}` over loopback HTTP;
//! - `get (in process)`: `authenticate` + `Catalog::get_record`, without HTTP.
//!
//! The share is `auth / get (http)`; medians over rounds.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bulkhead_api::{AddMember, CreateKey, CreateTenant, MintToken};
use bulkhead_client::Client;
use bulkhead_core::access::TenantRole;
use bulkhead_core::permissions::{Action, MemberRole, RoleSpec};
use bulkhead_core::time::SystemClock;
use bulkhead_core::{CollectionName, RecordId, RoleName, TenantId, TierName};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

const ADMIN_KEY: &str = "bench-admin-key-0123456789";
const ISS: &str = "https://bench-idp.test/";

#[derive(Debug, clap::Args)]
pub struct AuthArgs {
    /// Requests per credential and round.
    #[arg(long, default_value_t = 2_000)]
    requests: usize,
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

fn openssl_rsa(dir: &Path) -> anyhow::Result<(String, String)> {
    let private = dir.join("bench-idp.pem");
    let public = dir.join("bench-idp.pub.pem");
    for args in [
        vec![
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            private.to_str().unwrap_or(""),
        ],
        vec![
            "pkey",
            "-in",
            private.to_str().unwrap_or(""),
            "-pubout",
            "-out",
            public.to_str().unwrap_or(""),
        ],
    ] {
        let status = Command::new("openssl").args(&args).status().context(
            "bulkhead-bench auth makes its RSA key with the `openssl` CLI (apt-get install openssl)",
        )?;
        if !status.success() {
            bail!("openssl {args:?} failed");
        }
    }
    Ok((
        std::fs::read_to_string(private)?,
        std::fs::read_to_string(public)?,
    ))
}

fn jwt(private_pem: &str, sub: &str) -> anyhow::Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = json!({"iss": ISS, "aud": "bulkhead", "sub": sub, "iat": now, "exp": now + 3600});
    let key = EncodingKey::from_rsa_pem(private_pem.as_bytes())?;
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims,
        &key,
    )?)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn micros(total: Duration, n: usize) -> f64 {
    total.as_secs_f64() * 1e6 / n.max(1) as f64
}

pub async fn run(args: AuthArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (private_pem, public_pem) = openssl_rsa(dir.path())?;
    let config_path = dir.path().join("bulkhead.toml");
    std::fs::write(
        &config_path,
        format!(
            "[[issuers]]\nname = \"bench\"\nissuer = \"{ISS}\"\naudience = [\"bulkhead\"]\nkeys = [\"{}\"]\nalgorithms = [\"RS256\"]\n",
            public_pem.replace('\n', "\\n")
        ),
    )?;
    let serve_args = bulkhead::config::ServeArgs {
        listen: Some("127.0.0.1:0".into()),
        config: Some(config_path),
        log_level: Some("warn".into()),
        ..Default::default()
    };
    let config = bulkhead::config::Config::load(
        &serve_args,
        Some(&dir.path().join("data")),
        Some(ADMIN_KEY.into()),
    )?;
    let node = bulkhead::serve::open(
        &config,
        Arc::new(SystemClock),
        bulkhead_engine::conformance::authority(),
    )
    .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bulkhead_server::serve(
        listener,
        node.state.clone(),
        async {
            let _ = stopped.await;
        },
    ));

    // A tenant with one record owned by the custom-role user.
    let admin = Client::new(&url, ADMIN_KEY)?;
    let deals = CollectionName::parse("deals")?;
    let spec = serde_json::from_value(json!({"fields": {
        "title": {"type": "string", "required": true},
        "owner": {"type": "string", "index": true},
        "margin": {"type": "integer"}
    }}))?;
    admin.put_collection(&deals, &spec).await?;
    let acme = TenantId::parse("acme")?;
    admin
        .create_tenant(&CreateTenant {
            id: acme.clone(),
            name: "acme".into(),
            tier: TierName::parse("free")?,
            labels: Default::default(),
        })
        .await?;
    let rep: RoleSpec = serde_json::from_value(json!({"collections": {"deals": {
        "actions": ["read", "create", "update"], "rule": "owner = @user.id", "hidden_fields": ["margin"]
    }}}))?;
    admin
        .put_role(&acme, &RoleName::parse("rep")?, &rep)
        .await?;
    let member = |sub: &str, role: &str| AddMember {
        issuer: Some("bench".into()),
        sub: Some(sub.into()),
        email: None,
        role: MemberRole::parse(role).unwrap_or(MemberRole::Builtin(TenantRole::Viewer)),
    };
    admin.add_member(&acme, &member("alice", "member")).await?;
    let rita = admin
        .add_member(&acme, &member("rita", "rep"))
        .await?
        .user_id;
    let owner_key = admin
        .create_key(
            &acme,
            &CreateKey {
                name: "bench".into(),
                role: TenantRole::Owner,
                expires_in: None,
            },
        )
        .await?
        .key;
    let owner = Client::new(&url, &owner_key)?;
    owner
        .create_record(
            &deals,
            &json!({"id": "d1", "title": "deal", "owner": rita.as_str(), "margin": 7}),
        )
        .await?;
    let token = owner
        .mint_token(&MintToken {
            collections: Some(vec![deals.clone()]),
            actions: vec![Action::Read],
            rule: Some("owner != \"nobody\"".into()),
            expires_in: Some(3600),
        })
        .await?
        .token;
    let credentials = [
        ("API key (owner)", owner_key),
        ("JWT RS256, member", jwt(&private_pem, "alice")?),
        (
            "JWT RS256, custom role + rule + hidden field",
            jwt(&private_pem, "rita")?,
        ),
        ("tenant token (+ rule)", token),
    ];
    let id = RecordId::parse("d1")?;
    let catalog = node.catalog.clone();

    let mut results: Vec<[Vec<f64>; 3]> = credentials.iter().map(|_| Default::default()).collect();
    let bar = crate::bar(args.rounds * credentials.len(), "rounds × credentials");
    for _ in 0..args.rounds {
        for (i, (_, credential)) in credentials.iter().enumerate() {
            let client = Client::new(&url, credential)?;
            client.get_record(&deals, &id).await?;
            let started = Instant::now();
            for _ in 0..args.requests {
                client.get_record(&deals, &id).await?;
            }
            results[i][0].push(micros(started.elapsed(), args.requests));
            let started = Instant::now();
            for _ in 0..args.requests {
                let ctx = catalog
                    .authenticate(Some(credential), "bench")
                    .await
                    .map_err(|e| anyhow::anyhow!(e.message))?;
                catalog
                    .access_view(&ctx, None, &deals)
                    .await
                    .map_err(|e| anyhow::anyhow!(e.message))?;
            }
            results[i][1].push(micros(started.elapsed(), args.requests));
            let started = Instant::now();
            for _ in 0..args.requests {
                let ctx = catalog
                    .authenticate(Some(credential), "bench")
                    .await
                    .map_err(|e| anyhow::anyhow!(e.message))?;
                catalog
                    .get_record(&ctx, None, &deals, &id)
                    .await
                    .map_err(|e| anyhow::anyhow!(e.message))?;
            }
            results[i][2].push(micros(started.elapsed(), args.requests));
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    println!(
        "authn + authz per request vs get-by-id ({} requests x {} rounds, medians of round means)",
        args.requests, args.rounds
    );
    println!(
        "{:<48} {:>12} {:>10} {:>16} {:>8}",
        "credential", "get (http)", "auth", "get (in process)", "share"
    );
    for ((name, _), [http, auth, inproc]) in credentials.iter().zip(results) {
        let (http, auth, inproc) = (median(http), median(auth), median(inproc));
        println!(
            "{name:<48} {http:>9.1} µs {auth:>7.1} µs {inproc:>13.1} µs {:>7.1}%",
            100.0 * auth / http
        );
    }
    let _ = stop.send(());
    server.await??;
    node.catalog.shutdown().await;
    Ok(())
}
