//! `prometheus-multi-tenant-proxy`: a multi-tenant gateway for Prometheus.
//!
//! # Layout
//!
//! - [`config`]: the YAML config file (Go-proxy keys plus `backends`, `auth`), defaults, validation.
//! - [`tenant`]: the `MetricAccess` CRD types, the policy compiler and the tenant store
//!   (file source: a watched folder of CR YAML files).
//! - [`promql`]: read-path enforcement: PromQL AST rewrite and `match[]` intersection.
//! - [`backend`]: HA groups of infrastructure Prometheus, health probes, round robin, failover.
//! - [`auth`]: request → tenant (`header`, `bearer`).
//! - [`http`]: the tenant-facing Prometheus API router and the admin listener.
//! - [`remote_write`]: remote-write protobuf types and the snappy codec.
//! - [`delivery`]: bounded queues and retrying workers that send encoded remote-write requests
//!   (collector targets, ingest destinations).
//! - [`collector`]: copies tenants' series to their own targets (`remoteWrite` of a CR).
//! - [`ingest`]: the remote-write gateway: limits, governance, forwarding.
//! - [`relabel`]: the Prometheus relabel engine (`metricRelabelings`): compile once, apply
//!   per series, Go regex semantics.
//! - [`telemetry`]: tracing setup and the proxy's own `/metrics`.
//! - [`error`]: the one error type → Prometheus error envelope mapping.

pub mod auth;
pub mod backend;
pub mod client;
pub mod collector;
pub mod config;
pub mod delivery;
pub mod error;
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
