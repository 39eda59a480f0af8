//! Reads a bulk body as it streams in and hands it to the catalog line by line, so memory
//! stays bounded whatever the body's size: at most one line (up to the request body limit)
//! is buffered here, and the catalog holds at most one chunk of parsed lines.
//!
//! A line longer than the request body limit fails alone (`line_too_long`) and is skipped
//! to its end. A body that outgrows the tier's bulk limit without having declared its length
//! stops being read there: the lines before it were applied, and the report ends with one
//! failed line saying so (a declared length over the limit is refused before anything is
//! read). A body the client stops sending ends the same way.

use bulkhead_catalog::BulkSession;
use bulkhead_core::error::{Error, ErrorKind};
use futures_util::StreamExt;

fn line_too_long(max_line: usize) -> Error {
    // As a single record's body that large would be: 413, for this line alone.
    Error::new(
        ErrorKind::PayloadTooLarge,
        "line_too_long",
        format!("a line may be at most {max_line} bytes (the request body limit)"),
    )
}

/// The line at which a bulk stops because its request's time ran out.
fn time_limit(seconds: u64) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        "time_limit",
        format!(
            "the request's time limit ({seconds} s) ran out here; the lines before this one were \
             applied, the rest was not read: send them again (or in smaller bodies)"
        ),
    )
}

/// Feeds `body` to `session` until it ends, or until `deadline`: then the report ends with
/// one failed line (`time_limit`) saying where it stopped, and is answered before the
/// request's own time runs out (which would answer 408 with no report of what was applied).
pub async fn feed(
    body: axum::body::Body,
    limit: usize,
    max_line: usize,
    deadline: (tokio::time::Instant, u64),
    session: &mut BulkSession,
) {
    let (deadline, seconds) = deadline;
    let mut stream = body.into_data_stream();
    let mut buffer: Vec<u8> = Vec::new();
    let mut skipping = false;
    let mut read = 0usize;
    loop {
        let next = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(next)) => next,
            Ok(None) => break,
            Err(_) => {
                session.fail_line(&time_limit(seconds));
                return;
            }
        };
        let data = match next {
            Ok(data) => data,
            Err(_) => {
                session.fail_line(&Error::bad_request(
                    "body_incomplete",
                    "the body ended before it was complete; the lines before this one were applied",
                ));
                return;
            }
        };
        read += data.len();
        if read > limit {
            session.fail_line(&Error::new(
                ErrorKind::PayloadTooLarge,
                "payload_too_large",
                format!(
                    "the body grew past this tenant's bulk limit of {limit} bytes here; the lines \
                     before this one were applied, the rest was not read"
                ),
            ));
            return;
        }
        let mut rest: &[u8] = &data;
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            let (line, after) = rest.split_at(end);
            rest = &after[1..];
            if skipping {
                skipping = false;
                continue;
            }
            if tokio::time::Instant::now() >= deadline {
                session.fail_line(&time_limit(seconds));
                return;
            }
            if buffer.len() + line.len() > max_line {
                session.fail_line(&line_too_long(max_line));
                buffer.clear();
                continue;
            }
            if buffer.is_empty() {
                session.push_line(line).await;
            } else {
                buffer.extend_from_slice(line);
                session.push_line(&buffer).await;
                buffer.clear();
            }
        }
        if !skipping {
            buffer.extend_from_slice(rest);
            if buffer.len() > max_line {
                session.fail_line(&line_too_long(max_line));
                buffer = Vec::new();
                skipping = true;
            }
        }
    }
    if !skipping && !buffer.is_empty() {
        session.push_line(&buffer).await;
    }
}
