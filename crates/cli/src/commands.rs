//! Runs one parsed command against the server and prints its result. Each arm turns arguments
//! into a request body, makes one client call (or follows the pages of a listing) and hands
//! the answer to `output`.

use std::io::Write as _;

use anyhow::bail;
use bulkhead_api::{
    CreateKey, CreatePlatformKey, CreateTenant, DomainSpec, StartMove, TenantListQuery, TierSpec,
    UpdateTenant,
};
use bulkhead_client::{Client, ListRecords, TenantUpdated};
use bulkhead_core::model::TenantStatus;
use bulkhead_core::model::TierLimits;
use bulkhead_core::permissions::Ceiling;

use crate::args::{
    ClientCommand, CollectionCmd, DomainCmd, KeyCmd, MoveCmd, PlatformKeyCmd, RecordCmd,
    RolloutCmd, TenantCmd, TierCmd,
};
use crate::input::{labels_from, load_collection_spec, load_json_object, spec_from_fields};
use crate::output;
use crate::printer::{DEFAULT_RECORDS, Printer, all_pages, each_page};

pub async fn execute(client: &Client, json: bool, command: ClientCommand) -> anyhow::Result<()> {
    let out = Printer { json };
    match command {
        ClientCommand::Tenant(cmd) => tenant(client, &out, cmd).await,
        ClientCommand::Tier(cmd) => tier(client, &out, cmd).await,
        ClientCommand::Domain(cmd) => domain(client, &out, cmd).await,
        ClientCommand::Collection(cmd) => collection(client, &out, cmd).await,
        ClientCommand::Key(cmd) => key(client, &out, cmd).await,
        ClientCommand::PlatformKey(cmd) => platform_key(client, &out, cmd).await,
        ClientCommand::Record(cmd) => record(client, &out, cmd).await,
        ClientCommand::Plan(args) => crate::platform::show_plan(client, &out, args).await,
        ClientCommand::Apply(args) => crate::platform::apply(client, &out, args).await,
        ClientCommand::Rollout(cmd) => match cmd {
            RolloutCmd::Get { id, wait: true } => crate::rollouts::follow(client, &out, &id).await,
            RolloutCmd::Get { id, wait: false } => {
                out.show(&client.get_rollout(&id).await?, output::rollout)
            }
            RolloutCmd::List => out.page(&client.list_rollouts().await?, output::rollouts),
            RolloutCmd::Resume { id } => {
                out.show(&client.resume_rollout(&id).await?, output::rollout)
            }
            RolloutCmd::Cancel { id } => {
                out.show(&client.cancel_rollout(&id).await?, output::rollout)
            }
        },
        ClientCommand::Move(cmd) => match cmd {
            MoveCmd::Get { id, wait: true } => crate::moves::follow(client, &out, &id).await,
            MoveCmd::Get { id, wait: false } => {
                out.show(&client.get_move(&id).await?, output::moved)
            }
            MoveCmd::Cancel { id } => out.show(&client.cancel_move(&id).await?, output::moved),
            MoveCmd::List {
                active,
                tenant_id,
                page,
            } => crate::moves::list(client, &out, active, tenant_id, &page).await,
        },
        ClientCommand::Member(cmd) => crate::members::member(client, &out, cmd).await,
        ClientCommand::Role(cmd) => crate::members::role(client, &out, cmd).await,
        ClientCommand::User(cmd) => crate::members::user(client, &out, cmd).await,
        ClientCommand::Token(cmd) => crate::members::token(client, &out, cmd).await,
        ClientCommand::Whoami => crate::members::whoami(client, &out).await,
        ClientCommand::Audit(cmd) => crate::audit::audit(client, &out, cmd).await,
        ClientCommand::Findings(cmd) => crate::secops::findings(client, &out, cmd).await,
        ClientCommand::Webhook(cmd) => crate::secops::webhook(client, &out, cmd).await,
        ClientCommand::Archive(cmd) => crate::cold::archive(client, &out, cmd).await,
        ClientCommand::Placement(cmd) => crate::placement::placement(client, &out, cmd).await,
        ClientCommand::Usage(args) => crate::usage::usage(client, &out, args).await,
        ClientCommand::Cost(cmd) => crate::cost::cost(client, &out, cmd).await,
        ClientCommand::Doctor(args) => crate::doctor::doctor(client, &out, args).await,
    }
}

