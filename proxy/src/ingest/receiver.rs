//! One remote-write request, from body to answer: headers, decoding, the limits of every series,
//! the tenant's pipeline, then all-or-nothing queueing. The [`Outcome`] follows remote-write
//! semantics (the HTTP layer answers it: 204 when the data is safely queued, 400, not retried
//! by senders, for data it refuses, 503, retried, when it cannot take the request now), never
//! a success for data it then loses.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::Ingest;
use super::buffers::RequestBuffers;
use super::forward::Outgoing;
use super::limits::{self, Refusal};
use super::pipeline::{Context, TenantPipeline, Verdict};
use crate::config::ingest::IngestLimits;
use crate::relabel::{CowLabel, Text};
use crate::remote_write::TimeSeries;
use crate::remote_write::wire::{LabelRef, SeriesRef, eq_short};
use crate::telemetry::{DropLabels, ReasonLabels};

/// What became of a request; `http::ingest` answers it with a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every series the gateway kept is safely queued.
    Accepted,
    /// The request, or some of its series, is refused for its data: a sender must not retry it.
    Refused,
    /// The body is over a size limit (compressed or decompressed).
    TooLarge,
    /// A content type or encoding the gateway does not read.
    UnsupportedMedia,
    /// The gateway is disabled.
    Disabled,
    /// Nothing was queued (the forwarding queues are full): retry later.
    Busy,
}

/// The answer to a sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub outcome: Outcome,
    pub message: String,
    /// Seconds, with [`Outcome::Busy`].
    pub retry_after: Option<u64>,
}

impl Answer {
    fn new(outcome: Outcome, message: impl Into<String>) -> Answer {
        Answer {
            outcome,
            message: message.into(),
            retry_after: None,
        }
    }
}

/// One request's series on their way through the checks and rules.
struct Batch<'r, 'a> {
    tenant: &'r str,
    /// The tenant as a metric label value (see `Governance::has_rules`).
    drop_tenant: &'r str,
    pipeline: &'r TenantPipeline,
    limits: &'r IngestLimits,
    now_ms: i64,
    cx: Context<'r>,
    kept: Vec<Outgoing<'a>>,
    /// Series the rewriting rules kept, waiting for the tracker's admission.
    pending: Vec<Pending<'a>>,
    /// The labels of the series the rules are running on (kept across series).
    cow: Vec<CowLabel<'a>>,
    refusals: Vec<Refusal>,
    /// Series the rules dropped, by reason: counted once per request (a counter lookup per
    /// dropped series, with its label strings, was a few percent of a request with rules).
    drops: Vec<(&'static str, u64)>,
    /// Series kept as the bytes they came as.
    unchanged: usize,
}

impl Batch<'_, '_> {
    fn drop_one(&mut self, reason: &'static str) {
        match self.drops.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => self.drops.push((reason, 1)),
        }
    }
}

/// The metric name of borrowed labels, borrowed for as long as they are.
fn name_of<'a>(labels: &[LabelRef<'a>]) -> &'a str {
    labels
        .iter()
        .find(|l| eq_short(l.name.as_bytes(), b"__name__"))
        .map_or("", |l| l.value)
}

/// A series past the rewriting rules, before the tracker's admission.
struct Pending<'a> {
    out: Outgoing<'a>,
    metric: Text<'a>,
}

impl Ingest {
    /// Handle one request of `tenant` (already identified). The HTTP layer counts and logs the
    /// answer with its status code.
    pub fn receive(
        &self,
        tenant: &str,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
        body: Bytes,
    ) -> Answer {
        self.receive_inner(tenant, content_type, content_encoding, body)
    }

    fn refuse(&self, refusal: &Refusal) {
        self.metrics
            .ingest
            .refused_series
            .get_or_create(&ReasonLabels {
                reason: refusal.reason.to_string(),
            })
            .inc();
    }

