//! How a command shows what it got: JSON or a table ([`Printer`]), and the paging every
//! listing shares ([`ListArgs`], [`all_pages`]). Below the commands; knows none of them.

use std::collections::HashSet;
use std::future::Future;

use anyhow::bail;
use bulkhead_api::Page;
use bulkhead_client::ClientError;
use clap::Args;
use serde::Serialize;
use serde_json::json;

use crate::output;

/// Paging of list commands.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Return one page of at most this many items instead of everything.
    #[arg(long)]
    pub limit: Option<u32>,
    /// Continue from the cursor a previous limited listing printed.
    #[arg(long)]
    pub cursor: Option<String>,
}

/// Paging of `record list`: one page by default (of [`DEFAULT_RECORDS`], or `--limit`), or
/// every page with `--all`, each printed as it arrives.
#[derive(Debug, Clone, Args)]
pub struct RecordPageArgs {
    /// Records per page [default: 100].
    #[arg(long)]
    pub limit: Option<u32>,
    /// Continue from the cursor a previous listing printed.
    #[arg(long)]
    pub cursor: Option<String>,
    /// Every matching record, page after page (printed as each page arrives; JSON lines
    /// with --json).
    #[arg(long)]
    pub all: bool,
}

/// Records one `record list` shows when no limit is given.
pub const DEFAULT_RECORDS: u32 = 100;

/// Fetches page after page from `page.cursor` on, handing each to `show` as it arrives.
pub(crate) async fn each_page<T, F, Fut>(
    page: &RecordPageArgs,
    mut fetch: F,
    mut show: impl FnMut(&[T]),
) -> anyhow::Result<()>
where
    F: FnMut(Option<u32>, Option<String>) -> Fut,
    Fut: Future<Output = Result<Page<T>, ClientError>>,
{
    let mut cursor = page.cursor.clone();
    let mut seen = HashSet::new();
    loop {
        let next = fetch(page.limit, cursor.clone()).await?;
        show(&next.items);
        match next.next_cursor {
            None => return Ok(()),
            Some(c) if !seen.insert(c.clone()) => {
                bail!("the server returned cursor {c:?} twice; stopping the listing")
            }
            Some(c) => cursor = Some(c),
        }
    }
}

/// Prints either the JSON of a value or its table.
pub(crate) struct Printer {
    pub(crate) json: bool,
}

impl Printer {
    pub(crate) fn show<T: Serialize + ?Sized>(
        &self,
        value: &T,
        table: impl FnOnce(&T) -> String,
    ) -> anyhow::Result<()> {
        if self.json {
            println!("{}", output::json(value)?);
        } else {
            println!("{}", table(value));
        }
        Ok(())
    }

    /// A listing: JSON keeps the API's page shape; a table is followed by a hint on stderr
    /// when a limited listing has more.
    pub(crate) fn page<T: Serialize>(
        &self,
        page: &Page<T>,
        table: impl FnOnce(&[T]) -> String,
    ) -> anyhow::Result<()> {
        if self.json {
            println!("{}", output::json(page)?);
        } else {
            println!("{}", table(&page.items));
            if let Some(cursor) = &page.next_cursor {
                eprintln!("more results: repeat the command with --cursor {cursor}");
            }
        }
        Ok(())
    }

    /// The outcome of a deletion, which has no body to show.
    pub(crate) fn done(&self, what: &str, id: &str) -> anyhow::Result<()> {
        self.done_as("deleted", what, id)
    }

    /// The outcome of a change with no body to show, in its own word (`revoked`, `removed`).
    pub(crate) fn done_as(&self, verb: &str, what: &str, id: &str) -> anyhow::Result<()> {
        if self.json {
            println!("{}", output::json(&json!({ verb: what, "id": id }))?);
        } else {
            println!("{verb} {what} {id}");
        }
        Ok(())
    }
}

/// With `--limit`, one page (its `next_cursor` kept so the caller can say there is more);
/// without, every page, following `next_cursor` until the server has no more.
pub(crate) async fn all_pages<T, F, Fut>(page: &ListArgs, mut fetch: F) -> anyhow::Result<Page<T>>
where
    F: FnMut(Option<u32>, Option<String>) -> Fut,
    Fut: Future<Output = Result<Page<T>, ClientError>>,
{
    if page.limit.is_some() {
        return Ok(fetch(page.limit, page.cursor.clone()).await?);
    }
    let mut items = Vec::new();
    let mut cursor = page.cursor.clone();
    let mut seen = HashSet::new();
    loop {
        let next = fetch(None, cursor.clone()).await?;
        items.extend(next.items);
        match next.next_cursor {
            None => {
                return Ok(Page {
                    items,
                    next_cursor: None,
                });
            }
            // A server that hands back a cursor it already gave would keep us here forever.
            Some(c) if !seen.insert(c.clone()) => {
                bail!("the server returned cursor {c:?} twice; stopping the listing")
            }
            Some(c) => cursor = Some(c),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn pages(limit: Option<u32>) -> ListArgs {
        ListArgs {
            limit,
            cursor: None,
        }
    }

    #[tokio::test]
    async fn listing_without_a_limit_follows_every_cursor() {
        let calls = RefCell::new(Vec::new());
        let all = all_pages(&pages(None), |limit, cursor| {
            calls.borrow_mut().push((limit, cursor.clone()));
            async move {
                Ok(match cursor.as_deref() {
                    None => Page {
                        items: vec![1, 2],
                        next_cursor: Some("c1".into()),
                    },
                    Some("c1") => Page {
                        items: vec![3],
                        next_cursor: None,
                    },
                    Some(other) => panic!("unexpected cursor {other}"),
                })
            }
        })
        .await
        .unwrap();
        assert_eq!(all.items, vec![1, 2, 3]);
        assert_eq!(
            calls.into_inner(),
            vec![(None, None), (None, Some("c1".into()))]
        );
    }

    #[tokio::test]
    async fn listing_with_a_limit_fetches_one_page_and_keeps_its_cursor() {
        let page = all_pages(&pages(Some(2)), |limit, _| async move {
            assert_eq!(limit, Some(2));
            Ok(Page {
                items: vec![1, 2],
                next_cursor: Some("more".into()),
            })
        })
        .await
        .unwrap();
        assert_eq!(page.next_cursor.as_deref(), Some("more"));
    }

    #[tokio::test]
    async fn a_repeating_cursor_stops_the_listing_with_an_error() {
        let result: anyhow::Result<Page<u8>> = all_pages(&pages(None), |_, _| async {
            Ok(Page {
                items: vec![],
                next_cursor: Some("same".into()),
            })
        })
        .await;
        assert!(result.unwrap_err().to_string().contains("twice"));
    }
}
