//! `bulkhead doctor`: tenant storage no live tenant incarnation owns, and its removal after
//! confirmation.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::bail;
use bulkhead_api::DoctorReport;
use bulkhead_client::Client;
use clap::Args;

use crate::printer::Printer;

#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    /// Remove what is found (asks first, unless `--yes`).
    #[arg(long)]
    pub remove: bool,
    /// With `--remove`: do not ask.
    #[arg(long)]
    pub yes: bool,
}

pub fn report(report: &DoctorReport) -> String {
    let mut out = if report.orphans.is_empty() {
        "no orphaned tenant storage".to_owned()
    } else {
        let mut table = comfy_table::Table::new();
        table
            .load_style(comfy_table::presets::UTF8_FULL_CONDENSED)
            .set_header([
                "domain",
                "isolation",
                "storage",
                "tenant",
                "incarnation",
                "removable",
            ]);
        for o in &report.orphans {
            table.add_row(vec![
                o.domain.to_string(),
                o.isolation.to_string(),
                o.name.clone(),
                o.tenant
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                o.incarnation
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                if o.removable {
                    "yes"
                } else {
                    "no: remove by hand"
                }
                .to_owned(),
            ]);
        }
        table.to_string()
    };
    if !report.unchecked_domains.is_empty() {
        let names: Vec<String> = report
            .unchecked_domains
            .iter()
            .map(ToString::to_string)
            .collect();
        out.push_str(&format!(
            "\nnot inspected (engine not open): {}",
            names.join(", ")
        ));
    }
    if report.removed > 0 {
        out.push_str(&format!("\nremoved {}", report.removed));
    }
    out
}

pub async fn doctor(client: &Client, out: &Printer, args: DoctorArgs) -> anyhow::Result<()> {
    let found = client.doctor().await?;
    if !args.remove || found.orphans.is_empty() {
        return out.show(&found, report);
    }
    if !args.yes {
        eprintln!("{}", report(&found));
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            bail!("refusing to remove storage without --yes when not asked on a terminal");
        }
        eprint!("remove the removable items above? this cannot be undone [y/N] ");
        std::io::stderr().flush()?;
        let mut answer = String::new();
        stdin.lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            bail!("nothing removed");
        }
    }
    out.show(&client.doctor_clean().await?, report)
}