    fn receive_inner(
        &self,
        tenant: &str,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
        body: Bytes,
    ) -> Answer {
        let settings = self.settings.load();
        let config = &settings.config;
        if let Err(r) = limits::check_headers(content_type, content_encoding) {
            self.refuse(&r);
            return Answer::new(Outcome::UnsupportedMedia, r.message);
        }
        let refused = |r: Refusal| {
            self.refuse(&r);
            let outcome = if r.reason == "too_large" {
                Outcome::TooLarge
            } else {
                Outcome::Refused
            };
            Answer::new(outcome, r.message)
        };
        let RequestBuffers {
            mut raw,
            series,
            labels,
        } = self.buffers.take();
        if let Err(r) = limits::decompress_into(&body, config.max_decompressed_bytes, &mut raw) {
            return refused(r);
        }
        let tables = RequestBuffers::scanned(series, labels);
        let mut request = match limits::decode(&raw, config.max_decompressed_bytes, tables) {
            Ok(r) => r,
            Err(r) => return refused(r),
        };
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        let mut batch = Batch {
            tenant,
            drop_tenant: if settings.governance.has_rules(tenant) {
                tenant
            } else {
                "_other"
            },
            pipeline: settings.governance.for_tenant(tenant),
            limits: &config.limits,
            now_ms,
            cx: Context::new(tenant, &self.tracker, &self.analytics, &self.usage),
            kept: Vec::with_capacity(request.series_count()),
            pending: Vec::with_capacity(request.series_count()),
            cow: Vec::new(),
            refusals: Vec::new(),
            drops: Vec::new(),
            unchanged: 0,
        };
        let mut owned = std::mem::take(&mut request.owned).into_iter();
        for s in &request.series {
            if s.plain {
                self.plain_series(&mut batch, s, request.labels_of(s));
            } else if let Some(t) = owned.next() {
                self.owned_series(&mut batch, t);
            }
        }
        // Decoded by prost as a whole: every series is here.
        for t in owned {
            self.owned_series(&mut batch, t);
        }
        self.admit_pending(&mut batch);
        for (reason, n) in std::mem::take(&mut batch.drops) {
            self.count_drops(batch.drop_tenant, reason, n);
        }
        let Some(forwarder) = &self.forwarder else {
            return Answer::new(Outcome::Disabled, "the ingest gateway is disabled");
        };
        let Batch {
            kept,
            refusals,
            unchanged,
            cx,
            ..
        } = batch;
        drop(cx);
        // Every series forwarded as it came: the body itself can be.
        let original = (unchanged == request.series_count()).then_some(body);
        let metadata = std::mem::take(&mut request.metadata);
        let accepted = forwarder.accept_batch(tenant, kept, metadata, original);
        let (series, labels) = request.into_tables();
        self.buffers.put(RequestBuffers {
            raw,
            series,
            labels,
        });
        match accepted {
            Ok(n) => {
                self.metrics.ingest.forwarded_series.inc_by(n as u64);
            }
            Err(full) => {
                // Nothing was queued: the sender retries the whole request later.
                return Answer {
                    outcome: Outcome::Busy,
                    message: format!("the gateway's forwarding {full}; retry later"),
                    retry_after: Some(5),
                };
            }
        }
        match refusals.first() {
            None => Answer::new(Outcome::Accepted, ""),
            Some(first) => Answer::new(
                Outcome::Refused,
                format!(
                    "{} series refused, the others were accepted; first: {}",
                    refusals.len(),
                    first.message
                ),
            ),
        }
    }

