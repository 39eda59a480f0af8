//! `bulkhead member|role|user|token|whoami`: people, custom roles and tenant tokens.

use anyhow::Context;
use bulkhead_api::{AddMember, MemberView, MintToken, RoleView, UserView};
use bulkhead_client::Client;
use bulkhead_core::permissions::{Action, MemberRole, RoleSpec};
use bulkhead_core::{CollectionName, RoleName, TenantId, UserId};
use clap::Subcommand;

use crate::input::load_json_object;
use crate::printer::Printer;

fn role_arg(raw: &str) -> Result<MemberRole, String> {
    MemberRole::parse(raw).map_err(|e| e.message)
}

fn action_arg(raw: &str) -> Result<Action, String> {
    raw.parse::<Action>().map_err(|e| e.message)
}

#[derive(Debug, Clone, Subcommand)]
pub enum MemberCmd {
    /// Add a person to a tenant: by identity provider and subject, or invite by email.
    Add {
        #[arg(value_parser = TenantId::parse)]
        tenant: TenantId,
        /// The issuer's configured name (or its exact `iss`): with --sub, the person's; with
        /// --email, the only issuer whose tokens may claim the invitation (needed when several
        /// are configured).
        #[arg(long)]
        issuer: Option<String>,
        #[arg(long, requires = "issuer")]
        sub: Option<String>,
        /// Invite by email: the first token from the invitation's issuer with this email,
        /// verified (`email_verified: true`), claims it.
        #[arg(long, required_unless_present = "sub")]
        email: Option<String>,
        /// owner, admin, member, viewer or a custom role.
        #[arg(long, value_parser = role_arg)]
        role: MemberRole,
    },
    /// List a tenant's members.
    List {
        #[arg(value_parser = TenantId::parse)]
        tenant: TenantId,
    },
    /// Change a member's role.
    SetRole {
        #[arg(value_parser = TenantId::parse)]
        tenant: TenantId,
        #[arg(value_parser = UserId::parse)]
        user: UserId,
        #[arg(value_parser = role_arg)]
        role: MemberRole,
    },
    /// Remove a member (their requests fail from the next one on).
    Remove {
        #[arg(value_parser = TenantId::parse)]
        tenant: TenantId,
        #[arg(value_parser = UserId::parse)]
        user: UserId,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum RoleCmd {
    /// Create or replace a tenant's custom role from JSON (inline, @file or - for stdin):
    /// {"collections": {"deals": {"actions": ["read"], "rule": "owner = @user.id",
    /// "hidden_fields": ["margin"]}}}
    Put {
        #[arg(value_parser = TenantId::parse)]
        tenant: TenantId,
        #[arg(value_parser = RoleName::parse)]
        name: RoleName,
        spec: String,
    },
    /// List a tenant's custom roles.
    List {
        #[arg(value_parser = TenantId::parse)]
        tenant: TenantId,
    },
    /// Delete a custom role no member holds.
    Delete {
        #[arg(value_parser = TenantId::parse)]
        tenant: TenantId,
        #[arg(value_parser = RoleName::parse)]
        name: RoleName,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum UserCmd {
    /// List users (platform admins), optionally by email.
    List {
        #[arg(long)]
        email: Option<String>,
    },
    /// Disable a user everywhere, at once.
    Disable {
        #[arg(value_parser = UserId::parse)]
        user: UserId,
    },
    /// Re-enable a disabled user.
    Enable {
        #[arg(value_parser = UserId::parse)]
        user: UserId,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum TokenCmd {
    /// Mint a short-lived tenant token narrower than this credential (for a browser).
    Mint {
        /// An action the token allows; repeat for more.
        #[arg(long = "action", value_parser = action_arg, required = true)]
        actions: Vec<Action>,
        /// A collection the token covers; repeat for more (default: all the parent covers).
        #[arg(long = "collection", value_parser = CollectionName::parse)]
        collections: Vec<CollectionName>,
        /// An extra record rule, e.g. 'owner = "u1"'.
        #[arg(long)]
        rule: Option<String>,
        /// Lifetime in seconds (default 600, at most 86400).
        #[arg(long, value_name = "SECONDS")]
        expires_in: Option<u64>,
    },
}

fn members_table(members: &[MemberView]) -> String {
    let mut out = String::from("user               role        status   identity / email\n");
    for m in members {
        let who = match (&m.issuer, &m.sub, &m.email) {
            (Some(i), Some(s), _) => format!("{i} {s}"),
            (_, _, Some(e)) => e.clone(),
            _ => "-".into(),
        };
        let status = if m.disabled { "disabled" } else { &m.status };
        out.push_str(&format!(
            "{:<18} {:<11} {:<8} {who}\n",
            m.user_id, m.role, status
        ));
    }
    out.trim_end().to_owned()
}

fn roles_table(roles: &[RoleView]) -> String {
    let mut out = String::new();
    for r in roles {
        out.push_str(&format!("{}\n", r.name));
        for (collection, grant) in &r.spec.collections {
            let actions: Vec<&str> = grant.actions.iter().map(|a| a.as_str()).collect();
            out.push_str(&format!("  {collection}: {}", actions.join(",")));
            if let Some(rule) = &grant.rule {
                out.push_str(&format!("  rule: {rule}"));
            }
            if !grant.hidden_fields.is_empty() {
                let hidden: Vec<&str> = grant.hidden_fields.iter().map(|f| f.as_str()).collect();
                out.push_str(&format!("  hidden: {}", hidden.join(",")));
            }
            out.push('\n');
        }
    }
    if out.is_empty() {
        "no roles".into()
    } else {
        out.trim_end().to_owned()
    }
}

fn users_table(users: &[UserView]) -> String {
    let mut out = String::new();
    for u in users {
        let tenants: Vec<String> = u
            .memberships
            .iter()
            .map(|m| format!("{}:{}", m.tenant, m.role))
            .collect();
        out.push_str(&format!(
            "{} {} {} {}{}\n",
            u.id,
            u.sub.as_deref().unwrap_or("-"),
            u.email.as_deref().unwrap_or("-"),
            tenants.join(","),
            if u.disabled { " (disabled)" } else { "" }
        ));
    }
    if out.is_empty() {
        "no users".into()
    } else {
        out.trim_end().to_owned()
    }
}

pub(crate) async fn member(client: &Client, out: &Printer, cmd: MemberCmd) -> anyhow::Result<()> {
    match cmd {
        MemberCmd::Add {
            tenant,
            issuer,
            sub,
            email,
            role,
        } => {
            let request = AddMember {
                issuer,
                sub,
                email,
                role,
            };
            out.show(&client.add_member(&tenant, &request).await?, |m| {
                members_table(std::slice::from_ref(m))
            })
        }
        MemberCmd::List { tenant } => out.page(&client.list_members(&tenant).await?, members_table),
        MemberCmd::SetRole { tenant, user, role } => out
            .show(&client.set_member_role(&tenant, &user, role).await?, |m| {
                members_table(std::slice::from_ref(m))
            }),
        MemberCmd::Remove { tenant, user } => {
            client.remove_member(&tenant, &user).await?;
            out.done_as("removed", "member", user.as_str())
        }
    }
}

pub(crate) async fn role(client: &Client, out: &Printer, cmd: RoleCmd) -> anyhow::Result<()> {
    match cmd {
        RoleCmd::Put { tenant, name, spec } => {
            let value = load_json_object(&spec, &mut std::io::stdin())?;
            let spec: RoleSpec = serde_json::from_value(value).context(
                "a role looks like {\"collections\": {\"items\": {\"actions\": [\"read\"]}}}",
            )?;
            out.show(&client.put_role(&tenant, &name, &spec).await?, |r| {
                roles_table(std::slice::from_ref(r))
            })
        }
        RoleCmd::List { tenant } => out.page(&client.list_roles(&tenant).await?, roles_table),
        RoleCmd::Delete { tenant, name } => {
            client.delete_role(&tenant, &name).await?;
            out.done("role", name.as_str())
        }
    }
}

pub(crate) async fn user(client: &Client, out: &Printer, cmd: UserCmd) -> anyhow::Result<()> {
    match cmd {
        UserCmd::List { email } => {
            out.page(&client.list_users(email.as_deref()).await?, users_table)
        }
        UserCmd::Disable { user } => out.show(&client.set_user_disabled(&user, true).await?, |u| {
            users_table(std::slice::from_ref(u))
        }),
        UserCmd::Enable { user } => out.show(&client.set_user_disabled(&user, false).await?, |u| {
            users_table(std::slice::from_ref(u))
        }),
    }
}

pub(crate) async fn token(client: &Client, out: &Printer, cmd: TokenCmd) -> anyhow::Result<()> {
    let TokenCmd::Mint {
        actions,
        collections,
        rule,
        expires_in,
    } = cmd;
    let request = MintToken {
        collections: (!collections.is_empty()).then_some(collections),
        actions,
        rule,
        expires_in,
    };
    out.show(&client.mint_token(&request).await?, |t| {
        format!(
            "{}\n(tenant {}, expires {})",
            t.token, t.tenant, t.expires_at
        )
    })
}

pub(crate) async fn whoami(client: &Client, out: &Printer) -> anyhow::Result<()> {
    out.show(&client.me().await?, |me| {
        let tenants: Vec<String> = me
            .memberships
            .iter()
            .map(|m| format!("{}:{}", m.tenant, m.role))
            .collect();
        format!("{} ({}) {}", me.actor, me.kind, tenants.join(", "))
    })
}
