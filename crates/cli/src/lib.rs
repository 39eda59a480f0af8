//! The operator CLI: `bulkhead tenant|tier|domain|collection|key|platform-key|record ...`.
//!
//! The binary parses [`ClientOptions`] and a [`ClientCommand`] with clap and calls [`run`],
//! which talks to a running server through `bulkhead-client` and prints a table (or JSON with
//! `--json`). Server errors are shown as the server's human message and code, never as a debug
//! dump. Credentials come from `--token`/`BULKHEAD_TOKEN`, or else from the platform admin key
//! that `bulkhead serve` stores in `<data-dir>/admin.key`, so an operator on the server's own
//! machine needs no setup.

mod archive;
mod args;
mod audit;
mod cold;
mod commands;
mod cost;
mod doctor;
mod import;
mod input;
mod members;
mod moves;
mod output;
mod placement;
mod platform;
mod printer;
mod rollouts;
mod secops;
mod usage;
mod watch;

use std::path::Path;

use anyhow::{Context, bail};
use bulkhead_client::{Client, ClientError};

pub use args::{
    ClientCommand, ClientOptions, CollectionCmd, DomainCmd, IsolationArg, KeyCmd, ListArgs,
    PlatformKeyCmd, PlatformRoleArg, RecordCmd, TenantCmd, TenantRoleArg, TierCmd,
};
pub use input::FieldArg;

/// Name of the file, inside the data directory, holding the platform admin key.
pub const ADMIN_KEY_FILE: &str = "admin.key";

/// Runs one command against the server named by `options` and prints its result.
pub async fn run(options: &ClientOptions, command: ClientCommand) -> anyhow::Result<()> {
    // An export is checked offline: no server, no credential.
    if let ClientCommand::Audit(audit::AuditCmd::Verify {
        head,
        file: Some(file),
    }) = &command
    {
        let out = printer::Printer { json: options.json };
        return audit::verify_file(&out, file, head.clone());
    }
    let client = connect(options)?;
    commands::execute(&client, options.json, command)
        .await
        .map_err(|err| {
            let unreachable = matches!(
                err.downcast_ref::<ClientError>(),
                Some(ClientError::Transport(_))
            );
            if unreachable {
                err.context(format!(
                    "cannot reach the Bulkhead server at {}; is `bulkhead serve` running there? \
                 (set --url or BULKHEAD_URL)",
                    options.url
                ))
            } else {
                err
            }
        })
}

/// The client the options describe: URL, credential and, for a platform admin, the tenant.
pub fn connect(options: &ClientOptions) -> anyhow::Result<Client> {
    let token = resolve_token(options.token.as_deref(), &options.data_dir_or_default())?;
    let ca = match &options.ca_cert {
        Some(path) => std::fs::read(path)
            .with_context(|| format!("reading the CA certificates {}", path.display()))?,
        None => Vec::new(),
    };
    let client = Client::new_trusting(&options.url, token, &ca)?;
    Ok(match &options.tenant {
        Some(tenant) => client.with_tenant(tenant.clone()),
        None => client,
    })
}

