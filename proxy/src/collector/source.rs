//! Where the collector reads: every raw sample of a time window, with its own timestamp, from
//! one infrastructure Prometheus (failing over to the next member of the HA group), by remote
//! read (`/api/v1/read`, one query per policy clause, streamed XOR chunks when the server offers
//! them, see [`super::stream`]), or by range-selector queries (`{clause}[<window>]` evaluated at
//! the window's end) where remote read is not offered, as behind prom-label-proxy.
//!
//! [`open`] picks the member and returns a [`SeriesReader`]: a streamed answer is read frame by
//! frame as the collector consumes it; a sampled answer (servers without streaming) and
//! query-mode answers are decoded whole first, so only the streamed path is bounded in memory.
//!
//! Not instant queries (they stamp the evaluation time on the latest sample and invent
//! samples) and not `/federate` (latest sample only): both lose or invent data whenever the
//! interval is longer than the scrape interval.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

mod query;

use query::query_range_selectors;

use super::stream::{RawSeries, ReadStats, ResponseType, SeriesReader};
use crate::backend::BackendPool;
use crate::client::describe;
use crate::remote_write::proto::{label_matcher, read_request};
use crate::remote_write::{
    self, CONTENT_ENCODING, CONTENT_ENCODING_SNAPPY, CONTENT_TYPE, CONTENT_TYPE_PROTOBUF, Label,
    ReadRequest, ReadResponse, TimeSeries,
};
use crate::tenant::{Clause, MatchKind, Policy};

/// Largest decompressed remote-read answer accepted (Prometheus' own default sample limit,
/// 5e7 samples, is far beyond what one tenant window should hold).
const MAX_READ_BYTES: usize = 512 * 1024 * 1024;

/// An inclusive window of sample timestamps in milliseconds: `(last_end, end]` is sent as
/// `[last_end + 1, end]`, which is what remote read's `[start, end]` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_ms: i64,
    pub end_ms: i64,
}

/// How samples are read (`remote_write.collection_method`).
pub use crate::config::CollectionMethod as Method;

/// Where to read from.
#[derive(Debug, Clone)]
pub enum Upstream {
    /// The read group of the backend pool (its health probes choose the member).
    Backends(Arc<BackendPool>),
    /// A prom-label-proxy (or any remote-read endpoint) that enforces the tenant itself; the
    /// tenant goes in `header`.
    LabelProxy {
        url: String,
        header: String,
        client: reqwest::Client,
    },
}

/// What one read returned, whole (tests and tools; the collector reads with [`open`]).
#[derive(Debug, Default)]
pub struct ReadOutcome {
    /// Series with their samples, de-duplicated across clauses, labels sorted.
    pub series: Vec<TimeSeries>,
    /// Base URL of the member that answered.
    pub member: String,
    /// Members that failed before it, with the reason.
    pub failed: Vec<(String, String)>,
    /// How it answered.
    pub stats: ReadStats,
}

/// An answer being read: the member that answers it and the ones that failed before.
#[derive(Debug)]
pub struct Opened {
    pub reader: SeriesReader,
    pub member: String,
    pub failed: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading the answer of {member} failed: {error}")]
    Stream { member: String, error: String },
    #[error("no healthy infrastructure Prometheus to read from")]
    NoBackend,
    #[error("every infrastructure Prometheus failed: {}", describe_failures(.0))]
    AllFailed(Vec<(String, String)>),
    #[error("invalid policy clause: {0}")]
    Clause(String),
}

