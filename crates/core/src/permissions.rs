//! What a tenant role may do with records: actions per collection, record rules
//! (document-level security) and hidden fields (field-level security), capped by the tier's
//! ceiling and narrowed by a tenant token.
//!
//! A [`Grant`] is everything the access layer decided about one request; the catalog asks it
//! for the [`Permission`] on the collection at hand. A `Permission` then does four things:
//! refuses actions the role lacks ([`Permission::require`]), compiles the record rules into
//! one predicate that reads, counts, aggregations and searches are ANDed with
//! ([`Permission::rule`]), gives the collection as this role may see it, hidden fields removed,
//! to type the caller's filter, sort, projection and aggregation against
//! ([`Permission::view`]: a hidden field is then simply an unknown field, so there is no
//! oracle), and strips hidden fields from every record returned ([`Permission::redact`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ids::{CollectionName, FieldName, RoleName};
use crate::query::ast::Expr;
use crate::query::vars::{UserVars, bind};
use crate::query::{self, Column, Predicate, SystemField};
use crate::record::Record;
use crate::roles::TenantRole;
use crate::schema::Collection;

/// What a request does with a collection's records.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Read,
    Create,
    Update,
    Delete,
    Aggregate,
    /// Reading a collection out in bulk (`GET …/records:export`).
    Export,
}

pub const ALL_ACTIONS: [Action; 6] = [
    Action::Read,
    Action::Create,
    Action::Update,
    Action::Delete,
    Action::Aggregate,
    Action::Export,
];

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Aggregate => "aggregate",
            Action::Export => "export",
        }
    }

    pub fn is_write(self) -> bool {
        matches!(self, Action::Create | Action::Update | Action::Delete)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        ALL_ACTIONS
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                Error::bad_request(
                    "invalid_action",
                    format!(
                        "unknown action {s:?}; expected read, create, update, delete, aggregate \
                         or export"
                    ),
                )
            })
    }
}

/// Longest record rule accepted.
pub const MAX_RULE_BYTES: usize = 2048;
/// Most collection entries in one custom role.
pub const MAX_ROLE_ENTRIES: usize = 64;

/// What a custom role may do on one collection (or, under the key `*`, on every collection
/// without an entry of its own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectionGrant {
    pub actions: BTreeSet<Action>,
    /// A filter in the query language, may use `@user.id`, `@user.email`, `@user.claims.*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub hidden_fields: BTreeSet<FieldName>,
}

/// A tenant's custom role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    #[serde(default)]
    pub description: String,
    /// Collection name (or `*`) → what the role may do there.
    pub collections: BTreeMap<String, CollectionGrant>,
}

/// Checks a record rule's syntax (it is typed against the collection at each use, since the
/// collection may change).
pub fn parse_rule(rule: &str) -> Result<Expr, Error> {
    if rule.len() > MAX_RULE_BYTES {
        return Err(Error::bad_request(
            "invalid_rule",
            format!("a record rule is at most {MAX_RULE_BYTES} bytes"),
        ));
    }
    query::parse::parse_filter(rule).map_err(|e| Error::bad_request("invalid_rule", e.message))
}

impl RoleSpec {
    pub fn validate(&self) -> Result<(), Error> {
        if self.description.len() > 500 {
            return Err(Error::bad_request(
                "invalid_role",
                "description is at most 500 bytes",
            ));
        }
        if self.collections.is_empty() || self.collections.len() > MAX_ROLE_ENTRIES {
            return Err(Error::bad_request(
                "invalid_role",
                format!("a role names 1 to {MAX_ROLE_ENTRIES} collections (or \"*\")"),
            ));
        }
        for (name, grant) in &self.collections {
            if name != "*" {
                CollectionName::parse(name)?;
            }
            if let Some(rule) = &grant.rule {
                parse_rule(rule).map_err(|e| {
                    Error::bad_request("invalid_rule", format!("rule for '{name}': {}", e.message))
                })?;
            }
        }
        Ok(())
    }

    fn grant_for(&self, collection: &CollectionName) -> Option<&CollectionGrant> {
        self.collections
            .get(collection.as_str())
            .or_else(|| self.collections.get("*"))
    }
}

/// What a tier allows at most, whatever its tenants' roles say (like an AWS SCP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Ceiling {
    /// Actions no credential of this tier's tenants may perform.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub forbid: BTreeSet<Action>,
    /// Whether tenants may define and use custom roles.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub custom_roles: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Default for Ceiling {
    fn default() -> Self {
        Ceiling {
            forbid: BTreeSet::new(),
            custom_roles: true,
        }
    }
}

