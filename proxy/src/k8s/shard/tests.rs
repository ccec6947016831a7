use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wiremock::matchers::any;
use wiremock::{Mock, ResponseTemplate};

use super::*;
use crate::k8s::simulated::{LEASE, SimulatedApiServer};

const NS: &str = "proxy-system";
const LEASE_DURATION: Duration = Duration::from_secs(1);

fn members(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn crs(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("team-{}", i % 7), format!("access-{i}")))
        .collect()
}

fn assignment(members: &[String], crs: &[(String, String)]) -> BTreeMap<(String, String), String> {
    crs.iter()
        .map(|(ns, name)| {
            let o = owner(members, ns, name).unwrap().to_string();
            ((ns.clone(), name.clone()), o)
        })
        .collect()
}

#[test]
fn owner_splits_evenly_and_moves_only_the_removed_members_crs() {
    let all = members(&["r0", "r1", "r2"]);
    let crs = crs(300);
    let before = assignment(&all, &crs);
    for m in &all {
        let n = before.values().filter(|o| *o == m).count();
        assert!(n >= 50, "{m} owns {n} of 300");
    }
    // Every CR has exactly one owner, and it is one of the members.
    assert_eq!(before.len(), 300);
    assert!(before.values().all(|o| all.contains(o)));
    // The order of the members doesn't matter.
    assert_eq!(assignment(&members(&["r2", "r0", "r1"]), &crs), before);

    let survivors = members(&["r0", "r2"]);
    let after = assignment(&survivors, &crs);
    for (cr, was) in &before {
        if was == "r1" {
            assert!(survivors.contains(&after[cr]), "{cr:?} moved to a survivor");
        } else {
            assert_eq!(&after[cr], was, "{cr:?} stays where it was");
        }
    }
    assert_eq!(owner(&[], "a", "b"), None);
}

#[test]
fn resolve_prefers_config_then_env_then_files() {
    let mut config = ShardingConfig::default();
    let env = |k: &str| match k {
        "POD_NAME" => Some("proxy-7f9".to_string()),
        "POD_NAMESPACE" => Some("from-env".to_string()),
        _ => None,
    };
    let none = |_: &str| None;
    let s = ShardSettings::resolve_with(&config, env, none).unwrap();
    assert_eq!(
        (s.identity.as_str(), s.namespace.as_str()),
        ("proxy-7f9", "from-env")
    );
    assert_eq!(s.lease_name(), "pmtp-collector-proxy-7f9");

    let files = |p: &str| match p {
        SERVICE_ACCOUNT_NAMESPACE => Some("from-sa\n".to_string()),
        "/etc/hostname" => Some("host-1\n".to_string()),
        _ => None,
    };
    let s = ShardSettings::resolve_with(&config, |_: &str| None, files).unwrap();
    assert_eq!(
        (s.identity.as_str(), s.namespace.as_str()),
        ("host-1", "from-sa")
    );

    let host_only = |k: &str| (k == "HOSTNAME").then(|| "host-2".to_string());
    let err = ShardSettings::resolve_with(&config, host_only, none).unwrap_err();
    assert!(err.to_string().contains("POD_NAMESPACE"), "{err}");

    config.identity = Some("me".into());
    config.namespace = Some("ns".into());
    let s = ShardSettings::resolve_with(&config, env, none).unwrap();
    assert_eq!((s.identity.as_str(), s.namespace.as_str()), ("me", "ns"));
}

fn settings(identity: &str) -> ShardSettings {
    ShardSettings {
        identity: identity.into(),
        namespace: NS.into(),
        lease_prefix: "pmtp-collector".into(),
        lease_duration: LEASE_DURATION,
    }
}

/// Poll `check` until it holds, failing after `limit`.
async fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// CR → the identities of the shards that claim it.
fn claims(
    shards: &[&Arc<Shard>],
    crs: &[(String, String)],
) -> BTreeMap<(String, String), Vec<String>> {
    crs.iter()
        .map(|(ns, name)| {
            let owners = shards
                .iter()
                .filter(|s| s.owns(ns, name))
                .map(|s| s.identity().to_string())
                .collect();
            ((ns.clone(), name.clone()), owners)
        })
        .collect()
}

