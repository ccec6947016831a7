//! `prometheus-multi-tenant-proxy`: a multi-tenant gateway for Prometheus.
//!
//! # Layout
//!
//! Which module may import which is drawn in docs/architecture.md and checked by
//! `tests/architecture.rs`. Leaves first:
//!
//! - [`names`]: the syntax of metric and label names and tenant ids.
//! - [`time`]: RFC 3339 timestamps.
//! - [`client`]: what outbound HTTP clients share (rustls provider, reqwest error text).
//! - [`telemetry`]: tracing setup and the proxy's own `/metrics`.
//! - [`remote_write`]: remote-write protobuf types, the snappy codec and the zero-copy scanner.
//! - [`relabel`]: the Prometheus relabel engine (`metricRelabelings`, `RelabelConfig`): compile
//!   once, apply per series, Go regex semantics.
//! - [`config`]: the YAML config file (Go-proxy keys plus `backends`, `auth`), defaults,
//!   validation.
//! - [`tenant`]: the `MetricAccess` CRD types, the policy compiler and the tenant store
//!   (file source: a watched folder of CR YAML files).
//! - [`promql`]: read-path enforcement: PromQL AST rewrite and `match[]` intersection.
//! - [`auth`]: headers (and a parameter value) → tenant (`header`, `bearer`, `kubernetes`,
//!   `jwt`), with plain errors the HTTP layer answers.
//! - [`backend`]: HA groups of infrastructure Prometheus, health probes, round robin, failover.
//! - [`delivery`]: endpoints, bounded queues and retrying workers that send encoded
//!   remote-write requests (collector targets, ingest destinations).
//! - [`ingest`]: the remote-write gateway: limits, governance, forwarding.
//! - [`collector`]: copies tenants' series to their own targets (`remoteWrite` of a CR).
//! - [`k8s`]: Kubernetes mode: the `MetricAccess` watcher, status writer, Secrets, backend
//!   discovery, collector sharding.
//! - [`http`]: the tenant-facing Prometheus API router and the admin router, their handlers,
//!   and the one mapping of refusals to status codes and Prometheus' error envelope
//!   ([`http::error`]).
//! - [`app`]: the composition root: [`app::App`] builds and owns the running proxy (runtime
//!   settings, reload, discovered backends, background tasks); [`app::start`] runs it.

pub mod app;
pub mod auth;
pub mod backend;
pub mod client;
pub mod collector;
pub mod config;
pub mod delivery;
pub mod http;
pub mod ingest;
pub mod k8s;
pub mod names;
pub mod promql;
pub mod relabel;
pub mod remote_write;
pub mod telemetry;
pub mod tenant;
pub mod time;
