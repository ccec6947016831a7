//! Whole cycles against a simulated infrastructure Prometheus (wiremock answering remote read
//! with streamed XOR-chunk frames, or with the sampled answer) and a simulated remote-write
//! target that records what it receives. Not real servers: the e2e collector suite runs the
//! same path against real Prometheus processes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::*;
use crate::backend::{BackendPool, BackendSettings, GroupSettings};
use crate::collector::stream::{CONTENT_TYPE_STREAMED, ResponseType, encode_frame};
use crate::collector::xor::XorEncoder;
use crate::remote_write::proto::{
    Chunk, ChunkedReadResponse, ChunkedSeries, QueryResult, ReadRequest, ReadResponse, chunk,
    label_matcher, read_request,
};
use crate::remote_write::{Label, Sample, WriteRequest};
use crate::tenant::{Clause, LabelMatcher, MatchKind, MetricAccessSpec, Policy};

/// Prometheus cuts chunks every 120 samples; here every 120 s of 1 s samples.
const CHUNK_MS: i64 = 120_000;

#[derive(Clone, Copy, PartialEq)]
enum Answer {
    Streamed,
    Sampled,
    /// Streamed, with a byte of the second frame flipped.
    Corrupt,
}

struct SimSeries {
    labels: Vec<Label>,
    /// No samples at or after this time.
    until_ms: i64,
}

/// A simulated infrastructure Prometheus: 1 s samples at whole seconds, value = seconds +
/// 1e6 × series number, for every series of its store that a query's matchers select.
struct SimSource {
    series: Mutex<Vec<SimSeries>>,
    answer: Mutex<Answer>,
    requests: Mutex<Vec<ReadRequest>>,
}

fn value_at(i: usize, t: i64) -> f64 {
    (t / 1000) as f64 + 1e6 * i as f64
}

fn matches(m: &crate::remote_write::proto::LabelMatcher, labels: &[Label]) -> bool {
    let v = labels
        .iter()
        .find(|l| l.name == m.name)
        .map_or("", |l| l.value.as_str());
    let re = || regex::Regex::new(&format!("^(?:{})$", m.value)).map(|r| r.is_match(v));
    match label_matcher::Type::try_from(m.r#type) {
        Ok(label_matcher::Type::Eq) => v == m.value,
        Ok(label_matcher::Type::Neq) => v != m.value,
        Ok(label_matcher::Type::Re) => re().unwrap_or(false),
        Ok(label_matcher::Type::Nre) => !re().unwrap_or(true),
        Err(_) => false,
    }
}

impl SimSource {
    /// Chunks of series `i` overlapping `[start, end]`, whole (as Prometheus sends them).
    fn chunks(&self, i: usize, until: i64, start: i64, end: i64) -> Vec<Chunk> {
        let mut out = Vec::new();
        let mut bucket = start.div_euclid(CHUNK_MS) * CHUNK_MS;
        while bucket <= end && bucket < until {
            let mut e = XorEncoder::new();
            let mut t = bucket;
            while t < bucket + CHUNK_MS && t < until {
                e.append(t, value_at(i, t));
                t += 1000;
            }
            out.push(Chunk {
                min_time_ms: bucket,
                max_time_ms: t - 1000,
                r#type: chunk::Encoding::Xor as i32,
                data: e.bytes().into(),
            });
            bucket += CHUNK_MS;
        }
        out
    }
}

impl Respond for SimSource {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let Ok(read) = crate::remote_write::decode_snappy::<ReadRequest>(&request.body, 1 << 20)
        else {
            return ResponseTemplate::new(400);
        };
        self.requests.lock().unwrap().push(read.clone());
        let answer = *self.answer.lock().unwrap();
        let streamed = read.accepted_response_types.first()
            == Some(&(read_request::ResponseType::StreamedXorChunks as i32));
        let store = self.series.lock().unwrap();
        if answer == Answer::Sampled || !streamed {
            let results = read
                .queries
                .iter()
                .map(|q| QueryResult {
                    timeseries: store
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| q.matchers.iter().all(|m| matches(m, &s.labels)))
                        .map(|(i, s)| TimeSeries {
                            labels: s.labels.clone(),
                            samples: (q.start_timestamp_ms
                                ..=q.end_timestamp_ms.min(s.until_ms - 1))
                                .filter(|t| t.rem_euclid(1000) == 0)
                                .map(|t| Sample {
                                    value: value_at(i, t),
                                    timestamp: t,
                                })
                                .collect(),
                            ..Default::default()
                        })
                        .collect(),
                })
                .collect();
            return ResponseTemplate::new(200)
                .insert_header("Content-Type", "application/x-protobuf")
                .set_body_bytes(crate::remote_write::encode_snappy(&ReadResponse {
                    results,
                }));
        }
        let mut body = Vec::new();
        let mut frames = 0;
        for (qi, q) in read.queries.iter().enumerate() {
            for (i, s) in store.iter().enumerate() {
                if !q.matchers.iter().all(|m| matches(m, &s.labels)) {
                    continue;
                }
                let chunks = self.chunks(i, s.until_ms, q.start_timestamp_ms, q.end_timestamp_ms);
                // At most two chunks a frame: long series span frames, as with Prometheus.
                for part in chunks.chunks(2) {
                    let mut frame = encode_frame(&ChunkedReadResponse {
                        chunked_series: vec![ChunkedSeries {
                            labels: s.labels.clone(),
                            chunks: part.to_vec(),
                        }],
                        query_index: qi as i64,
                    });
                    frames += 1;
                    if answer == Answer::Corrupt && frames == 2 {
                        let last = frame.len() - 1;
                        frame[last] ^= 0x40;
                    }
                    body.extend(frame);
                }
            }
        }
        ResponseTemplate::new(200)
            .insert_header("Content-Type", CONTENT_TYPE_STREAMED)
            .set_body_bytes(body)
    }
}

