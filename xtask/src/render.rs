//! Pure text transformations for the lab: `{{key}}` template rendering and shifting the lab's
//! ports (in fixtures/configs/lab.yaml) to another base port.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::bail;

/// Default base port of the lab: the proxy API port in fixtures/configs/lab.yaml.
pub const DEFAULT_BASE_PORT: u16 = 19080;

/// Port offsets from the base port, matching fixtures/configs/lab.yaml.
pub const PROXY_API_OFFSET: u16 = 0;
pub const PROXY_ADMIN_OFFSET: u16 = 1;
pub const INFRA_A_OFFSET: u16 = 10;
pub const INFRA_B_OFFSET: u16 = 11;
pub const WORKLOAD_OFFSET: u16 = 20;
/// The tenants' own targets, where the collector copies their series (`address_overrides`).
pub const TEAM_A_PROMETHEUS_OFFSET: u16 = 30;
pub const TEAM_B_PROMETHEUS_0_OFFSET: u16 = 31;
pub const TEAM_B_PROMETHEUS_1_OFFSET: u16 = 32;
pub const TEAM_C_REMOTE_WRITE_OFFSET: u16 = 33;
pub const TEAM_D_PUSHGATEWAY_OFFSET: u16 = 40;
/// The ingest gateway's lab: the storage Prometheus the proxy forwards to
/// (`ingest.forward.destinations`) and the agent-mode Prometheus that remote-writes to the proxy.
pub const INGEST_STORAGE_OFFSET: u16 = 50;
pub const INGEST_AGENT_OFFSET: u16 = 51;

/// Replace every `{{key}}` (whitespace inside the braces allowed) with `vars[key]`. Unknown keys
/// and unterminated placeholders are errors, so a typo never reaches a rendered config.
pub fn render_template(template: &str, vars: &BTreeMap<&str, String>) -> anyhow::Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            bail!("unterminated `{{{{` placeholder in template");
        };
        let key = after[..end].trim();
        match vars.get(key) {
            Some(v) => out.push_str(v),
            None => bail!("template uses unknown placeholder `{{{{{key}}}}}`"),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Rewrite lab.yaml for another base port: every `127.0.0.1:<port>` whose port lies in the
/// default lab range (base .. base+99) moves by `new_base - DEFAULT_BASE_PORT` (listeners,
/// backends, the collector's `address_overrides` and the ingest destinations alike), and a
/// relative path (`directory:`, `secrets_directory:`, `spill_directory:`, and the items of the
/// `rule_files: [..]` / `dashboard_files: [..]` flow lists) is made absolute against
/// `config_dir` (the rendered copy lives elsewhere).
pub fn shift_lab_config(text: &str, new_base: u16, config_dir: &Path) -> anyhow::Result<String> {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let shifted = shift_ports_in_line(line, new_base)?;
        out.push_str(&absolutize_directory(&shifted, config_dir));
    }
    Ok(out)
}

