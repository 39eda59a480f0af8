use super::*;
use crate::ids::{DomainName, Incarnation};
use crate::model::Isolation;

const AUTH: AccessAuthority = AccessAuthority::for_tests();

fn principal(owner: KeyOwner) -> VerifiedPrincipal {
    let key = keys::generate().unwrap();
    let stored = StoredKey {
        id: key.id,
        secret_hash: key.secret_hash,
        owner,
        expires_at: None,
        revoked: false,
        incarnation: Some(Incarnation::legacy()),
    };
    let (_, secret) = keys::parse_token(&key.token).unwrap();
    verify_key(&AUTH, secret, &stored, Timestamp::from_micros(0)).unwrap()
}

fn route(tenant: &str, status: TenantStatus) -> TenantRoute {
    TenantRoute {
        tenant: TenantId::parse(tenant).unwrap(),
        tier: TierName::parse("free").unwrap(),
        status,
        placement: Placement {
            domain: DomainName::parse("local").unwrap(),
            isolation: Isolation::Pool,
            namespace: "pool".into(),
            write_state: WriteState::Open,
            epoch: 1,
            schema_version: 0,
            incarnation: Incarnation::legacy(),
        },
    }
}

#[test]
fn a_key_of_an_earlier_life_of_the_tenant_reaches_nothing_of_a_later_one() {
    let acme = TenantId::parse("acme").unwrap();
    let old = principal(KeyOwner::Tenant(acme.clone(), TenantRole::Owner));
    let mut reborn = route("acme", TenantStatus::Active);
    reborn.placement.incarnation = Incarnation::generate();
    for action in [DataAction::Read, DataAction::Write] {
        let err = authorize_data(&AUTH, &old, &reborn, action, RoleFacts::default()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotFound);
    }
    let err = authorize_tenant_admin(&old, &acme, &reborn.placement.incarnation, None).unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    // The same key in its own life is accepted, and its scope names the legacy storage.
    let scope = authorize_data(
        &AUTH,
        &old,
        &route("acme", TenantStatus::Active),
        DataAction::Read,
        RoleFacts::default(),
    )
    .unwrap();
    assert_eq!(scope.storage_key().as_str(), "acme");
}

#[test]
fn a_tenant_key_never_reaches_another_tenant() {
    let acme = TenantId::parse("acme").unwrap();
    let p = principal(KeyOwner::Tenant(acme.clone(), TenantRole::Owner));
    let err = authorize_data(
        &AUTH,
        &p,
        &route("globex", TenantStatus::Active),
        DataAction::Read,
        RoleFacts::default(),
    )
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    let other = TenantId::parse("globex").unwrap();
    assert_eq!(
        data_tenant(&p, Some(&other), &[]).unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert_eq!(
        authorize_tenant_admin(&p, &other, &Incarnation::legacy(), None)
            .unwrap_err()
            .kind,
        ErrorKind::NotFound
    );
    assert!(
        authorize_data(
            &AUTH,
            &p,
            &route("acme", TenantStatus::Active),
            DataAction::Write,
            RoleFacts::default()
        )
        .is_ok()
    );
}

#[test]
fn roles_and_status_gate_writes() {
    let acme = TenantId::parse("acme").unwrap();
    let viewer = principal(KeyOwner::Tenant(acme.clone(), TenantRole::Viewer));
    assert!(
        authorize_data(
            &AUTH,
            &viewer,
            &route("acme", TenantStatus::Active),
            DataAction::Read,
            RoleFacts::default()
        )
        .is_ok()
    );
    assert_eq!(
        authorize_data(
            &AUTH,
            &viewer,
            &route("acme", TenantStatus::Active),
            DataAction::Write,
            RoleFacts::default()
        )
        .unwrap_err()
        .code,
        "forbidden"
    );
    let member = principal(KeyOwner::Tenant(acme, TenantRole::Member));
    assert_eq!(
        authorize_data(
            &AUTH,
            &member,
            &route("acme", TenantStatus::Suspended),
            DataAction::Write,
            RoleFacts::default()
        )
        .unwrap_err()
        .code,
        "tenant_suspended"
    );
    assert!(
        authorize_data(
            &AUTH,
            &member,
            &route("acme", TenantStatus::Suspended),
            DataAction::Read,
            RoleFacts::default()
        )
        .is_ok()
    );
}

#[test]
fn platform_roles_reach_data_only_as_admin_and_only_by_name() {
    let admin = principal(KeyOwner::Platform(PlatformRole::Admin));
    assert_eq!(
        data_tenant(&admin, None, &[]).unwrap_err().code,
        "tenant_required"
    );
    let scope = authorize_data(
        &AUTH,
        &admin,
        &route("acme", TenantStatus::Active),
        DataAction::Read,
        RoleFacts::default(),
    )
    .unwrap();
    assert!(scope.is_platform_admin_access());
    let operator = principal(KeyOwner::Platform(PlatformRole::Operator));
    assert_eq!(
        authorize_data(
            &AUTH,
            &operator,
            &route("acme", TenantStatus::Active),
            DataAction::Read,
            RoleFacts::default()
        )
        .unwrap_err()
        .kind,
        ErrorKind::Forbidden
    );
    assert!(authorize_control(&operator, ControlAction::ManagePlatformKeys).is_err());
    assert!(authorize_control(&operator, ControlAction::ManageDomains).is_err());
    assert!(authorize_control(&operator, ControlAction::ReadCatalog).is_ok());
    assert!(authorize_control(&admin, ControlAction::ManageDomains).is_ok());
}

#[test]
fn expired_and_revoked_keys_are_rejected() {
    let key = keys::generate().unwrap();
    let (_, secret) = keys::parse_token(&key.token).unwrap();
    let mut stored = StoredKey {
        id: key.id,
        secret_hash: key.secret_hash,
        owner: KeyOwner::Platform(PlatformRole::Admin),
        expires_at: Some(Timestamp::from_micros(10)),
        revoked: false,
        incarnation: None,
    };
    assert_eq!(
        verify_key(&AUTH, secret, &stored, Timestamp::from_micros(10)).unwrap_err(),
        Rejection::Expired
    );
    stored.expires_at = None;
    stored.revoked = true;
    assert_eq!(
        verify_key(&AUTH, secret, &stored, Timestamp::from_micros(10)).unwrap_err(),
        Rejection::Revoked
    );
}