/// A simulated remote-write target: records every request.
#[derive(Default)]
struct SimTarget {
    received: Mutex<Vec<WriteRequest>>,
    status: Mutex<u16>,
}

struct SharedTarget(Arc<SimTarget>);

impl Respond for SharedTarget {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let status = *self.0.status.lock().unwrap();
        if status == 204
            && let Ok(w) = crate::remote_write::decode_write_request(&request.body, 64 << 20)
        {
            self.0.received.lock().unwrap().push(w);
        }
        ResponseTemplate::new(status)
    }
}

struct TestInputs {
    config: Arc<RemoteWriteConfig>,
    backends: Arc<BackendPool>,
}

impl Inputs for TestInputs {
    fn config(&self) -> Arc<RemoteWriteConfig> {
        self.config.clone()
    }
    fn backends(&self) -> Arc<BackendPool> {
        self.backends.clone()
    }
}

fn lbl(name: &str, value: &str) -> Label {
    Label {
        name: name.into(),
        value: value.into(),
    }
}

fn sim_series(name: &str, pod: &str) -> SimSeries {
    SimSeries {
        labels: vec![
            lbl("__name__", name),
            lbl("namespace", "t"),
            lbl("pod", pod),
        ],
        until_ms: i64::MAX,
    }
}

struct Sim {
    source: Arc<SimSource>,
    _source_server: MockServer,
    target: Arc<SimTarget>,
    _target_server: MockServer,
    runner: Runner,
}

async fn sim(answer: Answer, tune: impl FnOnce(&mut RemoteWriteConfig)) -> Sim {
    let source = Arc::new(SimSource {
        series: Mutex::new(vec![
            sim_series("a", "1"),
            sim_series("a", "2"),
            sim_series("b", "1"),
        ]),
        answer: Mutex::new(answer),
        requests: Mutex::new(Vec::new()),
    });
    let source_server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/read"))
        .respond_with(SharedSource(source.clone()))
        .mount(&source_server)
        .await;
    let target = Arc::new(SimTarget {
        status: Mutex::new(204),
        ..Default::default()
    });
    let target_server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/write"))
        .respond_with(SharedTarget(target.clone()))
        .mount(&target_server)
        .await;
    let url = format!("{}/api/v1/write", target_server.uri());
    let mut config = RemoteWriteConfig {
        enabled: true,
        collection_lag: Duration::from_millis(1),
        allowed_urls: vec![regex::escape(&url)],
        batch_size: 2,
        min_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        request_timeout: Duration::from_secs(10),
        ..RemoteWriteConfig::default()
    };
    tune(&mut config);
    let config = Arc::new(config);
    let spec: MetricAccessSpec = serde_json::from_value(serde_json::json!({
        "metrics": ["a", "b"],
        "remoteWrite": {
            "enabled": true,
            "target": {"type": "remote_write"},
            "remoteWrite": {"url": url},
            "extraLabels": {"tenant": "t"},
        },
    }))
    .unwrap();
    // Two overlapping clauses: "a" and "b" both come back for the second one.
    let policy = Policy {
        clauses: vec![
            Clause::new(vec![
                LabelMatcher::new("__name__", MatchKind::Regex, "a"),
                LabelMatcher::equal("namespace", "t"),
            ]),
            Clause::new(vec![
                LabelMatcher::new("__name__", MatchKind::Regex, "a|b"),
                LabelMatcher::equal("namespace", "t"),
            ]),
        ],
    };
    let backends = BackendPool::new(
        BackendSettings {
            groups: vec![GroupSettings {
                name: "infra".into(),
                members: vec![source_server.uri()],
            }],
            probe_interval: Duration::from_secs(600),
            probe_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
            max_concurrent_requests: 4,
        },
        Arc::new(Metrics::new()),
    )
    .unwrap();
    let start = JobStart {
        resource: Arc::new(AccessResource {
            namespace: "t".into(),
            name: "cr".into(),
            file: None,
            spec: spec.clone(),
            policy: Arc::new(policy),
        }),
        interval: Duration::from_secs(5),
        program: RelabelProgram::default(),
        config: config.clone(),
        inputs: Arc::new(TestInputs {
            config,
            backends: Arc::new(backends),
        }),
        metrics: Arc::new(Metrics::new()),
        client: crate::delivery::http_client().unwrap(),
        fingerprint: String::new(),
        resume_after_ms: None,
    };
    let (_stop, stop_rx) = watch::channel(false);
    // Keep the sender alive for the whole test: dropping it would stop the workers.
    std::mem::forget(_stop);
    let runner = Runner {
        shaper: Shaper::new(
            RelabelProgram::default(),
            &BTreeMap::from([("tenant".to_string(), "t".to_string())]),
            false,
        ),
        start,
        preferred: None,
        avoid: None,
        status: Arc::new(Mutex::new(JobStatus::default())),
        deliveries: Arc::new(Mutex::new(BTreeMap::new())),
        workers: Arc::new(Mutex::new(Vec::new())),
        stop_rx,
    };
    Sim {
        source,
        _source_server: source_server,
        target,
        _target_server: target_server,
        runner,
    }
}