    /// A series read in place: checked on its borrowed labels, then the rewriting rules; it
    /// waits in `b.pending` for the tracker's admission, which the whole request gets at once.
    /// Forwarded as its bytes when no rule changes it, re-encoded with its sample bytes when
    /// one does. A series that does not pass the limits as it is (unsorted labels, say), or a
    /// dry-run pipeline's, is decoded and handled like the others.
    fn plain_series<'a>(&self, b: &mut Batch<'_, 'a>, s: &SeriesRef<'a>, labels: &[LabelRef<'a>]) {
        if b.pipeline.dry_run || !limits::plain_ok(labels, s, b.limits, b.now_ms) {
            match s.to_owned(labels) {
                Some(t) => self.owned_series(b, t),
                // `to_owned` reads what the scanner took (tested in `wire`).
                None => {
                    let r = Refusal {
                        reason: "protobuf",
                        message: "not a remote-write WriteRequest".into(),
                    };
                    self.refuse(&r);
                    b.refusals.push(r);
                }
            }
            return;
        }
        let samples = s.samples as usize;
        let pending = if b.pipeline.rewrites() {
            match b
                .pipeline
                .rewrite_borrowed(labels, samples as u64, &b.cx, &mut b.cow)
            {
                Err(v) => return self.not_kept(b, v),
                Ok(false) => Pending {
                    out: Outgoing::encoded(s.encoded, s.labels_hash(labels), samples),
                    metric: Text::Borrowed(name_of(labels)),
                },
                Ok(true) => {
                    let metric = b
                        .cow
                        .iter()
                        .find(|l| &*l.name == "__name__")
                        .map_or(Text::Borrowed(""), |l| l.value.clone());
                    match s.with_labels(&b.cow) {
                        Some((bytes, hash)) => Pending {
                            out: Outgoing::built(bytes, hash, samples),
                            metric,
                        },
                        // `with_labels` takes every plain series (tested in `wire`).
                        None => {
                            return self.not_kept(
                                b,
                                Verdict::Reject(Refusal {
                                    reason: "protobuf",
                                    message: "not a remote-write WriteRequest".into(),
                                }),
                            );
                        }
                    }
                }
            }
        } else {
            if let Some(v) = b.pipeline.naming(labels, samples as u64, &b.cx) {
                return self.not_kept(b, v);
            }
            Pending {
                out: Outgoing::encoded(s.encoded, s.labels_hash(labels), samples),
                metric: Text::Borrowed(name_of(labels)),
            }
        };
        if pending.metric.is_empty() {
            let v = Verdict::Drop {
                reason: "relabel_removed_name",
            };
            b.pipeline.count(&v, "", samples as u64, &b.cx);
            return self.not_kept(b, v);
        }
        b.pending.push(pending);
    }

    /// The tracker's admission of every pending series at once, then the rules that follow it.
    fn admit_pending(&self, b: &mut Batch<'_, '_>) {
        let pending = std::mem::take(&mut b.pending);
        let mut admits = Vec::with_capacity(pending.len());
        b.cx.admit_batch(
            pending.iter().map(|p| (p.out.hash(), &*p.metric)),
            b.pipeline.cardinality(),
            &mut admits,
        );
        for (p, admit) in pending.into_iter().zip(admits) {
            let samples = p.out.samples() as u64;
            match b
                .pipeline
                .after_admission(b.tenant, &p.metric, admit, samples, &b.cx)
            {
                Verdict::Keep => {
                    b.unchanged += usize::from(p.out.is_encoded());
                    b.kept.push(p.out);
                }
                v => self.not_kept(b, v),
            }
        }
    }

    /// A series decoded into owned labels: checked (and sorted), then the rules.
    fn owned_series(&self, b: &mut Batch<'_, '_>, mut t: TimeSeries) {
        if let Err(r) = limits::check_series(&mut t, b.limits, b.now_ms) {
            self.refuse(&r);
            b.refusals.push(r);
            return;
        }
        match b.pipeline.apply(b.tenant, &mut t, &b.cx) {
            Verdict::Keep => b.kept.push(Outgoing::owned(t)),
            v => self.not_kept(b, v),
        }
    }

    fn not_kept(&self, b: &mut Batch<'_, '_>, verdict: Verdict) {
        match verdict {
            Verdict::Keep => {}
            Verdict::Drop { reason } => b.drop_one(reason),
            Verdict::Reject(r) => {
                b.drop_one(r.reason);
                b.refusals.push(r);
            }
        }
    }

    fn count_drops(&self, tenant: &str, reason: &str, n: u64) {
        self.metrics
            .ingest
            .dropped_series
            .get_or_create(&DropLabels {
                tenant: tenant.to_string(),
                reason: reason.to_string(),
                dry_run: false.to_string(),
            })
            .inc_by(n);
    }
}

#[cfg(test)]
mod tests;