/// `--token`/`BULKHEAD_TOKEN` when given, else the admin key the server wrote at first start.
fn resolve_token(token: Option<&str>, data_dir: &Path) -> anyhow::Result<String> {
    match token.map(str::trim) {
        Some("") => bail!(
            "BULKHEAD_TOKEN (or --token) is set but empty; give the credential, or unset it to \
             use the admin key file (an empty value never falls back to the admin key)"
        ),
        Some(token) => return Ok(token.to_owned()),
        None => {}
    }
    let path = data_dir.join(ADMIN_KEY_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => bail!(
            "no credentials: set BULKHEAD_TOKEN (or --token), or run where the server's data \
             directory is (--data-dir or BULKHEAD_DATA_DIR; {} does not exist)",
            path.display()
        ),
        Err(err) => {
            return Err(err)
                .with_context(|| format!("cannot read the admin key {}", path.display()));
        }
    };
    let token = text.trim();
    if token.is_empty() {
        bail!(
            "the admin key file {} is empty; set BULKHEAD_TOKEN instead",
            path.display()
        );
    }
    Ok(token.to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(flatten)]
        options: ClientOptions,
        #[command(subcommand)]
        command: ClientCommand,
    }

    fn parse(line: &str) -> Result<TestCli, clap::Error> {
        TestCli::try_parse_from(std::iter::once("bulkhead").chain(line.split_whitespace()))
    }

    #[test]
    fn the_command_tree_is_consistent() {
        use clap::CommandFactory;
        TestCli::command().debug_assert();
    }

    #[test]
    fn tenant_commands_parse_with_labels_and_global_options_after_the_subcommand() {
        let cli = parse(
            "tenant create acme --name Acme --tier free --label region=eu --label plan=pro \
             --json --url http://h:1 --token t",
        )
        .unwrap();
        assert!(cli.options.json);
        assert_eq!(cli.options.url, "http://h:1");
        assert_eq!(cli.options.token.as_deref(), Some("t"));
        let ClientCommand::Tenant(TenantCmd::Create {
            id, tier, labels, ..
        }) = cli.command
        else {
            panic!("wrong command");
        };
        assert_eq!(id.as_str(), "acme");
        assert_eq!(tier.as_str(), "free");
        assert_eq!(labels.len(), 2);

        let ClientCommand::Tenant(TenantCmd::List(listed)) =
            parse("tenant list --limit 5").unwrap().command
        else {
            panic!("wrong command");
        };
        assert!(matches!(listed.page, ListArgs { limit: Some(5), .. }));
        assert_eq!(listed.search, None);
        let ClientCommand::Tenant(TenantCmd::List(listed)) = parse(
            "tenant list --search acme --tier free --status suspended --domain local \
             --isolation silo",
        )
        .unwrap()
        .command
        else {
            panic!("wrong command");
        };
        assert_eq!(listed.search.as_deref(), Some("acme"));
        assert_eq!(listed.tier.map(|t| t.to_string()).as_deref(), Some("free"));
        assert_eq!(listed.status, Some(args::TenantStatusArg::Suspended));
        assert_eq!(
            listed.domain.map(|d| d.to_string()).as_deref(),
            Some("local")
        );
        assert_eq!(listed.isolation, Some(args::IsolationArg::Silo));
        assert!(parse("tenant list --status frozen").is_err());
        assert!(parse("tenant list --isolation cluster").is_err());
        assert!(matches!(
            parse("move list --active --tenant-id acme")
                .unwrap()
                .command,
            ClientCommand::Move(args::MoveCmd::List {
                active: true,
                tenant_id: Some(_),
                ..
            })
        ));
        assert!(matches!(
            parse("tenant delete acme --yes").unwrap().command,
            ClientCommand::Tenant(TenantCmd::Delete { yes: true, .. })
        ));
    }

    #[test]
    fn invalid_ids_labels_and_roles_are_rejected_by_the_parser() {
        assert!(parse("tenant get Not_A_Slug").is_err());
        assert!(parse("tenant create acme --name A --tier free --label region").is_err());
        assert!(parse("key create --tenant-id acme --name ci --role superuser").is_err());
        assert!(parse("tier put gold --isolation cluster").is_err());
    }

    #[test]
    fn collection_put_needs_a_file_or_fields() {
        let cli =
            parse("collection put items --field title:text:required --field n:integer").unwrap();
        let ClientCommand::Collection(CollectionCmd::Put { fields, file, .. }) = cli.command else {
            panic!("wrong command");
        };
        assert_eq!(fields.len(), 2);
        assert!(file.is_none());
        assert!(parse("collection put items").is_err());
        assert!(parse("collection put items --file s.json --field a:text").is_err());
        assert!(parse("collection put items --field a:nope").is_err());
    }

    #[test]
    fn key_record_and_tier_commands_parse() {
        let cli = parse(
            "key create --tenant-id acme --name ci --role admin --expires-in 3600 --tenant other",
        )
        .unwrap();
        assert_eq!(
            cli.options.tenant.as_ref().map(|t| t.as_str()),
            Some("other")
        );
        assert!(matches!(
            cli.command,
            ClientCommand::Key(KeyCmd::Create {
                role: TenantRoleArg::Admin,
                expires_in: Some(3600),
                ..
            })
        ));
        assert!(parse("key revoke --tenant-id acme k0123456789abcdef").is_ok());
        assert!(parse("platform-key create --name ops --role operator").is_ok());
        assert!(parse("platform-key revoke k0123456789abcdef").is_ok());
        assert!(parse("tier put gold --isolation silo --domain local --price 99.5").is_ok());

        let cli = parse("record patch items r1 {\"n\":2} --if-match 3").unwrap();
        assert!(matches!(
            cli.command,
            ClientCommand::Record(RecordCmd::Patch {
                if_match: Some(3),
                ..
            })
        ));
        assert!(parse("record list items --filter n>2 --limit 10").is_ok());
        assert!(parse("record create items -").is_ok());
        let cli = parse("record create items {\"n\":1} --json").unwrap();
        assert!(cli.options.json);
        assert!(
            matches!(cli.command, ClientCommand::Record(RecordCmd::Create { body, .. }) if body == "{\"n\":1}")
        );
        assert!(parse("record delete items r1").is_ok());
    }

    #[test]
    fn every_leaf_command_parses() {
        for line in [
            "tenant get acme",
            "tenant update acme --name Acme2 --tier premium --label a=b",
            "tenant suspend acme",
            "tenant resume acme",
            "tier list",
            "domain list",
            "domain put east --engine sqlite --capacity 10 --monthly-cost 12.5",
            "domain put pg1 --engine postgres --domain-url postgres://o:pw@db/x --silos --dedicated-to acme",
            "collection get items",
            "collection list",
            "collection put items --file schema.json",
            "key list --tenant-id acme",
            "platform-key list",
            "record get items r1",
            "record replace items r1 @rec.json --if-match 1",
            "record list items --cursor abc",
        ] {
            if let Err(err) = parse(line) {
                panic!("{line}: {err}");
            }
        }
    }

    #[test]
    fn the_token_comes_from_the_option_or_else_the_admin_key_file() {
        let dir = std::env::temp_dir().join(format!("bulkhead-cli-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = resolve_token(None, &dir).unwrap_err().to_string();
        assert!(missing.contains("BULKHEAD_TOKEN"), "{missing}");

        std::fs::write(dir.join(ADMIN_KEY_FILE), "  bk_admin_secret\n").unwrap();
        assert_eq!(resolve_token(None, &dir).unwrap(), "bk_admin_secret");
        assert_eq!(resolve_token(Some(" given "), &dir).unwrap(), "given");
        // An empty credential is a mistake (say, a failed `$(…)`), never the admin key.
        let empty = resolve_token(Some(""), &dir).unwrap_err().to_string();
        assert!(empty.contains("empty"), "{empty}");
        assert!(resolve_token(Some("  "), &dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn domain_urls_never_show_in_debug_output() {
        let cli = parse("domain put pg1 --engine postgres --domain-url postgres://o:s3cret@db/x")
            .unwrap();
        assert!(!format!("{cli:?}").contains("s3cret"));
        assert!(matches!(
            cli.command,
            ClientCommand::Domain(DomainCmd::Put { domain_url: Some(url), .. }) if url.expose() == "postgres://o:s3cret@db/x"
        ));
    }

    #[test]
    fn options_debug_output_hides_the_token() {
        let cli = parse("domain list --token supersecret").unwrap();
        assert!(!format!("{:?}", cli.options).contains("supersecret"));
    }
}
