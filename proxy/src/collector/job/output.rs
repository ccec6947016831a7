//! Where a cycle's batches go, as they are shaped: one remote-write request per batch, queued
//! on every remote-write endpoint (each replica gets every series), and, for Pushgateway
//! endpoints, a [`Group`] that keeps the latest sample of each series and is PUT once the whole
//! window has been read (a PUT replaces the group, so it can't be sent in parts).
//!
//! Memory: one batch and its encoded request at a time, plus the queues (each at most
//! `queue_capacity` requests), plus the Pushgateway group's text when there is one.

use std::sync::Arc;

use tokio::time::Instant;

use super::super::pushgateway::Group;
use super::super::shape::Batch;
use crate::delivery::{Delivery, Payload, Protocol};

/// The grouping labels a Pushgateway overwrites (moved to `exported_<name>` first).
const GROUPING: &[&str] = &["job"];

pub struct Output {
    remote_write: Vec<Arc<Delivery>>,
    pushgateway: Vec<Arc<Delivery>>,
    group: Option<Group>,
    /// Until when a healthy endpoint's full queue is waited for.
    deadline: Instant,
    /// Requests queued per remote-write endpoint.
    pub requests: usize,
}

impl Output {
    pub fn new(deliveries: &[Arc<Delivery>], deadline: Instant) -> Output {
        let (pushgateway, remote_write): (Vec<_>, Vec<_>) = deliveries
            .iter()
            .cloned()
            .partition(|d| d.protocol() == Protocol::Pushgateway);
        Output {
            group: (!pushgateway.is_empty()).then(|| Group::new(GROUPING)),
            remote_write,
            pushgateway,
            deadline,
            requests: 0,
        }
    }

    /// Queue one batch on every remote-write endpoint; add it to the Pushgateway group.
    pub async fn send(&mut self, batch: &Batch) {
        if batch.is_empty() {
            return;
        }
        if let Some(group) = &mut self.group {
            for series in &batch.to_series() {
                group.add(series);
            }
        }
        if self.remote_write.is_empty() {
            return;
        }
        let payload = Payload {
            body: batch.encode().into(),
            series: batch.len(),
            samples: batch.samples(),
            headers: Vec::new(),
        };
        self.requests += 1;
        for d in &self.remote_write {
            d.enqueue_waiting(payload.clone(), self.deadline).await;
        }
    }

    /// The window is complete: PUT the Pushgateway group.
    pub fn finish(self) {
        let Some(group) = self.group else {
            return;
        };
        let series = group.len();
        let payload = Payload {
            body: group.render().into(),
            series,
            samples: series,
            headers: Vec::new(),
        };
        drop(group);
        for d in &self.pushgateway {
            d.enqueue(vec![payload.clone()]);
        }
    }
}