fn describe_failures(failures: &[(String, String)]) -> String {
    failures
        .iter()
        .map(|(member, why)| format!("{member}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The remote-read request for `policy` over `window`: one query per clause, streamed XOR chunks
/// preferred (Prometheus ≥ 2.13 answers with the first type it supports), whole samples else.
pub fn read_request(policy: &Policy, window: Window) -> ReadRequest {
    ReadRequest {
        queries: policy
            .clauses
            .iter()
            .map(|clause| query(clause, window))
            .collect(),
        accepted_response_types: vec![
            read_request::ResponseType::StreamedXorChunks as i32,
            read_request::ResponseType::Samples as i32,
        ],
    }
}

fn query(clause: &Clause, window: Window) -> remote_write::proto::Query {
    remote_write::proto::Query {
        start_timestamp_ms: window.start_ms,
        end_timestamp_ms: window.end_ms,
        matchers: clause
            .matchers
            .iter()
            .map(|m| remote_write::proto::LabelMatcher {
                r#type: match m.kind {
                    MatchKind::Equal => label_matcher::Type::Eq,
                    MatchKind::NotEqual => label_matcher::Type::Neq,
                    MatchKind::Regex => label_matcher::Type::Re,
                    MatchKind::NotRegex => label_matcher::Type::Nre,
                } as i32,
                name: m.name.clone(),
                value: m.value.clone(),
            })
            .collect(),
        hints: None,
    }
}

/// Read `window` for `policy` whole (see [`open`] for the arguments).
pub async fn read(
    upstream: &Upstream,
    tenant: &str,
    policy: &Policy,
    window: Window,
    timeout: Duration,
    prefer: Option<&str>,
    method: Method,
) -> Result<ReadOutcome, ReadError> {
    let Opened {
        mut reader,
        member,
        failed,
    } = open(
        upstream, tenant, policy, window, timeout, prefer, None, method,
    )
    .await?;
    let mut all = Vec::new();
    loop {
        match reader.next().await {
            Ok(Some(series)) => all.push(series),
            Ok(None) => break,
            Err(error) => return Err(ReadError::Stream { member, error }),
        }
    }
    Ok(ReadOutcome {
        series: merge_results(all),
        member,
        failed,
        stats: reader.stats,
    })
}

/// Start reading `window` for `policy` (the CR's compiled policy: never wider than the read
/// path's). `tenant` is sent to a label proxy only. `prefer`: the member that answered last,
/// tried first while it is healthy, so consecutive windows come from the same scraper (HA
/// members stamp their samples differently); `avoid`: a member whose answer broke off last
/// time, tried last. A member that can't be reached or answers an error is failed over; once
/// an answer is streaming, an error in it fails the read (see [`SeriesReader::next`]).
#[allow(clippy::too_many_arguments)]
pub async fn open(
    upstream: &Upstream,
    tenant: &str,
    policy: &Policy,
    window: Window,
    timeout: Duration,
    prefer: Option<&str>,
    avoid: Option<&str>,
    method: Method,
) -> Result<Opened, ReadError> {
    if policy.clauses.is_empty() {
        return Ok(Opened {
            reader: SeriesReader::decoded(Vec::new(), window, ResponseType::Samples),
            member: String::new(),
            failed: Vec::new(),
        });
    }
    // A label proxy offers no remote read.
    let method = match upstream {
        Upstream::LabelProxy { .. } => Method::Query,
        Upstream::Backends(_) => method,
    };
    let body = bytes::Bytes::from(remote_write::encode_snappy(&read_request(policy, window)));
    let (client, members, header) = match upstream {
        Upstream::Backends(pool) => {
            let members: Vec<String> = pool
                .routable_read_members()
                .iter()
                .map(|m| m.url.clone())
                .collect();
            (pool.client().clone(), members, None)
        }
        Upstream::LabelProxy {
            url,
            header,
            client,
        } => (
            client.clone(),
            vec![url.trim_end_matches('/').to_string()],
            Some(header.as_str()),
        ),
    };
    if members.is_empty() {
        return Err(ReadError::NoBackend);
    }
    let mut members = members;
    if let Some(at) = avoid.and_then(|a| members.iter().position(|m| m == a)) {
        members[at..].rotate_left(1);
    }
    if let Some(at) = prefer.and_then(|p| members.iter().position(|m| m == p)) {
        members[..=at].rotate_right(1);
    }
    let mut failed = Vec::new();
    for member in members {
        let tenant_header = header.map(|h| (h, tenant));
        let result = match method {
            Method::RemoteRead => {
                let mut request = client
                    .post(format!("{member}/api/v1/read"))
                    .header(CONTENT_ENCODING, CONTENT_ENCODING_SNAPPY)
                    .header(CONTENT_TYPE, CONTENT_TYPE_PROTOBUF)
                    .header("X-Prometheus-Remote-Read-Version", "0.1.0")
                    .body(body.clone());
                if let Some((name, value)) = tenant_header {
                    request = request.header(name, value);
                }
                remote_read(request, window, policy.clauses.len(), timeout).await
            }
            Method::Query => {
                query_range_selectors(&client, &member, tenant_header, policy, window, timeout)
                    .await
                    .map(|series| SeriesReader::decoded(series, window, ResponseType::Query))
            }
        };
        match result {
            Ok(reader) => {
                return Ok(Opened {
                    reader,
                    member,
                    failed,
                });
            }
            Err(why) => {
                tracing::warn!(%member, tenant, error = %why, "remote read failed; trying the next member");
                failed.push((member, why));
            }
        }
    }
    Err(ReadError::AllFailed(failed))
}

/// Send a remote read; a streamed answer is returned unread, a sampled one decoded whole.
/// `timeout` bounds the wait for the answer's head, then each wait for more of its body (not
/// the whole body: a large window streams for longer, and the collector pauses reading while
/// a target's queue has no room).
async fn remote_read(
    request: reqwest::RequestBuilder,
    window: Window,
    queries: usize,
    timeout: Duration,
) -> Result<SeriesReader, String> {
    let response = tokio::time::timeout(timeout, request.send())
        .await
        .map_err(|_| format!("no answer within {} s", timeout.as_secs()))?
        .map_err(|e| describe(&e))?;
    let status = response.status();
    if !status.is_success() {
        let bytes = tokio::time::timeout(timeout, response.bytes())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
        return Err(format!("HTTP {}: {}", status.as_u16(), text.trim()));
    }
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.starts_with("application/x-streamed-protobuf") {
        if !content_type.contains("proto=prometheus.chunkedreadresponse") {
            return Err(format!(
                "a streamed answer of an unknown kind ({content_type}); expected {}",
                super::stream::CONTENT_TYPE_STREAMED
            ));
        }
        return Ok(SeriesReader::streamed(response, window, queries, timeout));
    }
    if !(content_type.is_empty() || content_type.starts_with(CONTENT_TYPE_PROTOBUF)) {
        return Err(format!(
            "unexpected content type {content_type:?} (expected a streamed or protobuf remote-read answer)"
        ));
    }
    // A server without streaming: the whole answer at once (not bounded by frames).
    let bytes = tokio::time::timeout(timeout, response.bytes())
        .await
        .map_err(|_| format!("the answer took longer than {} s", timeout.as_secs()))?
        .map_err(|e| describe(&e))?;
    let received = bytes.len() as u64;
    let answer = remote_write::decode_snappy::<ReadResponse>(&bytes, MAX_READ_BYTES)
        .map_err(|e| format!("unreadable remote-read answer: {e}"))?;
    let mut reader = SeriesReader::decoded(sampled(answer, window), window, ResponseType::Samples);
    reader.stats.bytes = received;
    Ok(reader)
}

/// A sampled answer's series, query by query, samples outside the window dropped (as the
/// streamed path does; Prometheus already trims them, other servers may not).
fn sampled(answer: ReadResponse, window: Window) -> Vec<RawSeries> {
    let mut out = Vec::new();
    for (query, result) in answer.results.into_iter().enumerate() {
        for series in result.timeseries {
            let mut samples = series.samples;
            samples.retain(|s| s.timestamp >= window.start_ms && s.timestamp <= window.end_ms);
            if samples.is_empty() {
                continue;
            }
            out.push(RawSeries {
                query,
                labels: series.labels.into(),
                samples,
            });
        }
    }
    out
}

/// One series per label set: clauses may overlap, and then both results hold the series with
/// the same samples (the later query's copy is ignored); a series streamed over several frames
/// of one query is put back together.
fn merge_results(all: Vec<RawSeries>) -> Vec<TimeSeries> {
    let mut by_labels: BTreeMap<Vec<Label>, (usize, TimeSeries)> = BTreeMap::new();
    for series in all {
        let mut labels = series.labels.to_labels();
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        match by_labels.entry(labels.clone()) {
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert((
                    series.query,
                    TimeSeries {
                        labels,
                        samples: series.samples,
                        ..Default::default()
                    },
                ));
            }
            std::collections::btree_map::Entry::Occupied(mut e) => {
                let (query, kept) = e.get_mut();
                if *query == series.query {
                    kept.samples.extend(series.samples);
                }
            }
        }
    }
    by_labels.into_values().map(|(_, t)| t).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::LabelMatcher;

    #[test]
    fn one_query_per_clause_with_the_exact_window() {
        let policy = Policy {
            clauses: vec![
                Clause::new(vec![
                    LabelMatcher::new("__name__", MatchKind::Regex, "a|b"),
                    LabelMatcher::equal("namespace", "t"),
                ]),
                Clause::new(vec![LabelMatcher::new("job", MatchKind::NotEqual, "x")]),
            ],
        };
        let req = read_request(
            &policy,
            Window {
                start_ms: 1001,
                end_ms: 2000,
            },
        );
        assert_eq!(req.queries.len(), 2);
        assert_eq!(
            req.accepted_response_types,
            [
                read_request::ResponseType::StreamedXorChunks as i32,
                read_request::ResponseType::Samples as i32
            ],
            "streamed chunks first"
        );
        assert!(
            req.queries
                .iter()
                .all(|q| q.start_timestamp_ms == 1001 && q.end_timestamp_ms == 2000)
        );
        let first = &req.queries[0].matchers;
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].name, "__name__");
        assert_eq!(first[0].r#type, label_matcher::Type::Re as i32);
        assert_eq!(first[1].value, "t");
        assert_eq!(
            req.queries[1].matchers[0].r#type,
            label_matcher::Type::Neq as i32
        );
    }

    #[test]
    fn overlapping_clause_results_are_merged() {
        let series = |name: &str| TimeSeries {
            labels: vec![
                Label {
                    name: "z".into(),
                    value: "1".into(),
                },
                Label {
                    name: "__name__".into(),
                    value: name.into(),
                },
            ],
            ..Default::default()
        };
        let raw = |query: usize, name: &str, t: i64| RawSeries {
            query,
            labels: series(name).labels.into(),
            samples: vec![remote_write::Sample {
                value: 1.0,
                timestamp: t,
            }],
        };
        let merged = merge_results(vec![
            raw(0, "a", 1),
            raw(0, "b", 1),
            // The next frame of "b" in the same query: put back together.
            raw(0, "b", 2),
            // "b" again for the second clause: the same samples, ignored.
            raw(1, "b", 1),
            raw(1, "b", 2),
        ]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].labels[0].name, "__name__", "labels sorted");
        let times: Vec<i64> = merged[1].samples.iter().map(|s| s.timestamp).collect();
        assert_eq!(times, [1, 2]);
    }
}
