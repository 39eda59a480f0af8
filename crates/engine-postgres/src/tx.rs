//! One data transaction: how it starts (the tenant setting, a fresh row counter and the
//! statement timeout, transaction-local), how one statement runs in it (prepared through the
//! cache, or just for the call behind a transaction-mode pooler), and what its query budget
//! turns into.

use std::time::Duration;

use bulkhead_core::StorageKey;
use bulkhead_engine::{BudgetHit, EngineError, QueryBudget};
use deadpool_postgres::{Object, Transaction};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;

use crate::PgError;
use crate::ddl::{ROWS_BUDGET_STATE, TENANT_SETTING};
use crate::records::Statement;
use crate::value::{PgValue, refs};

/// Runs one statement in a transaction, prepared through the cache or just for this call
/// (then closed before the transaction ends, which a transaction-mode pooler requires).
pub(crate) async fn query(
    tx: &Transaction<'_>,
    s: &Statement,
    cache: bool,
) -> Result<Vec<Row>, PgError> {
    let stmt = if cache {
        tx.prepare_cached(&s.sql).await?
    } else {
        tx.prepare(&s.sql).await?
    };
    Ok(tx.query(&stmt, &refs(&s.params)).await?)
}

pub(crate) async fn execute(
    tx: &Transaction<'_>,
    s: &Statement,
    cache: bool,
) -> Result<u64, PgError> {
    let stmt = if cache {
        tx.prepare_cached(&s.sql).await?
    } else {
        tx.prepare(&s.sql).await?
    };
    Ok(tx.execute(&stmt, &refs(&s.params)).await?)
}

/// Opens a data transaction for `tenant`: the tenant setting, a fresh row counter and the
/// statement timeout, all transaction-local, in one statement before anything else.
pub(crate) async fn begin<'a>(
    client: &'a mut Object,
    tenant: &StorageKey,
    timeout: Duration,
    cache: bool,
) -> Result<Transaction<'a>, PgError> {
    let tx = client.transaction().await?;
    if !cache {
        // Behind a transaction-mode pooler the server connection is shared with other
        // clients, and prepared statements outlive transactions: one whose client went away
        // between preparing and closing it (a cancelled request, a killed process) stays on
        // the connection and collides with the same name prepared later (42P05). Dropping
        // them all first, in the same simple-protocol round trip as the setup, makes that
        // impossible and costs no extra round trip.
        tx.batch_execute(&format!(
            "DEALLOCATE ALL; SELECT set_config('{TENANT_SETTING}', {}, true), \
             set_config('bulkhead.examined', '0', true), set_config('statement_timeout', '{}', true)",
            literal(tenant.as_str()),
            timeout.as_millis().max(1),
        ))
        .await?;
        return Ok(tx);
    }
    let setup = Statement {
        sql: format!(
            "SELECT set_config('{TENANT_SETTING}', $1, true), set_config('bulkhead.examined', '0', true), \
             set_config('statement_timeout', $2, true)"
        ),
        params: vec![
            PgValue::Text(tenant.as_str().to_owned()),
            PgValue::Text(timeout.as_millis().max(1).to_string()),
        ],
    };
    query(&tx, &setup, cache).await?;
    Ok(tx)
}

/// `text` as an SQL string literal (standard-conforming: quotes doubled, backslashes plain).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Maps the two ways PostgreSQL stops a query over its budget.
pub(crate) fn budget_error(err: PgError, budget: &QueryBudget) -> PgError {
    if let PgError::Db(e) = &err
        && let Some(code) = e.code()
    {
        if *code == SqlState::QUERY_CANCELED {
            return EngineError::TooExpensive(BudgetHit::Time(budget.time)).into();
        }
        if code.code() == ROWS_BUDGET_STATE {
            budget.examined.add(budget.rows_examined);
            return EngineError::TooExpensive(BudgetHit::RowsExamined(budget.rows_examined)).into();
        }
    }
    err
}

/// Adds the rows the transaction's queries examined (`bulkhead.examine` counts them in a
/// transaction-local setting) to the budget's counter, for metering.
pub(crate) async fn report_examined(
    tx: &Transaction<'_>,
    budget: &QueryBudget,
    cache: bool,
) -> Result<(), PgError> {
    if !budget.counts_rows() {
        return Ok(());
    }
    let read = Statement {
        sql: "SELECT current_setting('bulkhead.examined', true)".into(),
        params: Vec::new(),
    };
    let rows = query(tx, &read, cache).await?;
    let examined = rows
        .first()
        .and_then(|row| row.get::<_, Option<String>>(0))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    budget.examined.add(examined);
    Ok(())
}
