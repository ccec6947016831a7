//! One remote-write request, from body to answer: headers, decoding, the limits of every series,
//! the tenant's pipeline, then all-or-nothing queueing. Answers follow remote-write semantics:
//! 204 when the data is safely queued, 400 (not retried by senders) for data it refuses, 503
//! (retried) when it cannot take the request now, never 2xx for data it then loses.

use std::time::{SystemTime, UNIX_EPOCH};

use http::StatusCode;

use bytes::Bytes;

use super::Ingest;
use super::cardinality::series_hash;
use super::forward::Outgoing;
use super::limits::{self, Incoming, Refusal};
use super::pipeline::{Context, Verdict};
use crate::telemetry::{CodeLabels, DropLabels, ReasonLabels};

/// The answer to a sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: StatusCode,
    pub message: String,
    /// Seconds, with 503.
    pub retry_after: Option<u64>,
}

impl Answer {
    fn new(status: StatusCode, message: impl Into<String>) -> Answer {
        Answer {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl Ingest {
    /// Handle one request of `tenant` (already identified).
    pub fn receive(
        &self,
        tenant: &str,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
        body: Bytes,
    ) -> Answer {
        let answer = self.receive_inner(tenant, content_type, content_encoding, body);
        self.metrics
            .ingest
            .requests
            .get_or_create(&CodeLabels {
                code: answer.status.as_u16().to_string(),
            })
            .inc();
        if answer.status.is_client_error() {
            tracing::info!(tenant, status = answer.status.as_u16(), reason = %answer.message, "remote write refused");
        }
        answer
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
            return Answer::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, r.message);
        }
        let refused = |r: Refusal| {
            self.refuse(&r);
            let status = if r.reason == "too_large" {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            Answer::new(status, r.message)
        };
        let raw = match limits::decompress(&body, config.max_decompressed_bytes) {
            Ok(raw) => raw,
            Err(r) => return refused(r),
        };
        let mut request = match limits::decode(&raw, config.max_decompressed_bytes) {
            Ok(r) => r,
            Err(r) => return refused(r),
        };
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        let pipeline = settings.governance.for_tenant(tenant);
        let cx = Context::new(tenant, &self.tracker, &self.analytics, &self.usage);
        let drop_tenant = if settings.governance.has_rules(tenant) {
            tenant
        } else {
            "_other"
        };
        let mut refusals: Vec<Refusal> = Vec::new();
        let received = request.series.len();
        let mut kept = Vec::with_capacity(received);
        // Series that pass every check as they came, under rules that change no label, are
        // forwarded as their encoded bytes; the others are decoded and rebuilt.
        let mut unchanged = 0;
        for incoming in std::mem::take(&mut request.series) {
            let mut series = match incoming {
                Incoming::Plain(s) => {
                    let labels = request.labels_of(&s);
                    let ok = limits::plain_ok(labels, &s, &config.limits, now_ms);
                    if ok && pipeline.rewrites() {
                        // Rules run on the borrowed labels; only a series they change is
                        // encoded again, with its samples copied as they came.
                        let (verdict, changed) = pipeline.apply_borrowed(tenant, labels, &s, &cx);
                        match verdict {
                            Verdict::Keep => match changed {
                                None => {
                                    unchanged += 1;
                                    let hash = s.labels_hash(labels);
                                    kept.push(Outgoing::encoded(
                                        s.encoded,
                                        hash,
                                        s.samples as usize,
                                    ));
                                }
                                Some(new) => match s.with_labels(&new) {
                                    Some(bytes) => kept.push(Outgoing::built(
                                        bytes,
                                        series_hash(&new),
                                        s.samples as usize,
                                    )),
                                    // `Plain` series are the scanner's own (tested in `wire`).
                                    None => {
                                        return refused(Refusal {
                                            reason: "protobuf",
                                            message: "not a remote-write WriteRequest".into(),
                                        });
                                    }
                                },
                            },
                            Verdict::Drop { reason } => self.count_drop(drop_tenant, reason, false),
                            Verdict::Reject(r) => {
                                self.count_drop(drop_tenant, r.reason, false);
                                refusals.push(r);
                            }
                        }
                        continue;
                    }
                    if ok {
                        let hash = s.labels_hash(labels);
                        let samples = u64::from(s.samples);
                        match pipeline.apply_unchanged(tenant, labels, hash, samples, &cx) {
                            Verdict::Keep => {
                                unchanged += 1;
                                kept.push(Outgoing::encoded(s.encoded, hash, s.samples as usize));
                            }
                            Verdict::Drop { reason } => self.count_drop(drop_tenant, reason, false),
                            Verdict::Reject(r) => {
                                self.count_drop(drop_tenant, r.reason, false);
                                refusals.push(r);
                            }
                        }
                        continue;
                    }
                    match s.to_owned(labels) {
                        Some(t) => t,
                        // `Plain` series are the scanner's own (tested in `wire`).
                        None => {
                            return refused(Refusal {
                                reason: "protobuf",
                                message: "not a remote-write WriteRequest".into(),
                            });
                        }
                    }
                }
                Incoming::Owned(t) => t,
            };
            if let Err(r) = limits::check_series(&mut series, &config.limits, now_ms) {
                self.refuse(&r);
                refusals.push(r);
                continue;
            }
            match pipeline.apply(tenant, &mut series, &cx) {
                Verdict::Keep => kept.push(Outgoing::owned(series)),
                Verdict::Drop { reason } => self.count_drop(drop_tenant, reason, false),
                Verdict::Reject(r) => {
                    self.count_drop(drop_tenant, r.reason, false);
                    refusals.push(r);
                }
            }
        }
        let Some(forwarder) = &self.forwarder else {
            return Answer::new(StatusCode::NOT_FOUND, "the ingest gateway is disabled");
        };
        // Every series forwarded as it came: the body itself can be.
        let original = (unchanged == received).then_some(body);
        match forwarder.accept_batch(tenant, kept, request.metadata, original) {
            Ok(n) => {
                self.metrics.ingest.forwarded_series.inc_by(n as u64);
            }
            Err(full) => {
                // Nothing was queued: the sender retries the whole request later.
                return Answer {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    message: format!("the gateway's forwarding {full}; retry later"),
                    retry_after: Some(5),
                };
            }
        }
        match refusals.first() {
            None => Answer::new(StatusCode::NO_CONTENT, ""),
            Some(first) => Answer::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "{} series refused, the others were accepted; first: {}",
                    refusals.len(),
                    first.message
                ),
            ),
        }
    }

    fn count_drop(&self, tenant: &str, reason: &str, dry_run: bool) {
        self.metrics
            .ingest
            .dropped_series
            .get_or_create(&DropLabels {
                tenant: tenant.to_string(),
                reason: reason.to_string(),
                dry_run: dry_run.to_string(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests;
