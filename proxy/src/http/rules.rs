//! `/api/v1/rules` and `/api/v1/alerts`: Prometheus (2.42) ignores matchers there, so the
//! proxy asks for every rule and filters the answer with the tenant's policy
//! ([`Visibility`]):
//!
//! - a rule is kept when its expression reads only series inside one of the tenant's clauses
//!   (every selector); a group left without rules is dropped;
//! - an alert (inside a kept alerting rule) is kept when its labels satisfy a clause;
//! - `/api/v1/alerts` is the alerts of the kept alerting rules, read from `/api/v1/rules`
//!   (so an alert is only shown with the rule that produced it).

use std::collections::BTreeMap;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::Refusal;
use super::prom_api::prepare;
use crate::app::App;
use crate::backend::UpstreamRequest;
use crate::http::error::ApiError;
use crate::promql::Visibility;

pub fn routes() -> axum::Router<App> {
    axum::Router::new()
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/alerts", get(alerts))
}

async fn rules(State(state): State<App>, request: Request) -> Response {
    answer(
        filtered_rules(&state, request, false)
            .await
            .map(|data| json!({"status": "success", "data": data})),
    )
}

async fn alerts(State(state): State<App>, request: Request) -> Response {
    answer(
        filtered_rules(&state, request, true)
            .await
            .map(|data| json!({"status": "success", "data": {"alerts": alerts_of(&data)}})),
    )
}

fn answer(result: Result<Value, Refusal>) -> Response {
    match result {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// The backend's `/api/v1/rules` `data`, filtered for the request's tenant. `alerts_only`:
/// ask for alerting rules only (whatever `type` the client sent).
async fn filtered_rules(
    state: &App,
    request: Request,
    alerts_only: bool,
) -> Result<Value, Refusal> {
    let prepared = prepare(state, request).await?;
    let kind = if alerts_only {
        Some("alert")
    } else {
        match prepared.params.get_non_empty("type") {
            None => None,
            Some(t @ ("alert" | "record")) => Some(t),
            Some(_) => return Err(ApiError::bad_data("type must be alert or record").into()),
        }
    };
    let pairs: Vec<(&str, &str)> = kind.map(|k| ("type", k)).into_iter().collect();
    let upstream = UpstreamRequest {
        method: Method::GET,
        path: "/api/v1/rules".to_string(),
        form: super::params::encode(pairs),
    };
    let (status, _, body) = prepared.runtime.backends.send_buffered(&upstream).await?;
    if status != StatusCode::OK {
        // The backend's own error envelope is about the request, not about other tenants,
        // but it is not passed on unread: only its status shows.
        return Err(ApiError::unavailable(format!(
            "could not list the rules: backend answered HTTP {status}"
        ))
        .into());
    }
    let answer: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::internal(format!("backend rules answer is not JSON: {e}")))?;
    let Some(visibility) = Visibility::new(&prepared.tenant.policy) else {
        return Err(ApiError::internal("the tenant's policy does not compile").into());
    };
    let mut data = answer
        .get("data")
        .cloned()
        .ok_or_else(|| ApiError::internal("backend rules answer has no data"))?;
    filter_rules(&mut data, &visibility)?;
    Ok(data)
}

/// Keep the rules (and their alerts) the tenant may see; drop emptied groups.
pub fn filter_rules(data: &mut Value, visibility: &Visibility) -> Result<(), ApiError> {
    let groups = data
        .get_mut("groups")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| ApiError::internal("backend rules answer has no groups list"))?;
    for group in groups.iter_mut() {
        match group.get_mut("rules").and_then(Value::as_array_mut) {
            Some(rules) => {
                rules.retain(|rule| {
                    rule.get("query")
                        .and_then(Value::as_str)
                        .is_some_and(|q| visibility.query_within(q))
                });
                for rule in rules.iter_mut() {
                    if let Some(alerts) = rule.get_mut("alerts").and_then(Value::as_array_mut) {
                        alerts.retain(|alert| alert_visible(alert, visibility));
                    }
                }
            }
            // A group we can't read is not shown.
            None => *group = Value::Null,
        }
    }
    groups.retain(|group| {
        group
            .get("rules")
            .and_then(Value::as_array)
            .is_some_and(|rules| !rules.is_empty())
    });
    Ok(())
}

/// An alert whose labels satisfy a clause of the tenant's policy.
fn alert_visible(alert: &Value, visibility: &Visibility) -> bool {
    let Some(labels) = alert.get("labels").and_then(Value::as_object) else {
        return false;
    };
    let mut plain = BTreeMap::new();
    for (name, value) in labels {
        let Some(value) = value.as_str() else {
            return false;
        };
        plain.insert(name.clone(), value.to_string());
    }
    visibility.labels_within(&plain)
}

/// Every alert of the (already filtered) alerting rules, as `/api/v1/alerts` lists them.
fn alerts_of(data: &Value) -> Vec<Value> {
    data.get("groups")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|g| g.get("rules").and_then(Value::as_array))
        .flatten()
        .filter_map(|r| r.get("alerts").and_then(Value::as_array))
        .flatten()
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests;