impl Ceiling {
    pub fn is_default(&self) -> bool {
        *self == Ceiling::default()
    }
}

/// A member's or key's role in a tenant: built in, or one of the tenant's custom roles.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MemberRole {
    Builtin(TenantRole),
    Custom(RoleName),
}

impl MemberRole {
    pub fn parse(raw: &str) -> Result<MemberRole, Error> {
        match raw.parse::<TenantRole>() {
            Ok(role) => Ok(MemberRole::Builtin(role)),
            Err(_) => RoleName::parse(raw).map(MemberRole::Custom).map_err(|_| {
                Error::bad_request(
                    "invalid_role",
                    format!(
                        "{raw:?} is neither a built-in role (owner, admin, member, viewer) nor a \
                         valid custom role name"
                    ),
                )
            }),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            MemberRole::Builtin(role) => role.as_str(),
            MemberRole::Custom(name) => name.as_str(),
        }
    }

    /// Owners and admins manage the tenant's members, keys and roles.
    pub fn manages_tenant(&self) -> bool {
        matches!(self, MemberRole::Builtin(r) if *r >= TenantRole::Admin)
    }
}

impl fmt::Display for MemberRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for MemberRole {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MemberRole {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        MemberRole::parse(&raw).map_err(|e| serde::de::Error::custom(e.message))
    }
}

/// Actions of the built-in roles, on every collection.
pub fn builtin_actions(role: TenantRole) -> BTreeSet<Action> {
    match role {
        TenantRole::Viewer => [Action::Read, Action::Aggregate, Action::Export].into(),
        TenantRole::Member | TenantRole::Admin | TenantRole::Owner => ALL_ACTIONS.into(),
    }
}

/// How a tenant token narrows its parent credential.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Narrowing {
    /// `None`: every collection the parent may use.
    pub collections: Option<BTreeSet<CollectionName>>,
    pub actions: BTreeSet<Action>,
    pub rule: Option<String>,
}

/// Everything the access layer decided about one request's rights in its tenant.
#[derive(Debug, Clone)]
pub struct Grant {
    pub role: MemberRole,
    /// The custom role's definition, when `role` is custom (`None` if it no longer exists).
    pub custom: Option<Arc<RoleSpec>>,
    pub ceiling: Ceiling,
    pub narrowing: Option<Arc<Narrowing>>,
    /// Values for `@user.*` (empty for API keys).
    pub user: Arc<UserVars>,
    /// Platform admins reach data unrestricted (and audited).
    pub unrestricted: bool,
}

impl Grant {
    /// Full rights: platform admins (audited) and the control plane's own move executor.
    pub fn unrestricted() -> Grant {
        Grant {
            role: MemberRole::Builtin(TenantRole::Owner),
            custom: None,
            ceiling: Ceiling::default(),
            narrowing: None,
            user: Arc::new(UserVars::default()),
            unrestricted: true,
        }
    }

    /// What this grant allows on `collection`.
    pub fn permission(&self, collection: &CollectionName) -> Permission {
        let mut p = Permission {
            collection: collection.clone(),
            actions: BTreeSet::new(),
            rules: Vec::new(),
            hidden: BTreeSet::new(),
            user: self.user.clone(),
            why: None,
        };
        if self.unrestricted {
            p.actions = ALL_ACTIONS.into();
            return p;
        }
        match &self.role {
            MemberRole::Builtin(role) => p.actions = builtin_actions(*role),
            MemberRole::Custom(name) if !self.ceiling.custom_roles => {
                p.why = Some(format!(
                    "custom role '{name}' is not allowed by this tenant's tier"
                ));
                return p;
            }
            MemberRole::Custom(name) => {
                match self.custom.as_deref().and_then(|s| s.grant_for(collection)) {
                    Some(grant) => {
                        p.actions = grant.actions.clone();
                        p.rules.extend(grant.rule.clone());
                        p.hidden = grant.hidden_fields.clone();
                    }
                    None => {
                        p.why = Some(format!("role '{name}' has no access to '{collection}'"));
                        return p;
                    }
                }
            }
        }
        let forbidden: Vec<Action> = p
            .actions
            .intersection(&self.ceiling.forbid)
            .copied()
            .collect();
        for action in forbidden {
            p.actions.remove(&action);
        }
        if let Some(narrow) = &self.narrowing {
            if narrow
                .collections
                .as_ref()
                .is_some_and(|c| !c.contains(collection))
            {
                p.actions.clear();
                p.why = Some(format!("this token does not cover '{collection}'"));
                return p;
            }
            p.actions = p.actions.intersection(&narrow.actions).copied().collect();
            p.rules.extend(narrow.rule.clone());
        }
        p
    }
}

