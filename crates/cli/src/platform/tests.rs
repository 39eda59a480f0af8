//! The platform file's parsing and the plan's checks, without a server.

use super::*;

fn env(name: &str) -> Option<String> {
    (name == "EAST_URL").then(|| "postgres://bk:s3cret@east:5432/bk".to_owned())
}

#[test]
fn secrets_come_from_the_environment_and_a_missing_one_is_named() {
    let text = r#"
        [domains.east]
        engine = "postgres"
        url = "${EAST_URL}"
        silos = true
    "#;
    let platform = Platform::parse(text, &env).unwrap();
    let east = &platform.domains[&DomainName::parse("east").unwrap()];
    assert_eq!(
        east.url.as_ref().unwrap().expose(),
        "postgres://bk:s3cret@east:5432/bk"
    );
    let missing = Platform::parse(&text.replace("EAST_URL", "WEST_URL"), &env).unwrap_err();
    assert!(format!("{missing:#}").contains("WEST_URL"), "{missing:#}");
    let bad = Platform::parse(&text.replace("${EAST_URL}", "${EAST"), &env).unwrap_err();
    assert!(format!("{bad:#}").contains("unclosed"), "{bad:#}");
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let err =
        Platform::parse("[tiers.free]\nisolation = \"pool\"\ncolour = 1\n", &env).unwrap_err();
    assert!(format!("{err:#}").contains("colour"), "{err:#}");
    let err = Platform::parse("[webhooks.x]\n", &env).unwrap_err();
    assert!(format!("{err:#}").contains("webhooks"), "{err:#}");
}

fn empty_live() -> Live {
    Live {
        tiers: BTreeMap::new(),
        domains: BTreeMap::new(),
        collections: BTreeMap::new(),
        tenants: BTreeMap::new(),
        webhooks: BTreeMap::new(),
    }
}

fn refusals(text: &str) -> Vec<(String, String)> {
    let declared = Platform::parse(text, &env).unwrap();
    plan(&declared, &empty_live())
        .into_iter()
        .filter(|i| i.action == Action::Refused)
        .map(|i| (format!("{} {}", i.kind, i.name), i.detail))
        .collect()
}

/// What the server would refuse is refused by the plan, so `apply` stops before it
/// changes anything: a retention rule on a field the file declares as text, a webhook
/// event that does not exist, a malformed secret.
#[test]
fn the_plan_refuses_what_the_server_would() {
    let text = r#"
        [tiers.gold]
        isolation = "silo"
        retention.notes = { field = "title", hot_days = 30 }

        [collections.notes.fields]
        title = { type = "text" }
        seen = { type = "timestamp" }

        [webhooks.billing]
        url = "https://hooks.example.com/in"
        events = ["tenant.exploded"]

        [webhooks.Bad]
        url = "https://hooks.example.com/in"
        events = ["*"]

        [webhooks.short]
        url = "https://hooks.example.com/in"
        events = ["*"]
        secret = "whsec_c2hvcnQ="
    "#;
    let refused = refusals(text);
    let names: Vec<&str> = refused.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "webhook Bad",
            "webhook billing",
            "webhook short",
            "tier gold"
        ],
        "{refused:?}"
    );
    assert!(refused[0].1.contains("a-z"), "{refused:?}");
    assert!(refused[1].1.contains("tenant.exploded"), "{refused:?}");
    assert!(refused[2].1.contains("24 to 64 bytes"), "{refused:?}");
    assert!(
        refused[3].1.contains("title is a text field"),
        "{refused:?}"
    );
    // The same rule on the timestamp field the file declares is fine.
    let fixed = text
        .replace("field = \"title\"", "field = \"seen\"")
        .replace("tenant.exploded", "tenant.created")
        .replace("[webhooks.Bad]", "[webhooks.bad]")
        .replace(
            "whsec_c2hvcnQ=",
            "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3",
        );
    assert_eq!(refusals(&fixed), []);
}

proptest::proptest! {
    /// Text without `${` comes back as it is; any text either substitutes or errors,
    /// never panics.
    #[test]
    fn substitution_never_panics(text in ".{0,80}") {
        let out = substitute(&text, &env);
        if !text.contains("${") {
            proptest::prop_assert_eq!(out.unwrap(), text);
        }
    }
}
