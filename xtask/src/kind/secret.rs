//! The ArgoCD cluster Secret of a kind cluster, built from its `kind get kubeconfig --internal`
//! output: ArgoCD in the control cluster reaches the other clusters' API servers by their node
//! container names on the shared `kind` Docker network, with the client certificate kind made.

use std::path::Path;

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// The Secret (as JSON, which `kubectl apply -f` reads) for cluster `role`.
pub fn cluster_secret(role: &str, kubeconfig: &str) -> anyhow::Result<Value> {
    let cfg: Value = serde_saphyr::from_str(kubeconfig)
        .map_err(|e| anyhow::anyhow!("the kubeconfig is not YAML: {e}"))?;
    let field = |ptr: &str| -> anyhow::Result<String> {
        match cfg.pointer(ptr).and_then(Value::as_str) {
            Some(s) if !s.is_empty() => Ok(s.to_string()),
            _ => bail!("the kubeconfig has no {ptr}"),
        }
    };
    let server = field("/clusters/0/cluster/server")?;
    let ca = field("/clusters/0/cluster/certificate-authority-data")?;
    let cert = field("/users/0/user/client-certificate-data")?;
    let key = field("/users/0/user/client-key-data")?;
    let config = json!({
        "tlsClientConfig": { "insecure": false, "caData": ca, "certData": cert, "keyData": key }
    });
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": format!("cluster-{role}"),
            "namespace": "argocd",
            "labels": {
                "argocd.argoproj.io/secret-type": "cluster",
                "observability.ethos.io/cluster-role": role,
                // What argocd/applicationsets select on: the overlay (the lab's monitoring
                // cluster runs the kind overlay) and whether tenants are deployed there.
                "env": if role == "monitoring" { "kind" } else { role },
                "pmtp.ethos.io/tenants": "true",
            },
        },
        "type": "Opaque",
        "stringData": { "name": role, "server": server, "config": config.to_string() },
    }))
}

/// Read `kubeconfig`, write the Secret to `out`.
pub fn write(role: &str, kubeconfig: &Path, out: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let secret = cluster_secret(role, &text).with_context(|| {
        format!(
            "{}: expected the output of `kind get kubeconfig --internal`",
            kubeconfig.display()
        )
    })?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(out, serde_json::to_string_pretty(&secret)?)
        .with_context(|| format!("writing {}", out.display()))
}
