//! Records: create, read, change, list, import, export and follow them.

use bulkhead_core::{CollectionName, RecordId};
use clap::Subcommand;

#[derive(Debug, Clone, Subcommand)]
pub enum RecordCmd {
    /// Follow the collection's changes as they happen (server-sent events): one line per
    /// created, updated or deleted record, as your credential may see it. Reconnects on its
    /// own, resuming after the last event it printed.
    Watch {
        #[arg(value_parser = CollectionName::parse)]
        collection: CollectionName,
        /// Only records matching this filter.
        #[arg(long)]
        filter: Option<String>,
        /// Resume after this event id (printed with each event under --json).
        #[arg(long, value_name = "EVENT_ID")]
        after: Option<String>,
        /// Stop after this many record events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Export every record you may export, as NDJSON on standard output (id order).
    Export {
        #[arg(value_parser = CollectionName::parse)]
        collection: CollectionName,
        /// Only records matching this filter.
        #[arg(long)]
        filter: Option<String>,
    },
    /// Create a record.
    Create {
        #[arg(value_parser = CollectionName::parse)]
        collection: CollectionName,
        /// The record: inline JSON, @path to read a file, or - for standard input.
        #[arg(value_name = "JSON")]
        body: String,
    },
    /// Show one record.
    Get {
        #[arg(value_parser = CollectionName::parse)]
        collection: CollectionName,
        #[arg(value_parser = RecordId::parse)]
        id: RecordId,
    },
    /// List records: one page (100, or --limit), the next with --cursor; --all for every
    /// page.
    List {
        #[arg(value_parser = CollectionName::parse)]
        collection: CollectionName,
        /// Filter expression, e.g. 'status = "open" && priority > 2' (see docs/query.md).
        #[arg(long)]
        filter: Option<String>,
        /// Sort keys, e.g. '-created_at,title' (id breaks ties).
        #[arg(long, allow_hyphen_values = true)]
        sort: Option<String>,
        /// Full-text search over text fields: words, "phrases", prefix*.
        #[arg(long)]
        search: Option<String>,
        /// Only these fields (and id), e.g. 'title,n'.
        #[arg(long)]
        fields: Option<String>,
        #[command(flatten)]
        page: crate::printer::RecordPageArgs,
    },
    /// Summarise records: groups, time buckets and metrics in one call, e.g.
    /// '{"group_by": ["machine"], "bucket": {"field": "at", "interval": "hour"},
    ///   "metrics": [{"op": "count"}, {"op": "avg", "field": "temp"}]}'.
    Aggregate {
        #[arg(value_parser = CollectionName::parse)]
        collection: CollectionName,
        /// The aggregation: inline JSON, @path to read a file, or - for standard input.
        #[arg(value_name = "JSON")]
        body: String,
        /// Groups per page (overrides the body's `limit`).
        #[arg(long)]
        limit: Option<u32>,
        /// `next_cursor` of the previous page (overrides the body's `cursor`).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Load records from an NDJSON file (each line a record to create, or
    /// {"op": "create" | "upsert" | "delete", "id": …, "record": {…}}), with a progress bar.
    /// Failed lines are listed with their line numbers; the others are kept.
    Import {
        #[arg(value_parser = CollectionName::parse)]
        collection: CollectionName,
        /// The NDJSON file, or - for standard input.
        file: std::path::PathBuf,
        /// Lines per request.
        #[arg(long, default_value_t = 5000)]
        batch: usize,
        /// Go on with an import of this file that stopped (killed, connection lost), after
        /// the lines it had imported, without duplicating one.
        #[arg(long, conflicts_with = "restart")]
        resume: bool,
        /// Import the whole file again, forgetting an unfinished import of it.
        #[arg(long)]
        restart: bool,
        /// Where the import keeps its progress [default: <file>.import-state].
        #[arg(long, value_name = "PATH")]
        state: Option<std::path::PathBuf>,
    },
    /// Change some fields of a record.
    Patch {
        #[arg(value_parser = CollectionName::parse)]
        collection: CollectionName,
        #[arg(value_parser = RecordId::parse)]
        id: RecordId,
        /// The fields to change: inline JSON, @path, or - for standard input.
        #[arg(value_name = "JSON")]
        body: String,
        /// Only apply if the record is still at this version.
        #[arg(long, value_name = "VERSION")]
        if_match: Option<i64>,
    },
    /// Replace a whole record.
    Replace {
        #[arg(value_parser = CollectionName::parse)]
        collection: CollectionName,
        #[arg(value_parser = RecordId::parse)]
        id: RecordId,
        /// The new record: inline JSON, @path, or - for standard input.
        #[arg(value_name = "JSON")]
        body: String,
        /// Only apply if the record is still at this version.
        #[arg(long, value_name = "VERSION")]
        if_match: Option<i64>,
    },
    /// Delete a record.
    Delete {
        #[arg(value_parser = CollectionName::parse)]
        collection: CollectionName,
        #[arg(value_parser = RecordId::parse)]
        id: RecordId,
        /// Only delete if the record is still at this version.
        #[arg(long, value_name = "VERSION")]
        if_match: Option<i64>,
    },
}
