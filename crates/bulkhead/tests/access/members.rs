//! JWT attacks, memberships (checked on every request), the members API and platform roles.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bulkhead_api::{AddMember, CreatePlatformKey};
use bulkhead_client::ListRecords;
use bulkhead_core::access::{PlatformRole, TenantRole};
use bulkhead_core::permissions::MemberRole;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::common::{create_tenant, items, key, put_items, tid};
use crate::idp::{self, AUD, ISS, now};
use crate::{Env, add, expect_err};

fn b64(value: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_and_misdirected_jwts_are_all_refused_alike() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = Env::start(dir.path());
    let admin = env.admin();
    put_items(&admin).await;
    create_tenant(&admin, "acme", "free").await;
    add(&admin, "acme", "alice", "member").await;
    let good = env.idp.token("alice", json!({}));
    assert!(
        env.server
            .client(&good)
            .list_records(&items(), &ListRecords::default())
            .await
            .is_ok()
    );

    let claims = env.idp.claims("alice", json!({}));
    let mut attacks: Vec<(&str, String)> = Vec::new();
    // alg=none with a valid payload and no signature.
    attacks.push((
        "alg none",
        format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            b64(&claims)
        ),
    ));
    // HS256 signed with the issuer's public key as the HMAC secret (key confusion).
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(env.idp.public_pem.as_bytes()),
    )
    .unwrap();
    attacks.push(("HS/RS confusion", confused));
    // Signed by a key the server does not trust, with unknown and injected kids.
    let rogue = EncodingKey::from_rsa_pem(env.idp.rogue_pem.as_bytes()).unwrap();
    for kid in ["unknown-kid", "../../../etc/passwd", "' OR '1'='1"] {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.into());
        attacks.push((
            "rogue key with kid",
            jsonwebtoken::encode(&header, &claims, &rogue).unwrap(),
        ));
        attacks.push((
            "good key, unknown kid",
            env.idp.sign_with_header(header, &claims),
        ));
    }
    attacks.push((
        "rogue key",
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &rogue).unwrap(),
    ));
    attacks.push((
        "expired",
        env.idp.token("alice", json!({"exp": now() - 60})),
    ));
    attacks.push((
        "not yet valid",
        env.idp.token("alice", json!({"nbf": now() + 600})),
    ));
    attacks.push((
        "wrong issuer",
        env.idp.token("alice", json!({"iss": "https://evil.test/"})),
    ));
    attacks.push((
        "wrong audience",
        env.idp.token("alice", json!({"aud": "someone-else"})),
    ));
    attacks.push((
        "exp as a string",
        env.idp
            .token("alice", json!({"exp": (now() + 600).to_string()})),
    ));
    attacks.push((
        "exp as a float string",
        env.idp.token("alice", json!({"exp": "9999999999.0"})),
    ));
    attacks.push(("no exp", {
        let mut c = claims.clone();
        c.as_object_mut().unwrap().remove("exp");
        env.idp.sign(&c)
    }));
    // Tampered payload (another sub) with the original signature, and a tampered signature.
    let parts: Vec<&str> = good.split('.').collect();
    let bob = env.idp.claims("bob", json!({}));
    attacks.push((
        "tampered payload",
        format!("{}.{}.{}", parts[0], b64(&bob), parts[2]),
    ));
    let mut sig = parts[2].to_owned().into_bytes();
    sig[5] = if sig[5] == b'A' { b'B' } else { b'A' };
    attacks.push((
        "tampered signature",
        format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            String::from_utf8(sig).unwrap()
        ),
    ));
    // A valid token of a person no tenant added.
    attacks.push(("unknown person", env.idp.token("mallory", json!({}))));
    attacks.push(("garbage", "a.b.c".into()));

    for (what, token) in attacks {
        let err = env
            .server
            .client(&token)
            .list_records(&items(), &ListRecords::default())
            .await
            .expect_err(what);
        assert_eq!(
            (err.status(), err.code()),
            (Some(401), Some("invalid_credentials")),
            "{what}: {err}"
        );
    }
    // Every refusal is audited: the first of each kind (source and reason) at once, the
    // rest of a window as one row with their count (written at the latest at shutdown).
    env.server.stop();
    let conn = rusqlite::Connection::open(env.server.data_dir.join("catalog.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT target, detail FROM audit WHERE action = 'authenticate'")
        .unwrap();
    let rows: Vec<(String, Option<String>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let counted: u64 = rows
        .iter()
        .map(|(_, detail)| {
            detail
                .as_deref()
                .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
                .and_then(|d| d["repeated"].as_u64())
                .unwrap_or(1)
        })
        .sum();
    assert!(counted >= 15, "{counted} denials audited: {rows:?}");
    assert!(
        rows.iter().all(|(source, _)| source == "127.0.0.1"),
        "each row names the source: {rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memberships_decide_the_tenant_and_removal_applies_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::start(dir.path());
    let admin = env.admin();
    put_items(&admin).await;
    for t in ["acme", "globex", "initech"] {
        create_tenant(&admin, t, "free").await;
    }
    let alice_id = add(&admin, "acme", "alice", "member").await;
    assert_eq!(
        add(&admin, "globex", "alice", "viewer").await,
        alice_id,
        "one person, one user"
    );

    let alice = env.user("alice");
    let me = alice.me().await.unwrap();
    assert_eq!((me.kind.as_str(), me.memberships.len()), ("user", 2));
    // Two memberships: the tenant must be named.
    let (s, code) = expect_err(alice.list_records(&items(), &ListRecords::default()).await);
    assert_eq!((s, code.as_str()), (400, "tenant_required"));
    let at_acme = alice.with_tenant(tid("acme"));
    at_acme
        .create_record(&items(), &json!({"title": "a1"}))
        .await
        .unwrap();
    let at_globex = alice.with_tenant(tid("globex"));
    assert_eq!(
        at_globex
            .list_records(&items(), &ListRecords::default())
            .await
            .unwrap()
            .items
            .len(),
        0
    );
    assert_eq!(
        expect_err(
            at_globex
                .create_record(&items(), &json!({"title": "x"}))
                .await
        )
        .0,
        403
    );
    // A tenant she is not a member of looks exactly like one that does not exist.
    let foreign = expect_err(
        alice
            .with_tenant(tid("initech"))
            .list_records(&items(), &ListRecords::default())
            .await,
    );
    let missing = expect_err(
        alice
            .with_tenant(tid("nowhere"))
            .list_records(&items(), &ListRecords::default())
            .await,
    );
    assert_eq!(foreign, missing);
    assert_eq!(foreign, (404, "tenant_not_found".into()));

    // Removal takes effect on the very next request, with the same token.
    admin.remove_member(&tid("acme"), &alice_id).await.unwrap();
    assert_eq!(
        expect_err(
            at_acme
                .list_records(&items(), &ListRecords::default())
                .await
        ),
        missing
    );
    // With one membership left, the tenant is implied.
    assert!(
        alice
            .list_records(&items(), &ListRecords::default())
            .await
            .is_ok()
    );
    // Disabled platform-wide: every request fails at once.
    admin.set_user_disabled(&alice_id, true).await.unwrap();
    assert_eq!(expect_err(alice.me().await).0, 401);
    admin.set_user_disabled(&alice_id, false).await.unwrap();
    assert!(alice.me().await.is_ok());

    // An email invitation names the issuer that may claim it: with two issuers configured,
    // one must be named.
    let invite = |issuer: Option<&str>| AddMember {
        issuer: issuer.map(str::to_owned),
        sub: None,
        email: Some("Bob@Example.com".into()),
        role: MemberRole::Builtin(TenantRole::Viewer),
    };
    assert_eq!(
        expect_err(admin.add_member(&tid("acme"), &invite(None)).await),
        (400, "issuer_required".into())
    );
    admin
        .add_member(&tid("acme"), &invite(Some("idp")))
        .await
        .unwrap();
    // It is claimed only by a token whose email is verified — the JSON boolean, not the
    // string "true" — and only from the issuer it names: whoever holds the other issuer's
    // secret cannot take it over.
    let unverified = env.user_with(
        "bob",
        json!({"email": "bob@example.com", "email_verified": false}),
    );
    assert_eq!(expect_err(unverified.me().await).0, 401);
    let stringly = env.user_with(
        "bob",
        json!({"email": "bob@example.com", "email_verified": "true"}),
    );
    assert_eq!(expect_err(stringly.me().await).0, 401);
    let forged = {
        let claims = json!({
            "iss": crate::idp::ORG_ISS, "aud": crate::idp::AUD, "sub": "mallory",
            "org": "acme", "email": "bob@example.com", "email_verified": true,
            "iat": crate::idp::now(), "exp": crate::idp::now() + 600,
        });
        let key = jsonwebtoken::EncodingKey::from_secret(crate::idp::ORG_SECRET.as_bytes());
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &key,
        )
        .unwrap()
    };
    assert_eq!(expect_err(env.server.client(&forged).me().await).0, 401);
    let bob = env.user_with(
        "bob",
        json!({"email": "bob@example.com", "email_verified": true}),
    );
    assert_eq!(
        bob.list_records(&items(), &ListRecords::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let members = admin.list_members(&tid("acme")).await.unwrap().items;
    assert!(
        members
            .iter()
            .any(|m| m.sub.as_deref() == Some("bob") && m.status == "active")
    );
    // The claim is audited with the issuer and subject that claimed it.
    let claims = admin
        .list_audit(&bulkhead_api::AuditQuery {
            action: Some("member.claim".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    assert_eq!(claims.len(), 1, "{claims:?}");
    let detail = claims[0].detail.clone().unwrap_or_default();
    assert!(
        detail.contains(ISS) && detail.contains("\"bob\""),
        "{detail}"
    );

    // The `org` issuer names the tenant in a claim; a header cannot point elsewhere.
    admin
        .add_member(
            &tid("globex"),
            &AddMember {
                issuer: Some(idp::ORG_ISS.into()),
                sub: Some("carol".into()),
                email: None,
                role: MemberRole::Builtin(TenantRole::Member),
            },
        )
        .await
        .unwrap();
    let carol = env.server.client(&env.idp.org_token("carol", "globex"));
    carol
        .create_record(&items(), &json!({"title": "by carol"}))
        .await
        .unwrap();
    let elsewhere = expect_err(
        carol
            .with_tenant(tid("acme"))
            .list_records(&items(), &ListRecords::default())
            .await,
    );
    assert_eq!(elsewhere, missing);
    let wrong_claim = env.server.client(&env.idp.org_token("carol", "acme"));
    assert_eq!(
        expect_err(
            wrong_claim
                .list_records(&items(), &ListRecords::default())
                .await
        ),
        missing
    );
    let _ = (ISS, AUD);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_tenant_admins_manage_members_and_only_owners_touch_owners() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::start(dir.path());
    let admin = env.admin();
    put_items(&admin).await;
    create_tenant(&admin, "acme", "free").await;
    create_tenant(&admin, "globex", "free").await;
    let owner = add(&admin, "acme", "olivia", "owner").await;
    add(&admin, "acme", "adam", "admin").await;
    add(&admin, "acme", "mia", "member").await;
    let dave = add(&admin, "globex", "dave", "member").await;
    let add_as = |role: &str, sub: &str| AddMember {
        issuer: Some("idp".into()),
        sub: Some(sub.into()),
        email: None,
        role: MemberRole::parse(role).unwrap(),
    };

    let mia = env.user("mia");
    assert_eq!(
        expect_err(mia.add_member(&tid("acme"), &add_as("member", "x1")).await).0,
        403
    );
    assert_eq!(expect_err(mia.list_members(&tid("acme")).await).0, 403);
    let adam = env.user("adam");
    adam.add_member(&tid("acme"), &add_as("member", "x2"))
        .await
        .unwrap();
    assert_eq!(
        expect_err(adam.add_member(&tid("acme"), &add_as("owner", "x3")).await).0,
        403
    );
    assert_eq!(
        expect_err(adam.remove_member(&tid("acme"), &owner).await).0,
        403
    );
    // Another tenant's members are out of reach, as if the tenant did not exist.
    assert_eq!(expect_err(adam.list_members(&tid("globex")).await).0, 404);
    assert_eq!(
        expect_err(adam.remove_member(&tid("globex"), &dave).await).0,
        404
    );
    assert_eq!(
        expect_err(adam.remove_member(&tid("acme"), &dave).await),
        (404, "member_not_found".into())
    );
    // The last owner stays.
    let olivia = env.user("olivia");
    assert_eq!(
        expect_err(olivia.remove_member(&tid("acme"), &owner).await),
        (409, "last_owner".into())
    );
    olivia
        .add_member(&tid("acme"), &add_as("owner", "otto"))
        .await
        .unwrap();
    olivia.remove_member(&tid("acme"), &owner).await.unwrap();
    // Tenant keys: owner/admin keys manage members of their own tenant only.
    let acme_admin_key = env
        .server
        .client(&key(&admin, "acme", TenantRole::Admin).await);
    acme_admin_key
        .add_member(&tid("acme"), &add_as("viewer", "x4"))
        .await
        .unwrap();
    assert_eq!(
        expect_err(acme_admin_key.list_members(&tid("globex")).await).0,
        404
    );
    // Operators manage tenants but never their people; only admins disable users.
    let operator = admin
        .create_platform_key(&CreatePlatformKey {
            name: "ops".into(),
            role: PlatformRole::Operator,
            expires_in: None,
        })
        .await
        .unwrap();
    let operator = env.server.client(&operator.key);
    assert_eq!(expect_err(operator.list_members(&tid("acme")).await).0, 403);
    assert_eq!(
        expect_err(operator.set_user_disabled(&dave, true).await).0,
        403
    );
    assert_eq!(expect_err(operator.list_users(None).await).0, 403);
    assert_eq!(
        expect_err(
            operator
                .list_records(&items(), &ListRecords::default())
                .await
        )
        .0,
        403
    );
    assert!(operator.list_tenants(None, None).await.is_ok());
    // Bad input names the problem.
    let bad = AddMember {
        issuer: Some("nope".into()),
        sub: Some("s".into()),
        email: None,
        role: MemberRole::Builtin(TenantRole::Member),
    };
    assert_eq!(
        expect_err(admin.add_member(&tid("acme"), &bad).await),
        (400, "unknown_issuer".into())
    );
    let bad = AddMember {
        issuer: None,
        sub: None,
        email: Some("not-an-email".into()),
        role: MemberRole::Builtin(TenantRole::Member),
    };
    assert_eq!(
        expect_err(admin.add_member(&tid("acme"), &bad).await),
        (400, "invalid_email".into())
    );
    assert_eq!(
        expect_err(
            admin
                .add_member(&tid("acme"), &add_as("ghost-role", "x5"))
                .await
        ),
        (400, "unknown_role".into())
    );
    assert_eq!(
        expect_err(
            admin
                .add_member(&tid("acme"), &add_as("member", "mia"))
                .await
        ),
        (409, "already_member".into())
    );
    // Every membership change is audited.
    let audited = crate::common::audit_rows(&env.server.data_dir, |r| r.1.starts_with("member."));
    assert!(audited.len() >= 8, "{audited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_on_one_server_reaches_every_server_sharing_the_catalog() {
    let Some(pg) = bulkhead_pg_testkit::require("access_shared_catalog") else {
        return;
    };
    pg.psql("postgres", "CREATE DATABASE bulkhead").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let idp = idp::Idp::generate(dir.path());
    let config = dir.path().join("bulkhead.toml");
    std::fs::write(&config, idp.config()).unwrap();
    let url = pg.url("bulkhead");
    let env = [
        ("BULKHEAD_CATALOG", url.as_str()),
        ("BULKHEAD_CONFIG", config.to_str().unwrap()),
    ];
    let servers: Vec<crate::common::Server> = ["a", "b"]
        .iter()
        .map(|side| {
            std::fs::create_dir_all(dir.path().join(side)).unwrap();
            crate::common::Server::start_with(&dir.path().join(side), &env)
        })
        .collect();
    let (a, b) = (&servers[0], &servers[1]);
    let admin = a.admin();
    put_items(&admin).await;
    create_tenant(&admin, "acme", "free").await;
    let alice = add(&admin, "acme", "alice", "member").await;
    let jwt = idp.token("alice", json!({}));
    // Served (and cached) on b; a tenant token minted on a works on b (one token secret).
    let on_b = b.client(&jwt);
    on_b.create_record(&items(), &json!({"title": "from b"}))
        .await
        .unwrap();
    let token = a
        .client(&jwt)
        .mint_token(&bulkhead_api::MintToken {
            collections: None,
            actions: vec![bulkhead_core::permissions::Action::Read],
            rule: None,
            expires_in: Some(60),
        })
        .await
        .unwrap()
        .token;
    assert!(
        b.client(&token)
            .list_records(&items(), &ListRecords::default())
            .await
            .is_ok()
    );
    // Removed on a: b refuses within moments, for the JWT and the token alike.
    admin.remove_member(&tid("acme"), &alice).await.unwrap();
    let start = std::time::Instant::now();
    loop {
        let user = on_b.list_records(&items(), &ListRecords::default()).await;
        let token = b
            .client(&token)
            .list_records(&items(), &ListRecords::default())
            .await;
        if let (Err(user), Err(_)) = (&user, &token) {
            assert_eq!(user.status(), Some(404));
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(3),
            "server b still serves a removed member"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