struct SharedSource(Arc<SimSource>);

impl Respond for SharedSource {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        self.0.respond(request)
    }
}

impl Sim {
    /// Wait (bounded) until every queue is empty.
    async fn drained(&self) {
        for _ in 0..500 {
            let depth: usize = self
                .runner
                .deliveries
                .lock()
                .unwrap()
                .values()
                .map(|d| d.depth())
                .sum();
            if depth == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("queues never drained");
    }

    /// Everything the target received: pod → (timestamp, value bits), plus each series' labels.
    fn received(&self) -> BTreeMap<String, Vec<(i64, u64)>> {
        let mut out: BTreeMap<String, Vec<(i64, u64)>> = BTreeMap::new();
        for w in self.target.received.lock().unwrap().iter() {
            for t in &w.timeseries {
                let key = t
                    .labels
                    .iter()
                    .map(|l| format!("{}={}", l.name, l.value))
                    .collect::<Vec<_>>()
                    .join(",");
                out.entry(key)
                    .or_default()
                    .extend(t.samples.iter().map(|s| (s.timestamp, s.value.to_bits())));
            }
        }
        out
    }

    fn status(&self) -> JobStatus {
        self.runner.status.lock().unwrap().clone()
    }
}

/// What the source holds for `[start, end]`, keyed as [`Sim::received`] keys the target's.
fn expected(source: &SimSource, start: i64, end: i64) -> BTreeMap<String, Vec<(i64, u64)>> {
    let mut out = BTreeMap::new();
    for (i, s) in source.series.lock().unwrap().iter().enumerate() {
        let samples: Vec<(i64, u64)> = (start..=end.min(s.until_ms - 1))
            .filter(|t| t.rem_euclid(1000) == 0)
            .map(|t| (t, value_at(i, t).to_bits()))
            .collect();
        if samples.is_empty() {
            continue;
        }
        let mut labels: Vec<String> = s
            .labels
            .iter()
            .map(|l| format!("{}={}", l.name, l.value))
            .collect();
        labels.push("tenant=t".into());
        labels.sort();
        out.insert(labels.join(","), samples);
    }
    out
}

#[tokio::test]
async fn simulated_streamed_source_every_sample_reaches_the_target_once() {
    let mut sim = sim(Answer::Streamed, |_| {}).await;
    // A 10-minute window: 5 chunks a series, over 3 frames, edges inside chunks.
    let last_end = now_ms() - 600_500;
    let end = sim.runner.cycle(last_end).await;
    assert!(end > last_end, "{:?}", sim.status());
    let status = sim.status();
    assert_eq!(status.state, "ok", "{status:?}");
    let read = status.last_read.unwrap();
    assert_eq!(read.response_type, ResponseType::StreamedXorChunks);
    assert!(read.frames >= 3 * 3, "{read:?}");
    assert!(read.samples_outside_window > 0, "chunks overlap the edges");
    let asked = sim.source.requests.lock().unwrap()[0]
        .accepted_response_types
        .clone();
    assert_eq!(
        asked.first(),
        Some(&(read_request::ResponseType::StreamedXorChunks as i32))
    );
    let shape = status.last_shape.unwrap();
    assert_eq!(shape.series_in, 3);
    assert_eq!(
        shape.series_duplicate, 2,
        "a/1 and a/2 again for the second clause"
    );
    sim.drained().await;
    assert_eq!(sim.received(), expected(&sim.source, last_end + 1, end));

    // "b" has no samples after this window: the next cycle copies the rest and writes b's
    // marker at its end, found by reading the previous window again.
    sim.source.series.lock().unwrap()[2].until_ms = end + 1;
    let requests_before = sim.source.requests.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let end2 = sim.runner.cycle(end).await;
    assert!(end2 > end);
    let requests = sim.source.requests.lock().unwrap().clone();
    assert_eq!(
        requests.len(),
        requests_before + 2,
        "the window, then the re-read"
    );
    let again = &requests[requests_before + 1].queries[0];
    assert_eq!(
        again.end_timestamp_ms, end,
        "re-read ends where the last window did"
    );
    assert_eq!(
        again.start_timestamp_ms,
        end - end.rem_euclid(1000),
        "from b's newest sample"
    );
    sim.drained().await;
    let got = sim.received();
    let b = got
        .iter()
        .find(|(k, _)| k.contains("__name__=b"))
        .map(|(_, v)| v.clone())
        .unwrap();
    let (t, v) = *b.last().unwrap();
    assert_eq!((t, v), (end2, crate::collector::shape::STALE_NAN_BITS));
    assert_eq!(sim.status().last_shape.unwrap().stale_markers, 1);
    let mut want = expected(&sim.source, last_end + 1, end2);
    for (k, v) in want.iter_mut() {
        if k.contains("__name__=b") {
            v.push((end2, crate::collector::shape::STALE_NAN_BITS));
        }
    }
    assert_eq!(got, want, "every sample once, and the marker");
}

#[tokio::test]
async fn simulated_sampled_answer_is_the_fallback() {
    let mut sim = sim(Answer::Sampled, |_| {}).await;
    let last_end = now_ms() - 60_500;
    let end = sim.runner.cycle(last_end).await;
    let status = sim.status();
    assert_eq!(status.state, "ok", "{status:?}");
    assert_eq!(
        status.last_read.unwrap().response_type,
        ResponseType::Samples
    );
    sim.drained().await;
    assert_eq!(sim.received(), expected(&sim.source, last_end + 1, end));
}

#[tokio::test]
async fn simulated_corrupt_frame_fails_the_cycle_and_the_window_is_read_again() {
    let mut sim = sim(Answer::Corrupt, |_| {}).await;
    let last_end = now_ms() - 300_500;
    let end = sim.runner.cycle(last_end).await;
    assert_eq!(end, last_end, "the window does not advance");
    let status = sim.status();
    assert_eq!(status.state, "read_error");
    let error = status.last_error.unwrap();
    assert!(
        error.contains("corrupted") && error.contains("reads this window again"),
        "{error}"
    );
    *sim.source.answer.lock().unwrap() = Answer::Streamed;
    let end = sim.runner.cycle(last_end).await;
    assert!(end > last_end);
    sim.drained().await;
    // The part queued before the corrupt frame came again: the target holds each sample, with
    // duplicates of identical samples only (which Prometheus accepts).
    let mut got = sim.received();
    for v in got.values_mut() {
        v.sort();
        v.dedup();
    }
    assert_eq!(got, expected(&sim.source, last_end + 1, end));
}

#[tokio::test]
async fn a_full_queue_of_a_healthy_target_waits_instead_of_dropping() {
    // One request of room, one series a batch, 3 series: the cycle waits for the worker.
    let mut sim = sim(Answer::Streamed, |c| {
        c.queue_capacity = 1;
        c.batch_size = 1;
    })
    .await;
    let last_end = now_ms() - 600_500;
    let end = sim.runner.cycle(last_end).await;
    sim.drained().await;
    let stats: Vec<_> = sim
        .runner
        .deliveries
        .lock()
        .unwrap()
        .values()
        .map(|d| d.stats())
        .collect();
    assert_eq!(stats[0].dropped_queue_full, 0, "{stats:?}");
    assert_eq!(sim.received(), expected(&sim.source, last_end + 1, end));
}

#[tokio::test]
async fn a_failing_target_drops_the_oldest_without_holding_the_cycle() {
    let mut sim = sim(Answer::Streamed, |c| {
        c.queue_capacity = 1;
        c.batch_size = 1;
    })
    .await;
    *sim.target.status.lock().unwrap() = 503;
    let last_end = now_ms() - 60_500;
    // Several cycles complete although nothing can be delivered.
    let mut end = last_end;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        end = sim.runner.cycle(end).await;
    }
    assert_eq!(sim.status().cycles_ok, 3);
    let stats: Vec<_> = sim
        .runner
        .deliveries
        .lock()
        .unwrap()
        .values()
        .map(|d| d.stats())
        .collect();
    assert!(stats[0].dropped_queue_full > 0, "{stats:?}");
    assert!(stats[0].requests_retried > 0, "{stats:?}");
}