fn exactly_once(claims: &BTreeMap<(String, String), Vec<String>>) -> bool {
    claims.values().all(|o| o.len() == 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_three_replicas_split_and_survive_a_crash() {
    let api = SimulatedApiServer::start(&[LEASE]).await;
    let shards: Vec<Arc<Shard>> = ["r0", "r1", "r2"]
        .iter()
        .map(|id| Shard::spawn(api.client(), settings(id)))
        .collect();
    let crs = crs(100);
    let all = members(&["r0", "r1", "r2"]);
    eventually("three members everywhere", Duration::from_secs(5), || {
        shards.iter().all(|s| s.members() == all)
    })
    .await;
    let before = claims(&shards.iter().collect::<Vec<_>>(), &crs);
    assert!(exactly_once(&before), "{before:?}");
    assert_eq!(
        before,
        assignment(&all, &crs)
            .into_iter()
            .map(|(k, v)| (k, vec![v]))
            .collect()
    );

    let lease = api.get(LEASE, NS, "pmtp-collector-r1").unwrap();
    assert_eq!(
        lease["metadata"]["labels"]["app.kubernetes.io/name"],
        "pmtp-collector"
    );
    assert_eq!(lease["spec"]["holderIdentity"], "r1");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 1);
    assert!(lease["spec"]["renewTime"].is_string() && lease["spec"]["acquireTime"].is_string());

    // r1 crashes: its task ends, its Lease stays behind until it expires.
    let crashed = shards[1].task.lock().unwrap().take().unwrap();
    crashed.abort();
    let survivors = [&shards[0], &shards[2]];
    let two = members(&["r0", "r2"]);
    let versions: Vec<u64> = survivors.iter().map(|s| s.version()).collect();
    eventually("r1 dropped by the survivors", LEASE_DURATION * 3, || {
        survivors.iter().all(|s| s.members() == two)
    })
    .await;
    assert!(
        api.get(LEASE, NS, "pmtp-collector-r1").is_some(),
        "a crash leaves the Lease"
    );
    for (s, v) in survivors.iter().zip(versions) {
        assert!(s.version() > v, "the version moved for {}", s.identity());
    }
    let after = claims(&survivors, &crs);
    assert!(exactly_once(&after), "{after:?}");
    for (cr, owners) in &before {
        if owners[0] == "r1" {
            assert_ne!(after[cr][0], "r1");
        } else {
            assert_eq!(after[cr], *owners, "{cr:?} kept its owner");
        }
    }
    assert!(
        before.values().any(|o| o[0] == "r1"),
        "r1 had CRs to hand over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_graceful_stop_deletes_the_lease_and_hands_over() {
    let api = SimulatedApiServer::start(&[LEASE]).await;
    // A 3 s lease renewed every second: `b`'s Lease would stay valid for 2 s or more after it
    // stops, so a handover well within that is the deletion's doing.
    let three = |id: &str| ShardSettings {
        lease_duration: Duration::from_secs(3),
        ..settings(id)
    };
    let a = Shard::spawn(api.client(), three("a"));
    let b = Shard::spawn(api.client(), three("b"));
    let both = members(&["a", "b"]);
    eventually("both members", Duration::from_secs(8), || {
        a.members() == both && b.members() == both
    })
    .await;
    let crs = crs(50);
    assert!(exactly_once(&claims(&[&a, &b], &crs)));

    b.stop().await;
    assert!(
        api.get(LEASE, NS, "pmtp-collector-b").is_none(),
        "lease deleted"
    );
    assert_eq!(
        b.members(),
        members(&["a"]),
        "a stopped replica is no member"
    );
    assert!(crs.iter().all(|(ns, n)| !b.owns(ns, n)));
    eventually(
        "a alone on its next tick",
        Duration::from_millis(1800),
        || a.members() == members(&["a"]),
    )
    .await;
    assert!(crs.iter().all(|(ns, n)| a.owns(ns, n)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_partitioned_replica_owns_nothing_after_lease_duration() {
    let api = SimulatedApiServer::start(&[LEASE]).await;
    let shard = Shard::spawn(api.client(), settings("alone"));
    eventually("owns everything alone", Duration::from_secs(5), || {
        shard.owns("team-a", "x") && shard.owns("team-b", "y")
    })
    .await;
    let version = shard.version();

    // The API server becomes unreachable (every request fails).
    Mock::given(any())
        .respond_with(ResponseTemplate::new(503))
        .with_priority(1)
        .mount(api.server())
        .await;
    let cut = Instant::now();
    eventually("owns nothing", LEASE_DURATION * 2, || {
        !shard.owns("team-a", "x") && !shard.owns("team-b", "y")
    })
    .await;
    // Its last renewal was at most a tick (1/3 s) before the cut: it kept its CRs until that
    // renewal's lease ran out, not longer and not much earlier.
    assert!(cut.elapsed() >= LEASE_DURATION / 2, "{:?}", cut.elapsed());
    eventually("version moved", Duration::from_secs(1), || {
        shard.version() > version
    })
    .await;
    assert!(shard.members().is_empty(), "{:?}", shard.members());
}

#[tokio::test]
async fn unreachable_api_server_never_owns() {
    let client = crate::k8s::client_for("http://127.0.0.1:1").unwrap();
    let shard = Shard::spawn(client, settings("nobody"));
    let deadline = Instant::now() + LEASE_DURATION + LEASE_DURATION / 2;
    while Instant::now() < deadline {
        assert!(!shard.owns("team-a", "x"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(shard.members().is_empty());
}
