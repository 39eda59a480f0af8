//! The change feed: `GET /v1/collections/{c}/records:watch`, server-sent events read as they
//! arrive.

use reqwest::Method;
use reqwest::header::ACCEPT;

use crate::{Client, ClientError};

/// One event of a change feed: `ready`, `created`, `updated`, `deleted`, `resync` or
/// `closed`, its id (the position to resume after) and its data as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEvent {
    pub event: String,
    pub id: Option<String>,
    pub data: serde_json::Value,
}

/// An open change feed.
pub struct Watch {
    response: reqwest::Response,
    parser: SseParser,
    ready: std::collections::VecDeque<SseEvent>,
    last_id: Option<String>,
}

impl Client {
    /// Opens the change feed of `collection` for this client's tenant, from now or after
    /// `last_event_id` (an event id this feed sent).
    pub async fn watch(
        &self,
        collection: &bulkhead_core::CollectionName,
        filter: Option<&str>,
        last_event_id: Option<&str>,
    ) -> Result<Watch, ClientError> {
        let url = self.url(
            &["v1", "collections", collection.as_str(), "records:watch"],
            &[("filter", filter.map(str::to_owned))],
        )?;
        let mut request = self
            .request(Method::GET, url)
            .header(ACCEPT, "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ClientError::transport(&e))?;
        if !response.status().is_success() {
            return Err(crate::refusal(response).await);
        }
        Ok(Watch {
            response,
            parser: SseParser::default(),
            ready: Default::default(),
            last_id: last_event_id.map(str::to_owned),
        })
    }
}

impl Watch {
    /// The next event; `None` once the server ended the feed.
    pub async fn next(&mut self) -> Result<Option<FeedEvent>, ClientError> {
        loop {
            if let Some(raw) = self.ready.pop_front() {
                if raw.id.is_some() {
                    self.last_id.clone_from(&raw.id);
                }
                let data = serde_json::from_str(&raw.data).map_err(|e| {
                    ClientError::Decode(format!("feed event {:?} is not JSON: {e}", raw.event))
                })?;
                return Ok(Some(FeedEvent {
                    event: raw.event,
                    id: raw.id,
                    data,
                }));
            }
            match self
                .response
                .chunk()
                .await
                .map_err(|e| ClientError::transport(&e))?
            {
                Some(chunk) => self.ready.extend(self.parser.push(&chunk)),
                None => return Ok(None),
            }
        }
    }

    /// The id of the last event received (to resume after, as `Last-Event-ID`).
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }
}

/// One dispatched server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `message` when the event named none.
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

/// The `text/event-stream` format, fed in chunks of any size: lines end in LF, CRLF or CR;
/// `:` starts a comment; `data` lines join with LF; a blank line dispatches the event, unless
/// it has no data.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    /// The last byte seen was a CR (a following LF belongs to the same line end).
    after_cr: bool,
    event: String,
    data: Option<String>,
    id: Option<String>,
}

impl SseParser {
    /// Feeds bytes; returns the events they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        for &b in bytes {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(event) = self.line_done(&line) {
                        out.push(event);
                    }
                }
                _ => {
                    self.after_cr = false;
                    self.line.push(b);
                }
            }
        }
        out
    }

    fn line_done(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            let data = self.data.take();
            let event = std::mem::take(&mut self.event);
            let data = data?;
            return Some(SseEvent {
                event: if event.is_empty() {
                    "message".into()
                } else {
                    event
                },
                id: self.id.clone(),
                data,
            });
        }
        if line[0] == b':' {
            return None;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (&*line, ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(events: &[SseEvent], ending: &str) -> String {
        let mut out = String::from(": hello");
        out.push_str(ending);
        for e in events {
            out.push_str(&format!("event: {}{ending}", e.event));
            if let Some(id) = &e.id {
                out.push_str(&format!("id:{id}{ending}"));
            }
            for line in e.data.split('\n') {
                out.push_str(&format!("data: {line}{ending}"));
            }
            out.push_str(ending);
            out.push_str(&format!(":keep-alive{ending}{ending}"));
        }
        out
    }

    #[test]
    fn reads_what_axum_writes() {
        let mut parser = SseParser::default();
        let got =
            parser.push(b"event: ready\nid: 00000000000000ff-0\nretry: 1000\ndata: {}\n\n:\n\n");
        assert_eq!(
            got,
            vec![SseEvent {
                event: "ready".into(),
                id: Some("00000000000000ff-0".into()),
                data: "{}".into()
            }]
        );
    }

    proptest! {
        /// Any events, any line ending, cut into chunks anywhere: the same events come out.
        #[test]
        fn round_trips_in_any_chunks(
            events in proptest::collection::vec(
                ("[a-z]{1,8}", proptest::option::of("[0-9a-f]{1,16}-[0-9]{1,4}"), "[ -~]{0,20}(\n[ -~]{0,10}){0,2}"),
                0..6,
            ),
            ending in prop_oneof![Just("\n"), Just("\r\n"), Just("\r")],
            cuts in proptest::collection::vec(1usize..7, 0..40),
        ) {
            let mut events: Vec<SseEvent> = events
                .into_iter()
                .map(|(event, id, data)| SseEvent { event, id, data })
                .collect();
            // An id stays until another replaces it.
            let mut last = None;
            for e in &mut events {
                if e.id.is_some() { last = e.id.clone(); } else { e.id = last.clone(); }
            }
            let text = encode(&events, ending);
            let bytes = text.as_bytes();
            let mut parser = SseParser::default();
            let mut got = Vec::new();
            let mut at = 0;
            for cut in cuts {
                let end = (at + cut).min(bytes.len());
                got.extend(parser.push(&bytes[at..end]));
                at = end;
            }
            got.extend(parser.push(&bytes[at..]));
            prop_assert_eq!(got, events);
        }
    }
}
