//! The Kubernetes manifests (deploy/kubernetes) against the runtime: the config the ConfigMap
//! carries is a valid Sluice config once the Secret's variables are in, and the Deployment
//! probes paths the admin API serves on the port the config listens on. (kubeconform checks
//! the manifests' shape in scripts/test.sh; no cluster is within reach.)

use std::collections::BTreeMap;
use std::path::Path;

use sluice_runtime::config::{Config, DeploymentsStore};

fn manifest(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/kubernetes")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The block under `key: |` in a manifest: its lines, without their common indent.
fn block_scalar(yaml: &str, key: &str) -> String {
    let mut lines = yaml.lines().skip_while(|l| l.trim() != format!("{key}: |"));
    let header = lines
        .next()
        .unwrap_or_else(|| panic!("no `{key}: |` block"));
    let outer = header.len() - header.trim_start().len();
    let body: Vec<&str> = lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > outer)
        .collect();
    let indent = body
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    body.iter()
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `NAME: "value"` entries of the Secret's `stringData`.
fn secret_values(yaml: &str) -> BTreeMap<String, String> {
    yaml.lines()
        .skip_while(|l| l.trim() != "stringData:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| {
            let (name, value) = l.trim().split_once(':')?;
            Some((name.to_owned(), value.trim().trim_matches('"').to_owned()))
        })
        .collect()
}

/// Acceptance (issue 21, Kubernetes): the ConfigMap's `sluice.toml`, with every `${VAR}` taken
/// from the Secret, loads as a Sluice config (so the Secret provides every variable the config
/// reads); it listens where the Deployment's probes and the metrics Service look, and shares
/// deployed versions between the replicas.
#[test]
fn the_configmap_holds_a_valid_config_fed_by_the_secret() {
    let mut toml = block_scalar(&manifest("configmap.yaml"), "sluice.toml");
    let secrets = secret_values(&manifest("secret.yaml"));
    for (name, value) in &secrets {
        toml = toml.replace(&format!("${{{name}}}"), value);
    }
    assert!(
        !toml.contains("${"),
        "the config reads a variable the Secret lacks:\n{toml}"
    );
    let config = Config::parse(&toml, Path::new("sluice.toml"), Path::new("/etc/sluice"))
        .unwrap_or_else(|e| panic!("the ConfigMap's config does not load: {e}\n{toml}"));
    let admin = config.admin.expect("an [admin] section");
    assert_eq!(admin.listen, "0.0.0.0:9650");
    assert_eq!(admin.deployments, DeploymentsStore::Kafka);
    let deployment = manifest("deployment.yaml");
    for wanted in [
        "containerPort: 9650",
        "path: /healthz",
        "path: /readyz",
        "--config\", \"/etc/sluice/sluice.toml",
    ] {
        assert!(
            deployment.contains(wanted),
            "deployment.yaml lacks {wanted:?}"
        );
    }
    assert!(manifest("service.yaml").contains("port: 9650"));
    eprintln!(
        "the ConfigMap's config loads with the Secret's {} variables: {} pipeline(s)",
        secrets.len(),
        config.pipelines.len()
    );
}