/// What one request may do on one collection.
#[derive(Debug, Clone)]
pub struct Permission {
    collection: CollectionName,
    actions: BTreeSet<Action>,
    rules: Vec<String>,
    hidden: BTreeSet<FieldName>,
    user: Arc<UserVars>,
    why: Option<String>,
}

impl Permission {
    pub fn actions(&self) -> &BTreeSet<Action> {
        &self.actions
    }

    pub fn has_rule(&self) -> bool {
        !self.rules.is_empty()
    }

    pub fn allows(&self, action: Action) -> bool {
        self.actions.contains(&action)
    }

    /// `403 forbidden` naming the action and collection when the action is not allowed.
    pub fn require(&self, action: Action) -> Result<(), Error> {
        if self.allows(action) {
            return Ok(());
        }
        let why = self.why.clone().unwrap_or_else(|| {
            format!(
                "this credential may not {action} records in '{}'",
                self.collection
            )
        });
        Err(Error::forbidden("forbidden", why))
    }

    /// Whether neither a record rule nor a hidden field applies.
    pub fn is_plain(&self) -> bool {
        self.rules.is_empty() && self.hidden.is_empty()
    }

    pub fn hidden(&self) -> &BTreeSet<FieldName> {
        &self.hidden
    }

    /// Whether `rule`, a narrowing asked for a token of this caller, fits `collection` as it
    /// is now (typed as [`Permission::rule`] types it at each use): a rule that would refuse
    /// every use of the token is `400 invalid_rule` when the token is asked for.
    pub fn check_rule(&self, rule: &str, collection: &Collection) -> Result<(), Error> {
        let expr = parse_rule(rule)?;
        let Some(bound) = bind(&expr, &self.user) else {
            return Ok(());
        };
        query::check::check_filter(&bound, collection)
            .map(|_| ())
            .map_err(|e| {
                Error::bad_request(
                    "invalid_rule",
                    format!(
                        "the rule does not fit collection '{}': {}",
                        collection.name, e.message
                    ),
                )
            })
    }

    /// The record rules, bound to the caller and typed against the full collection (a rule
    /// may read fields the role cannot see), as one predicate. `None` when no rule applies.
    /// A rule whose variables have no value for this caller matches nothing; a rule that no
    /// longer fits the collection refuses the request (fail closed).
    pub fn rule(&self, collection: &Collection) -> Result<Option<Predicate>, Error> {
        let mut parts = Vec::with_capacity(self.rules.len());
        for rule in &self.rules {
            let expr = parse_rule(rule).map_err(|e| broken_rule(collection, &e.message))?;
            let Some(bound) = bind(&expr, &self.user) else {
                return Ok(Some(match_nothing()));
            };
            let predicate = query::check::check_filter(&bound, collection)
                .map_err(|e| broken_rule(collection, &e.message))?;
            parts.push(predicate);
        }
        Ok(match parts.len() {
            0 => None,
            1 => parts.pop(),
            _ => Some(Predicate::And(parts)),
        })
    }

    /// The collection as this permission sees it: hidden fields removed. Callers' filters,
    /// sorts, projections, aggregations and writes are checked against this view.
    pub fn view(&self, collection: &Collection) -> Collection {
        let mut view = collection.clone();
        view.fields.retain(|name, _| !self.hidden.contains(name));
        view
    }

    /// Removes hidden fields from a record about to be returned.
    pub fn redact(&self, record: &mut Record) {
        if !self.hidden.is_empty() {
            record.fields.retain(|name, _| !self.hidden.contains(name));
        }
    }
}

/// `!(id exists)`: `id` always exists, so this holds for no record.
pub fn match_nothing() -> Predicate {
    Predicate::Not(Box::new(Predicate::Exists(query::Operand::Column(
        Column::System(SystemField::Id),
    ))))
}

fn broken_rule(collection: &Collection, why: &str) -> Error {
    Error::forbidden(
        "invalid_rule",
        format!(
            "this role's record rule does not fit collection '{}' ({why}); an admin must fix \
             the role",
            collection.name
        ),
    )
}

/// Combines a caller's filter with the rule predicate: both must hold.
pub fn and(filter: Option<Predicate>, rule: Option<Predicate>) -> Option<Predicate> {
    match (filter, rule) {
        (None, r) => r,
        (f, None) => f,
        (Some(Predicate::And(mut parts)), Some(r)) => {
            parts.push(r);
            Some(Predicate::And(parts))
        }
        (Some(f), Some(r)) => Some(Predicate::And(vec![f, r])),
    }
}

#[cfg(test)]
#[path = "permissions_tests.rs"]
mod tests;