async fn tenant(client: &Client, out: &Printer, cmd: TenantCmd) -> anyhow::Result<()> {
    match cmd {
        TenantCmd::Create {
            id,
            name,
            tier,
            labels,
        } => {
            let request = CreateTenant {
                id,
                name,
                tier,
                labels: labels_from(&labels)?,
            };
            out.show(&client.create_tenant(&request).await?, output::tenant)
        }
        TenantCmd::List(args) => {
            let query = TenantListQuery {
                q: args.search,
                tier: args.tier,
                status: args.status.map(Into::into),
                domain: args.domain,
                isolation: args.isolation.map(Into::into),
                limit: None,
                cursor: None,
            };
            let tenants = all_pages(&args.page, |limit, cursor| {
                let query = TenantListQuery {
                    limit,
                    cursor,
                    ..query.clone()
                };
                async move { client.list_tenants_matching(&query).await }
            })
            .await?;
            out.page(&tenants, output::tenants)
        }
        TenantCmd::Get { id } => out.show(&client.get_tenant(&id).await?, output::tenant),
        TenantCmd::Update {
            id,
            name,
            tier,
            labels,
        } => {
            if name.is_none() && tier.is_none() && labels.is_empty() {
                bail!("nothing to update: give --name, --tier or --label");
            }
            let labels = if labels.is_empty() {
                None
            } else {
                Some(labels_from(&labels)?)
            };
            let update = UpdateTenant {
                name,
                tier,
                status: None,
                labels,
            };
            match client.update_tenant(&id, &update).await? {
                TenantUpdated::Applied(tenant) => out.show(&*tenant, output::tenant),
                TenantUpdated::Moving(started) => {
                    eprintln!(
                        "the new tier needs another isolation model: move {} started; follow it with \
                         `bulkhead move get {} --wait`",
                        started.id, started.id
                    );
                    out.show(&*started, output::moved)
                }
            }
        }
        TenantCmd::Move {
            id,
            to,
            domain,
            wait,
            incarnation,
        } => {
            if to.is_none() && domain.is_none() {
                bail!("name the target: --to pool|bridge|silo, --domain NAME, or both");
            }
            let request = StartMove {
                isolation: to.map(Into::into),
                domain,
                incarnation,
            };
            let started = client.start_move(&id, &request).await?;
            if wait {
                crate::moves::follow(client, out, &started.id).await
            } else {
                out.show(&started, output::moved)
            }
        }
        TenantCmd::Moves { id } => out.page(&client.list_moves(&id).await?, output::moves),
        TenantCmd::Suspend { id } => set_status(client, out, &id, TenantStatus::Suspended).await,
        TenantCmd::Resume { id } => set_status(client, out, &id, TenantStatus::Active).await,
        TenantCmd::Export {
            id,
            output,
            hot_only,
        } => crate::archive::export(client, out, &id, &output, hot_only).await,
        TenantCmd::Import { file, rename, tier } => {
            crate::archive::import(client, out, &file, rename, tier).await
        }
        TenantCmd::Delete {
            id,
            yes,
            incarnation,
        } => {
            if !yes {
                bail!(
                    "refusing to delete tenant {id} without --yes: deleting purges every byte of \
                     the tenant's data and cannot be undone"
                );
            }
            match &incarnation {
                Some(life) => client.delete_tenant_life(&id, life).await?,
                None => client.delete_tenant(&id).await?,
            }
            out.done("tenant", id.as_str())
        }
    }
}

async fn set_status(
    client: &Client,
    out: &Printer,
    id: &bulkhead_core::TenantId,
    status: TenantStatus,
) -> anyhow::Result<()> {
    let update = UpdateTenant {
        status: Some(status),
        ..UpdateTenant::default()
    };
    match client.update_tenant(id, &update).await? {
        TenantUpdated::Applied(tenant) => out.show(&*tenant, output::tenant),
        TenantUpdated::Moving(_) => bail!("the server started a move for a status change"),
    }
}

