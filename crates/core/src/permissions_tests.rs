use super::*;
use crate::query::eval;
use crate::record::{FieldValue, Fields};
use crate::schema::{FieldSpec, FieldType};
use crate::time::Timestamp;

fn collection() -> Collection {
    let mut fields = BTreeMap::new();
    for (name, ty) in [
        ("owner", FieldType::String),
        ("salary", FieldType::Integer),
        ("title", FieldType::Text),
    ] {
        let spec: FieldSpec = serde_json::from_value(serde_json::json!({"type": ty})).unwrap();
        fields.insert(FieldName::parse(name).unwrap(), spec);
    }
    Collection {
        name: CollectionName::parse("items").unwrap(),
        version: 1,
        fields,
    }
}

fn record(owner: &str) -> Record {
    let mut fields = Fields::new();
    fields.insert(
        FieldName::parse("owner").unwrap(),
        FieldValue::Text(owner.into()),
    );
    fields.insert(FieldName::parse("salary").unwrap(), FieldValue::Integer(9));
    Record {
        id: crate::RecordId::parse("r1").unwrap(),
        created_at: Timestamp::from_micros(0),
        updated_at: Timestamp::from_micros(0),
        version: 1,
        fields,
    }
}

fn spec(json: serde_json::Value) -> Arc<RoleSpec> {
    let spec: RoleSpec = serde_json::from_value(json).unwrap();
    spec.validate().unwrap();
    Arc::new(spec)
}

fn grant(role: MemberRole, custom: Option<Arc<RoleSpec>>, user: Option<&str>) -> Grant {
    Grant {
        role,
        custom,
        ceiling: Ceiling::default(),
        narrowing: None,
        user: Arc::new(UserVars {
            id: user.map(str::to_owned),
            ..UserVars::default()
        }),
        unrestricted: false,
    }
}

fn items() -> CollectionName {
    CollectionName::parse("items").unwrap()
}

#[test]
fn builtin_roles_and_the_ceiling() {
    let mut g = grant(MemberRole::Builtin(TenantRole::Viewer), None, None);
    let p = g.permission(&items());
    assert!(p.allows(Action::Read) && !p.allows(Action::Create));
    assert_eq!(p.require(Action::Delete).unwrap_err().code, "forbidden");
    g.role = MemberRole::Builtin(TenantRole::Owner);
    g.ceiling.forbid = [Action::Export, Action::Delete].into();
    let p = g.permission(&items());
    assert!(p.allows(Action::Create));
    assert!(!p.allows(Action::Export) && !p.allows(Action::Delete));
}

#[test]
fn custom_roles_give_rules_and_hidden_fields_per_collection() {
    let role = spec(serde_json::json!({"collections": {
        "items": {"actions": ["read", "update"], "rule": "owner = @user.id", "hidden_fields": ["salary"]},
        "*": {"actions": ["read"]}
    }}));
    let name = MemberRole::Custom(RoleName::parse("sales").unwrap());
    let g = grant(name.clone(), Some(role.clone()), Some("u1"));
    let p = g.permission(&items());
    assert!(p.allows(Action::Update) && !p.allows(Action::Delete));
    let rule = p.rule(&collection()).unwrap().unwrap();
    assert!(eval::matches(&rule, &record("u1")));
    assert!(!eval::matches(&rule, &record("u2")));
    let view = p.view(&collection());
    assert!(
        !view
            .fields
            .contains_key(&FieldName::parse("salary").unwrap())
    );
    let mut r = record("u1");
    p.redact(&mut r);
    assert!(!r.fields.contains_key(&FieldName::parse("salary").unwrap()));
    // Another collection falls back to `*`.
    let other = g.permission(&CollectionName::parse("notes").unwrap());
    assert!(other.allows(Action::Read) && other.is_plain());
    // A key (no user) under the same rule sees nothing, even through a negation.
    let keyed = grant(name.clone(), Some(role), None);
    let rule = keyed
        .permission(&items())
        .rule(&collection())
        .unwrap()
        .unwrap();
    assert!(!eval::matches(&rule, &record("u1")));
    // The tier may forbid custom roles altogether.
    let mut capped = grant(
        name,
        Some(spec(
            serde_json::json!({"collections": {"*": {"actions": ["read"]}}}),
        )),
        None,
    );
    capped.ceiling.custom_roles = false;
    assert!(capped.permission(&items()).require(Action::Read).is_err());
}

#[test]
fn tokens_only_narrow() {
    let mut g = grant(MemberRole::Builtin(TenantRole::Viewer), None, Some("u1"));
    g.narrowing = Some(Arc::new(Narrowing {
        collections: Some([items()].into()),
        actions: [Action::Read, Action::Create, Action::Delete].into(),
        rule: Some("owner = \"u1\"".into()),
    }));
    let p = g.permission(&items());
    assert!(p.allows(Action::Read));
    assert!(
        !p.allows(Action::Create),
        "a token cannot add what its parent lacks"
    );
    assert!(p.rule(&collection()).unwrap().is_some());
    let other = g.permission(&CollectionName::parse("notes").unwrap());
    assert!(!other.allows(Action::Read));
}

#[test]
fn role_specs_are_validated() {
    for bad in [
        serde_json::json!({"collections": {}}),
        serde_json::json!({"collections": {"Bad Name": {"actions": ["read"]}}}),
        serde_json::json!({"collections": {"items": {"actions": ["read"], "rule": "owner = "}}}),
    ] {
        let spec: RoleSpec = serde_json::from_value(bad).unwrap();
        assert!(spec.validate().is_err());
    }
    assert!(
        serde_json::from_value::<RoleSpec>(
            serde_json::json!({"collections": {"items": {"actions": ["fly"]}}})
        )
        .is_err()
    );
    assert!(MemberRole::parse("owner").is_ok());
    assert!(matches!(
        MemberRole::parse("sales").unwrap(),
        MemberRole::Custom(_)
    ));
    assert!(MemberRole::parse("Bad!").is_err());
}

#[test]
fn a_rule_that_no_longer_fits_fails_closed() {
    let role = spec(
        serde_json::json!({"collections": {"items": {"actions": ["read"], "rule": "gone = 1"}}}),
    );
    let g = grant(
        MemberRole::Custom(RoleName::parse("r1").unwrap()),
        Some(role),
        Some("u"),
    );
    let err = g.permission(&items()).rule(&collection()).unwrap_err();
    assert_eq!(err.code, "invalid_rule");
}
