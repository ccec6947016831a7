//! Health of one backend member: the state the readiness probe (and failed connections)
//! leave behind, and the probe loop itself.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// What the proxy currently believes about a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// No probe finished yet: routed to, so the first request after start works.
    Unknown,
    Up,
    Down,
}

#[derive(Debug, Clone)]
pub struct HealthState {
    pub health: Health,
    pub last_error: Option<String>,
    pub last_probe: Option<SystemTime>,
    pub consecutive_failures: u32,
}

/// One Prometheus instance of a group.
#[derive(Debug)]
pub struct Member {
    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:9090` or `http://h/prom`.
    pub url: String,
    state: Mutex<HealthState>,
}

impl Member {
    pub fn new(url: String) -> Self {
        Self {
            url,
            state: Mutex::new(HealthState {
                health: Health::Unknown,
                last_error: None,
                last_probe: None,
                consecutive_failures: 0,
            }),
        }
    }

    pub fn state(&self) -> HealthState {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set_state(&self, state: HealthState) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = state;
    }

    pub fn health(&self) -> Health {
        self.state().health
    }

    /// Routed to unless the last probe (or request) found it down.
    pub fn is_routable(&self) -> bool {
        self.health() != Health::Down
    }

    pub fn record_success(&self, probed: bool) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.health = Health::Up;
        state.last_error = None;
        state.consecutive_failures = 0;
        if probed {
            state.last_probe = Some(SystemTime::now());
        }
    }

    pub fn record_failure(&self, error: String, probed: bool) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.health = Health::Down;
        state.last_error = Some(error);
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        if probed {
            state.last_probe = Some(SystemTime::now());
        }
    }

    /// `/debug/targets` view of this member.
    pub fn to_json(&self) -> serde_json::Value {
        let state = self.state();
        let last_probe = state.last_probe.map(crate::time::rfc3339);
        let ago = state
            .last_probe
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .map(|d| d.as_secs_f64());
        serde_json::json!({
            "url": self.url,
            "health": state.health,
            "lastError": state.last_error,
            "lastProbe": last_probe,
            "lastProbeSecondsAgo": ago,
            "consecutiveFailures": state.consecutive_failures,
        })
    }
}

/// Probe `member` on `/-/ready` every `interval` until the task is aborted.
pub async fn probe_loop(
    member: Arc<Member>,
    client: reqwest::Client,
    interval: Duration,
    timeout: Duration,
) {
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let url = format!("{}/-/ready", member.url);
    loop {
        ticker.tick().await;
        match probe_once(&client, &url, timeout).await {
            Ok(()) => {
                if member.health() != Health::Up {
                    tracing::info!(member = %member.url, "backend member is up");
                }
                member.record_success(true);
            }
            Err(error) => {
                if member.health() != Health::Down {
                    tracing::warn!(member = %member.url, %error, "backend member is down");
                }
                member.record_failure(error, true);
            }
        }
    }
}

async fn probe_once(client: &reqwest::Client, url: &str, timeout: Duration) -> Result<(), String> {
    let response = client
        .get(url)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| crate::client::describe(&e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    let body: String = body.trim().chars().take(200).collect();
    Err(format!("readiness probe returned HTTP {status}: {body}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_and_successes_update_state() {
        let member = Member::new("http://x".into());
        assert!(member.is_routable());
        member.record_failure("boom".into(), true);
        member.record_failure("boom".into(), false);
        let state = member.state();
        assert_eq!(state.health, Health::Down);
        assert_eq!(state.consecutive_failures, 2);
        assert!(!member.is_routable());
        member.record_success(true);
        assert_eq!(member.state().consecutive_failures, 0);
        assert_eq!(member.to_json()["health"], "up");
    }
}