async fn tier(client: &Client, out: &Printer, cmd: TierCmd) -> anyhow::Result<()> {
    match cmd {
        TierCmd::List => out.page(&client.list_tiers().await?, output::tiers),
        TierCmd::Put {
            name,
            isolation,
            domains,
            price,
            currency,
            description,
            query_time_ms,
            query_rows_examined,
            bulk_max_bytes,
            requests_per_second,
            request_burst,
            max_concurrent_requests,
            max_domain_connections,
            max_records,
            max_bytes,
            forbid,
            no_custom_roles,
            retention,
            promote_to,
            promote_factor,
            demote_to,
            pace_target,
            pace_floor,
        } => {
            let spec = TierSpec {
                pace: bulkhead_core::model::PacePolicy {
                    target_ratio: pace_target,
                    floor: pace_floor,
                },
                retention: retention.into_iter().collect(),
                placement: bulkhead_core::model::PlacementPolicy {
                    promote_to: promote_to.map(Into::into),
                    promote_factor,
                    demote_to: demote_to.map(Into::into),
                },
                domains,
                monthly_price: price,
                currency,
                description,
                limits: TierLimits {
                    query_time_ms,
                    query_rows_examined,
                    bulk_max_bytes,
                    requests_per_second,
                    request_burst,
                    max_concurrent_requests,
                    max_domain_connections,
                    max_records,
                    max_bytes,
                },
                ceiling: Ceiling {
                    forbid: forbid.into_iter().collect(),
                    custom_roles: !no_custom_roles,
                },
                ..TierSpec::new(isolation.into())
            };
            let tier = client.put_tier(&name, &spec).await?;
            out.show(&tier, |t| output::tiers(std::slice::from_ref(t)))
        }
    }
}

async fn domain(client: &Client, out: &Printer, cmd: DomainCmd) -> anyhow::Result<()> {
    match cmd {
        DomainCmd::List => out.page(&client.list_domains().await?, output::domains),
        DomainCmd::Put {
            name,
            engine,
            domain_url,
            data_url,
            silos,
            dedicated_to,
            transaction_pooler,
            capacity,
            bridge_tenants_per_file,
            monthly_cost,
            currency,
            cost_rule,
            pool_size,
            ready_silos,
        } => {
            let spec = DomainSpec {
                engine: engine.as_str().to_owned(),
                url: domain_url,
                data_url,
                silos,
                dedicated_to,
                transaction_pooler,
                bridge_tenants_per_file,
                max_dedicated_tenants: capacity.unwrap_or(0),
                monthly_cost,
                currency,
                cost_rule: cost_rule.unwrap_or_default(),
                pool_size,
                ready_silos,
            };
            let domain = client.put_domain(&name, &spec).await?;
            out.show(&domain, |d| output::domains(std::slice::from_ref(d)))
        }
    }
}

async fn collection(client: &Client, out: &Printer, cmd: CollectionCmd) -> anyhow::Result<()> {
    match cmd {
        CollectionCmd::Put {
            name,
            file,
            fields,
            wait,
        } => {
            let spec = match file {
                Some(path) => load_collection_spec(&path, &mut std::io::stdin().lock())?,
                None => spec_from_fields(&fields)?,
            };
            let view = client.submit_collection(&name, &spec).await?;
            out.show(&view, output::collection)?;
            match (&view.rollout, wait) {
                (Some(rollout), true) => crate::rollouts::follow(client, out, &rollout.id).await,
                _ => Ok(()),
            }
        }
        CollectionCmd::Get { name } => {
            out.show(&client.get_collection(&name).await?, output::collection)
        }
        CollectionCmd::List => out.page(&client.list_collections().await?, output::collections),
    }
}

async fn key(client: &Client, out: &Printer, cmd: KeyCmd) -> anyhow::Result<()> {
    match cmd {
        KeyCmd::Create {
            tenant_id,
            name,
            role,
            expires_in,
        } => {
            let request = CreateKey {
                name,
                role: role.into(),
                expires_in,
            };
            out.show(
                &client.create_key(&tenant_id, &request).await?,
                output::created_key,
            )
        }
        KeyCmd::List { tenant_id } => out.page(&client.list_keys(&tenant_id).await?, output::keys),
        KeyCmd::Revoke { tenant_id, key_id } => {
            client.revoke_key(&tenant_id, &key_id).await?;
            out.done_as("revoked", "key", key_id.as_str())
        }
    }
}

async fn platform_key(client: &Client, out: &Printer, cmd: PlatformKeyCmd) -> anyhow::Result<()> {
    match cmd {
        PlatformKeyCmd::Create {
            name,
            role,
            expires_in,
        } => {
            let request = CreatePlatformKey {
                name,
                role: role.into(),
                expires_in,
            };
            out.show(
                &client.create_platform_key(&request).await?,
                output::created_key,
            )
        }
        PlatformKeyCmd::List => out.page(&client.list_platform_keys().await?, output::keys),
        PlatformKeyCmd::Revoke { key_id } => {
            client.revoke_platform_key(&key_id).await?;
            out.done_as("revoked", "platform key", key_id.as_str())
        }
    }
}