fn shift_ports_in_line(line: &str, new_base: u16) -> anyhow::Result<String> {
    const HOST: &str = "127.0.0.1:";
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find(HOST) {
        out.push_str(&rest[..i + HOST.len()]);
        rest = &rest[i + HOST.len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let port: Option<u32> = rest[..digits].parse().ok();
        match port {
            Some(p) if (DEFAULT_BASE_PORT as u32..DEFAULT_BASE_PORT as u32 + 100).contains(&p) => {
                let new = p - DEFAULT_BASE_PORT as u32 + new_base as u32;
                if new > u16::MAX as u32 {
                    bail!("base port {new_base} pushes port {p} past 65535");
                }
                out.push_str(&new.to_string());
            }
            _ => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Keys whose value is a path relative to the config file.
const PATH_KEYS: [&str; 3] = ["directory:", "secrets_directory:", "spill_directory:"];
/// Keys whose value is a flow list (`[a, b]`) of paths relative to the config file.
const PATH_LIST_KEYS: [&str; 2] = ["rule_files:", "dashboard_files:"];

fn absolutize_directory(line: &str, config_dir: &Path) -> String {
    let trimmed = line.trim_start();
    let indent = &line[..line.len() - trimmed.len()];
    let nl = if line.ends_with('\n') { "\n" } else { "" };
    if let Some((key, value)) = PATH_LIST_KEYS
        .iter()
        .find_map(|k| trimmed.strip_prefix(k).map(|v| (*k, v)))
    {
        let Some(items) = value
            .trim()
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
        else {
            return line.to_string();
        };
        let items: Vec<String> = items
            .split(',')
            .map(unquote)
            .filter(|i| !i.is_empty())
            .map(|i| format!("\"{}\"", absolute(i, config_dir)))
            .collect();
        return format!("{indent}{key} [{}]{nl}", items.join(", "));
    }
    let Some((key, value)) = PATH_KEYS
        .iter()
        .find_map(|k| trimmed.strip_prefix(k).map(|v| (*k, v)))
    else {
        return line.to_string();
    };
    let raw = unquote(value);
    if raw.is_empty() || raw.starts_with('#') || Path::new(raw).is_absolute() {
        return line.to_string();
    }
    format!("{indent}{key} \"{}\"{nl}", absolute(raw, config_dir))
}

fn unquote(v: &str) -> &str {
    v.trim().trim_matches(|c| c == '"' || c == '\'')
}

/// `raw` against `config_dir` (canonical when it exists); an absolute `raw` as is.
fn absolute(raw: &str, config_dir: &Path) -> String {
    if Path::new(raw).is_absolute() {
        return raw.to_string();
    }
    let abs = config_dir.join(raw);
    abs.canonicalize().unwrap_or(abs).display().to_string()
}

/// Check a base port leaves room for every lab port.
pub fn check_base_port(base: u16) -> anyhow::Result<()> {
    if !(1024..=65535 - 100).contains(&base) {
        bail!("--base-port {base} is out of range: use 1024..=65435 (the lab uses base..base+51)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&'static str, &str)]) -> BTreeMap<&'static str, String> {
        pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
    }

    #[test]
    fn renders_placeholders() {
        let out = render_template(
            "a: {{x}}\nb: {{ y }}{{x}}",
            &vars(&[("x", "1"), ("y", "two")]),
        )
        .unwrap();
        assert_eq!(out, "a: 1\nb: two1");
    }

    #[test]
    fn unknown_or_unterminated_placeholder_fails() {
        let err = render_template("{{nope}}", &vars(&[])).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        assert!(render_template("x {{y", &vars(&[("y", "1")])).is_err());
    }

    #[test]
    fn renders_the_infra_fixture() {
        let tmpl = include_str!("../../fixtures/prometheus/infra.yml.tmpl");
        let out = render_template(tmpl, &vars(&[("WORKLOAD", "127.0.0.1:19100")])).unwrap();
        assert!(!out.contains("{{"));
        assert!(out.contains("targets: [\"127.0.0.1:19100\"]"), "{out}");
        assert!(out.contains("honor_labels: true"));
        assert!(out.contains("scrape_interval: 5s"));
        assert!(!out.contains("external_labels"));
    }

    #[test]
    fn shifts_lab_ports_and_absolutizes_directory() {
        let lab = include_str!("../../fixtures/configs/lab.yaml");
        let dir = Path::new("/srv/fixtures/configs");
        let out = shift_lab_config(lab, 29080, dir).unwrap();
        for p in ["29080", "29081", "29090", "29091"] {
            assert!(
                out.contains(&format!("127.0.0.1:{p}")),
                "{p} missing in\n{out}"
            );
        }
        for p in ["19080", "19081", "19090", "19091"] {
            assert!(
                !out.contains(&format!("127.0.0.1:{p}")),
                "{p} left in\n{out}"
            );
        }
        assert!(
            out.contains("  directory: \"/srv/fixtures/configs/../tenants\""),
            "{out}"
        );
        assert!(
            out.contains("  secrets_directory: \"/srv/fixtures/configs/../../target/lab/secrets\""),
            "{out}"
        );
        // Same number of lines: only values change.
        assert_eq!(out.lines().count(), lab.lines().count());
    }

    #[test]
    fn shifts_the_collector_address_overrides() {
        let lab = include_str!("../../fixtures/configs/lab.yaml");
        let out = shift_lab_config(lab, 29080, Path::new("/srv/fixtures/configs")).unwrap();
        for (from, port) in [
            ("prometheus.team-a.svc:9090", 29110),
            (
                "prometheus-team-b-0.prometheus-operated.team-b.svc:9090",
                29111,
            ),
            (
                "prometheus-team-b-1.prometheus-operated.team-b.svc:9090",
                29112,
            ),
            ("remote-write.team-c.svc:9090", 29113),
            ("pushgateway.team-d.svc:9091", 29120),
        ] {
            let want = format!("\"{from}\": \"http://127.0.0.1:{port}\"");
            assert!(out.contains(&want), "{want} missing in\n{out}");
            let old = format!("127.0.0.1:{}", port - 10000);
            assert!(!out.contains(&old), "{old} left in\n{out}");
        }
        // The in-cluster side of an override is a key, never shifted.
        assert!(out.contains("collection_interval: 15s"));
    }

    #[test]
    fn shifts_the_ingest_destination_and_absolutizes_its_paths() {
        let lab = include_str!("../../fixtures/configs/lab.yaml");
        let out = shift_lab_config(lab, 29080, Path::new("/srv/fixtures/configs")).unwrap();
        assert!(
            out.contains("{name: storage, url: \"http://127.0.0.1:29130/api/v1/write\"}"),
            "{out}"
        );
        assert!(!out.contains("127.0.0.1:19130"), "{out}");
        assert!(
            out.contains(
                "    spill_directory: \"/srv/fixtures/configs/../../target/lab/ingest-spill\"\n"
            ),
            "{out}"
        );
        assert!(
            out.contains("    rule_files: [\"/srv/fixtures/configs/../usage/lab/rules.yaml\"]\n"),
            "{out}"
        );
        assert!(
            out.contains(
                "    dashboard_files: [\"/srv/fixtures/configs/../usage/lab/dashboard.json\"]\n"
            ),
            "{out}"
        );
        // The governance rules are not paths and stay as written.
        assert!(out.contains("label_drops: [id, name]"), "{out}");
    }

    #[test]
    fn absolutizes_path_lists_and_keeps_absolute_items() {
        let dir = Path::new("/c");
        let out = shift_lab_config(
            "  rule_files: [a.yaml, \"/abs/b.yaml\", 'c/d.yaml']\n  dashboard_files: []\nrule_files:\n",
            20000,
            dir,
        )
        .unwrap();
        assert_eq!(
            out,
            "  rule_files: [\"/c/a.yaml\", \"/abs/b.yaml\", \"/c/c/d.yaml\"]\n  dashboard_files: []\nrule_files:\n"
        );
    }

    #[test]
    fn leaves_foreign_ports_alone() {
        let out = shift_lab_config(
            "a: \"127.0.0.1:9090\"\nb: http://127.0.0.1:19085/x\nc: 127.0.0.1:19180\n",
            20000,
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(
            out,
            "a: \"127.0.0.1:9090\"\nb: http://127.0.0.1:20005/x\nc: 127.0.0.1:19180\n"
        );
    }

    #[test]
    fn overflowing_base_fails() {
        assert!(shift_lab_config("127.0.0.1:19099", 65530, Path::new("/")).is_err());
        assert!(check_base_port(65530).is_err());
        assert!(check_base_port(80).is_err());
        assert!(check_base_port(20000).is_ok());
    }
}