async fn record(client: &Client, out: &Printer, cmd: RecordCmd) -> anyhow::Result<()> {
    match cmd {
        RecordCmd::Create { collection, body } => {
            let body = load_json_object(&body, &mut std::io::stdin().lock())?;
            out.show(
                &client.create_record(&collection, &body).await?,
                output::record,
            )
        }
        RecordCmd::Watch {
            collection,
            filter,
            after,
            count,
        } => crate::watch::follow(client, out, &collection, filter.as_deref(), after, count).await,
        RecordCmd::Export { collection, filter } => {
            // Each line goes out as it arrives: memory stays flat however many records.
            let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
            let mut closed = false;
            let result = client
                .export_each(&collection, filter.as_deref(), |line| {
                    let written = stdout
                        .write_all(line)
                        .and_then(|()| stdout.write_all(b"\n"));
                    match written {
                        Ok(()) => Ok(()),
                        Err(e) => {
                            closed = e.kind() == std::io::ErrorKind::BrokenPipe;
                            Err(bulkhead_client::ClientError::Decode(format!(
                                "writing standard output: {e}"
                            )))
                        }
                    }
                })
                .await;
            if closed {
                // The reader stopped reading (`| head`): the output ends here.
                return Ok(());
            }
            result?;
            match stdout.flush() {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                other => Ok(other?),
            }
        }
        RecordCmd::Get { collection, id } => {
            out.show(&client.get_record(&collection, &id).await?, output::record)
        }
        RecordCmd::List {
            collection,
            filter,
            sort,
            search,
            fields,
            page,
        } => {
            let collection = &collection;
            let base = &ListRecords {
                filter,
                sort,
                q: search,
                fields,
                limit: None,
                cursor: None,
            };
            if page.all {
                // Every page, each printed as it comes (tables per page; JSON lines).
                return each_page(
                    &page,
                    |limit, cursor| async move {
                        let query = ListRecords {
                            limit,
                            cursor,
                            ..base.clone()
                        };
                        client.list_records(collection, &query).await
                    },
                    |records| {
                        if out.json {
                            for r in records {
                                println!("{r}");
                            }
                        } else if !records.is_empty() {
                            println!("{}", output::records(records));
                        }
                    },
                )
                .await;
            }
            let query = ListRecords {
                limit: Some(page.limit.unwrap_or(DEFAULT_RECORDS)),
                cursor: page.cursor.clone(),
                ..base.clone()
            };
            let records = client.list_records(collection, &query).await?;
            out.page(&records, output::records)
        }
        RecordCmd::Aggregate {
            collection,
            body,
            limit,
            cursor,
        } => {
            let body = load_json_object(&body, &mut std::io::stdin().lock())?;
            let mut request: bulkhead_api::AggregateRequest = serde_json::from_value(body)
                .map_err(|e| anyhow::anyhow!("not an aggregation: {e}"))?;
            request.limit = limit.or(request.limit);
            request.cursor = cursor.or(request.cursor);
            let page = client.aggregate(&collection, &request).await?;
            out.show(&page, |p| output::groups(&p.groups))?;
            if let (false, Some(cursor)) = (out.json, &page.next_cursor) {
                eprintln!("more groups: repeat the command with --cursor {cursor}");
            }
            Ok(())
        }
        RecordCmd::Import {
            collection,
            file,
            batch,
            resume,
            restart,
            state,
        } => {
            let args = crate::import::ImportArgs {
                collection: &collection,
                file: &file,
                batch: batch.max(1),
                resume,
                restart,
                state,
            };
            crate::import::run(client, out, args).await
        }
        RecordCmd::Patch {
            collection,
            id,
            body,
            if_match,
        } => {
            let body = load_json_object(&body, &mut std::io::stdin().lock())?;
            let record = client
                .patch_record(&collection, &id, &body, if_match)
                .await?;
            out.show(&record, output::record)
        }
        RecordCmd::Replace {
            collection,
            id,
            body,
            if_match,
        } => {
            let body = load_json_object(&body, &mut std::io::stdin().lock())?;
            let record = client
                .replace_record(&collection, &id, &body, if_match)
                .await?;
            out.show(&record, output::record)
        }
        RecordCmd::Delete {
            collection,
            id,
            if_match,
        } => {
            client.delete_record(&collection, &id, if_match).await?;
            out.done("record", id.as_str())
        }
    }
}
