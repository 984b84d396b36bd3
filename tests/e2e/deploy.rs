//! `deploy/` and the setup docs, checked against the code: every manifest is parsed and the
//! fields that matter are checked (no secrets, restricted security context, replicas and a
//! PodDisruptionBudget, probes and ports that are the ones the broker config listens on), the
//! broker config and policy load with the real parsers, the kubelet `CredentialProviderConfig`
//! files pass the real `svid-credential-provider validate`, and every snippet and command of
//! `docs/kubelet-setup.md`, `docs/spire-setup.md`, `deploy/README.md` and the plugin section of
//! `docs/troubleshooting.md` is run or checked against `deploy/`.
//!
//! The markers are the one vocabulary of `doccheck.rs`; on these pages every block carries one
//! and is checked: `file=`, `same-as=`, `subset-of=`, and the roles `kubelet-config`,
//! `plugin-config`, `broker-fragment`, `cluster-spiffeid`, `spire-agent`, `kubelet-log`,
//! `run` (of `svid-credential-provider`, `$ svid-credential-provider ARGS [< FILE]`: stdout or
//! stderr, the other must be empty), `install`, `kubectl`, `spire` and `sh`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use svid_broker_identity::SpiffeId;
use svid_broker_server::config::BrokerConfig;
use svid_broker_server::satoken::TrustedActors;

use crate::doccheck::{
    Block, Role, blocks, commands, message_corpus, read, repo_root as root, words,
};
use crate::support::{Output, run};

const PLUGIN: &str = "svid-credential-provider";
const NAMESPACE: &str = "svid-broker";

// === parsing ===

/// The YAML documents of `text` as JSON values (`---` lines separate documents).
fn yaml_docs(text: &str, what: &str) -> Vec<Value> {
    let mut docs = Vec::new();
    let mut current = String::new();
    for line in text.lines().chain(std::iter::once("---")) {
        if line.trim_end() == "---" {
            if !current.trim().is_empty() {
                let doc: Value = serde_norway::from_str(&current)
                    .unwrap_or_else(|e| panic!("{what}: not valid yaml: {e}"));
                if !doc.is_null() {
                    docs.push(doc);
                }
            }
            current.clear();
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    docs
}

fn toml_value(text: &str, what: &str) -> Value {
    let table: toml::Table =
        toml::from_str(text).unwrap_or_else(|e| panic!("{what}: not valid toml: {e}"));
    serde_json::to_value(table).unwrap()
}

fn s<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: not a string: {v}"))
}

fn arr<'a>(v: &'a Value, what: &str) -> &'a Vec<Value> {
    v.as_array()
        .unwrap_or_else(|| panic!("{what}: not a list: {v}"))
}

/// Every file under `deploy/`, relative to the repository root, sorted.
fn deploy_files() -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root().join("deploy"), &mut out);
    let base = root();
    let mut files: Vec<String> = out
        .iter()
        .map(|p| p.strip_prefix(&base).unwrap().display().to_string())
        .collect();
    files.sort();
    files
}

/// Every manifest: relative path and documents.
fn manifests() -> Vec<(String, Vec<Value>)> {
    deploy_files()
        .into_iter()
        .filter(|f| f.ends_with(".yaml") || f.ends_with(".yml"))
        .map(|f| {
            let docs = yaml_docs(&read(&f), &f);
            (f, docs)
        })
        .collect()
}

/// The one object of `kind` named `name` in the manifests under `dir`.
fn object(dir: &str, kind: &str, name: &str) -> Value {
    let found: Vec<Value> = manifests()
        .into_iter()
        .filter(|(f, _)| f.starts_with(dir))
        .flat_map(|(_, d)| d)
        .filter(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "{dir}: {kind}/{name} must exist once");
    found.into_iter().next().unwrap()
}

fn broker_toml() -> String {
    read("deploy/base/config/broker.toml")
}

fn broker_config() -> BrokerConfig {
    let dir = tempfile::tempdir().unwrap();
    BrokerConfig::from_toml_str(&broker_toml(), dir.path())
        .unwrap_or_else(|e| panic!("deploy/base/config/broker.toml does not load: {e}"))
}

fn deployment() -> Value {
    object("deploy/base/", "Deployment", "svid-broker")
}

fn pod_spec(d: &Value) -> &Value {
    &d["spec"]["template"]["spec"]
}

fn container(d: &Value) -> &Value {
    let containers = arr(&pod_spec(d)["containers"], "containers");
    assert_eq!(containers.len(), 1, "one container");
    &containers[0]
}

/// A container port by name or number.
fn resolve_port(container: &Value, port: &Value) -> u64 {
    if let Some(n) = port.as_u64() {
        return n;
    }
    let name = s(port, "port");
    arr(&container["ports"], "ports")
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no container port named {name}"))
}

/// The mount path of the volume `pred` selects.
fn mount_of(d: &Value, pred: impl Fn(&Value) -> bool) -> (String, Value) {
    let volume = arr(&pod_spec(d)["volumes"], "volumes")
        .iter()
        .find(|v| pred(v))
        .unwrap_or_else(|| panic!("no such volume"))
        .clone();
    let name = s(&volume["name"], "volume name");
    let mount = arr(&container(d)["volumeMounts"], "volumeMounts")
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("volume {name} is not mounted"));
    (s(&mount["mountPath"], "mountPath").to_owned(), volume)
}

fn item_keys(volume: &Value, source: &str) -> BTreeSet<String> {
    arr(&volume[source]["items"], "items")
        .iter()
        .map(|i| {
            assert_eq!(i["key"], i["path"], "items keep their names");
            s(&i["key"], "key").to_owned()
        })
        .collect()
}

/// The files a kustomization's `configMapGenerator` entry `name` is made of.
fn generator_files(kustomization: &str, name: &str) -> Vec<String> {
    let k = &yaml_docs(&read(kustomization), kustomization)[0];
    let entry = arr(&k["configMapGenerator"], "configMapGenerator")
        .iter()
        .find(|g| g["name"] == name)
        .unwrap_or_else(|| panic!("{kustomization}: no generator {name}"));
    arr(&entry["files"], "files")
        .iter()
        .map(|f| s(f, "file").to_owned())
        .collect()
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap()
}

fn dir_name(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(d, _)| d)
}

// === processes ===

/// The plugin binary Cargo built beside this package's binary (`cargo test --workspace` builds
/// it); `None` when absent, which fails under CI.
fn plugin_binary() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_BIN_EXE_svid-broker")).with_file_name(PLUGIN);
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{} is missing: build it (cargo test --workspace builds it)",
        path.display()
    );
    eprintln!(
        "skipping: {} is missing (cargo build -p svid-credential-provider)",
        path.display()
    );
    None
}

/// Runs `cmd` with `stdin`, bounded (the shared harness), without the environment variables
/// that would point the plugin elsewhere.
fn exec(mut cmd: Command, stdin: Option<&[u8]>) -> Output {
    cmd.env_remove("SPIFFE_ENDPOINT_SOCKET")
        .env_remove("SVID_CREDENTIAL_PROVIDER_CONFIG");
    svid_broker_testkit::process::run(&mut cmd, stdin)
}

fn plugin(bin: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(args);
    exec(cmd, None)
}

/// `validate` must print `ok` for `kubelet_config` with `plugin_config`.
fn assert_validates(bin: &Path, kubelet_config: &Path, plugin_config: &Path) {
    let out = plugin(
        bin,
        &[
            "validate",
            "--kubelet-config",
            kubelet_config.to_str().unwrap(),
            "--config",
            plugin_config.to_str().unwrap(),
        ],
    );
    assert_eq!(
        (out.code(), out.stdout.as_str()),
        (Some(0), "ok\n"),
        "validate {}: {}{}",
        kubelet_config.display(),
        out.stdout,
        out.stderr
    );
}

/// `install-plugin.sh`'s default for `VAR`.
fn install_default(var: &str) -> String {
    let script = read("deploy/node/install-plugin.sh");
    let prefix = format!("{var}=${{{var}:-");
    let line = script
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("install-plugin.sh has no default for {var}"));
    line.strip_suffix('}').unwrap().to_owned()
}

// === secrets ===

/// Whether `text` holds something that looks like key material or a token.
fn looks_secret(text: &str) -> Option<&'static str> {
    if text.contains("-----BEGIN") {
        return Some("a PEM block");
    }
    for word in text.split(|c: char| c.is_whitespace() || "\"'`,;()[]{}=<>".contains(c)) {
        let w = word.trim_start_matches(':');
        if w.starts_with("eyJ") && w.matches('.').count() == 2 && w.len() > 40 {
            return Some("a JWT");
        }
        if (w.starts_with("sbl1.") || w.starts_with("sbr2.")) && w.len() > 12 {
            return Some("a broker credential");
        }
    }
    None
}

#[test]
fn the_secret_scanner_finds_what_it_looks_for() {
    assert_eq!(
        looks_secret("key: |\n  -----BEGIN PRIVATE KEY-----\n"),
        Some("a PEM block")
    );
    assert_eq!(
        looks_secret("password: \"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJl\""),
        Some("a JWT")
    );
    assert_eq!(
        looks_secret("value: sbl1.AAAAAAAAAAAAAAAA"),
        Some("a broker credential")
    );
    assert_eq!(
        looks_secret("the `sbl1.…` prefix, eyJ headers"),
        None,
        "prose naming the formats is fine"
    );
}

#[test]
fn deploy_holds_no_secret_and_every_manifest_parses() {
    let files = deploy_files();
    assert!(files.len() >= 15, "{files:?}");
    for f in &files {
        let ext = f.rsplit('.').next().unwrap();
        assert!(
            ["yaml", "toml", "sh", "md"].contains(&ext),
            "{f}: unexpected file type in deploy/"
        );
        if let Some(what) = looks_secret(&read(f)) {
            panic!("{f} contains {what}");
        }
    }
    for (f, docs) in manifests() {
        assert!(!docs.is_empty(), "{f}: no documents");
        for d in &docs {
            assert!(
                d["apiVersion"].is_string() && d["kind"].is_string(),
                "{f}: a document without apiVersion and kind"
            );
            assert_ne!(d["kind"], "Secret", "{f}: Secrets are created out of band");
            assert!(
                d.get("secretGenerator").is_none(),
                "{f}: secretGenerator puts secret material in the repository"
            );
            let is_k8s_object = !f.contains("/kubelet/") && !f.ends_with("kustomization.yaml");
            if is_k8s_object {
                assert!(d["metadata"]["name"].is_string(), "{f}: no metadata.name");
            }
        }
    }
}

#[test]
fn kustomizations_reference_real_files_and_use_every_manifest() {
    let mut used = BTreeSet::new();
    for (f, docs) in manifests()
        .into_iter()
        .filter(|(f, _)| f.ends_with("kustomization.yaml"))
    {
        let dir = dir_name(&f).to_owned();
        let k = &docs[0];
        let mut refs: Vec<String> = Vec::new();
        for key in ["resources", "components"] {
            if let Some(list) = k[key].as_array() {
                refs.extend(list.iter().map(|r| s(r, key).to_owned()));
            }
        }
        for g in k["configMapGenerator"].as_array().into_iter().flatten() {
            refs.extend(
                arr(&g["files"], "files")
                    .iter()
                    .map(|r| s(r, "file").to_owned()),
            );
        }
        for p in k["patches"].as_array().into_iter().flatten() {
            // Inline patches must parse and name their target.
            let patch = yaml_docs(s(&p["patch"], "patch"), &f);
            assert_eq!(patch[0]["kind"], p["target"]["kind"], "{f}");
            assert_eq!(patch[0]["metadata"]["name"], p["target"]["name"], "{f}");
        }
        for r in refs {
            let path = root().join(&dir).join(&r);
            assert!(path.exists(), "{f}: {r} does not exist");
            let canonical = std::fs::canonicalize(&path).unwrap();
            used.insert(canonical);
        }
    }
    for f in deploy_files() {
        let is_object_file = f.ends_with(".yaml") && !f.ends_with("kustomization.yaml");
        let for_nodes = f.starts_with("deploy/node/kubelet/");
        if (is_object_file && !for_nodes) || f.contains("/config/") {
            let canonical = std::fs::canonicalize(root().join(&f)).unwrap();
            let in_dir = used.iter().any(|u| *u == canonical);
            assert!(in_dir, "{f} is used by no kustomization");
        }
    }
    render_with_kubectl();
}

/// `kubectl kustomize` (when installed) builds every entry point, and the output keeps what the
/// sources say.
fn render_with_kubectl() {
    let probe = Command::new("kubectl")
        .args(["version", "--client"])
        .output();
    if probe.is_err() {
        eprintln!("kubectl is not installed: rendering skipped");
        return;
    }
    let render = |dir: &str| {
        let mut cmd = Command::new("kubectl");
        cmd.args(["kustomize", root().join(dir).to_str().unwrap()]);
        let out = exec(cmd, None);
        assert_eq!(
            out.code(),
            Some(0),
            "kubectl kustomize {dir}: {}",
            out.stderr
        );
        yaml_docs(&out.stdout, dir)
    };
    let base = render("deploy/base");
    let config_maps: BTreeSet<&str> = base
        .iter()
        .filter(|d| d["kind"] == "ConfigMap")
        .map(|d| s(&d["metadata"]["name"], "name"))
        .collect();
    assert!(
        config_maps.contains("svid-broker-policy"),
        "{config_maps:?}"
    );
    for d in &base {
        if d["kind"] != "Namespace" {
            assert_eq!(d["metadata"]["namespace"], NAMESPACE, "{}", d["kind"]);
        }
        if d["kind"] == "Deployment" {
            assert_eq!(
                s(&container(d)["image"], "image"),
                "registry.example.org/svid-broker/svid-broker:0.1.0"
            );
            for v in arr(&pod_spec(d)["volumes"], "volumes") {
                if let Some(name) = v["configMap"]["name"].as_str()
                    && name.starts_with("svid-broker-config")
                {
                    assert!(config_maps.contains(name), "{name} is not generated");
                }
            }
        }
    }
    let hostpath = render("deploy/overlays/hostpath");
    let d = hostpath.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let (_, volume) = mount_of(d, |v| v["name"] == "spiffe-workload-api");
    assert!(volume.get("csi").is_none(), "{volume}");
    assert_eq!(volume["hostPath"]["type"], "Directory");
    let ns = hostpath.iter().find(|d| d["kind"] == "Namespace").unwrap();
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "privileged"
    );
    let node = render("deploy/node");
    assert!(node.iter().any(|d| d["kind"] == "ClusterRoleBinding"));
    assert!(
        node.iter()
            .any(|d| d["metadata"]["name"] == "svid-credential-provider-config")
    );
}

// === the broker ===

#[test]
fn the_broker_runs_replicated_restricted_and_probed_on_its_configured_ports() {
    let config = broker_config();
    let http = u64::from(config.http_addr.port());
    let grpc = u64::from(config.grpc_addr.expect("grpc_addr").port());
    let d = deployment();
    assert!(d["spec"]["replicas"].as_u64().unwrap() >= 2, "replicas");
    let pod = pod_spec(&d);
    let c = container(&d);
    let pod_labels = &d["spec"]["template"]["metadata"]["labels"];

    // Security context: the restricted profile, at pod and container level.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_ne!(pod["securityContext"]["runAsUser"], 0);
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(sc["capabilities"].get("add").is_none());
    assert_ne!(sc["privileged"], true);
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(pod["automountServiceAccountToken"], false);
    for key in ["hostNetwork", "hostPID", "hostIPC"] {
        assert_ne!(pod[key], true, "{key}");
    }
    for v in arr(&pod["volumes"], "volumes") {
        assert!(v.get("hostPath").is_none(), "base uses no hostPath: {v}");
    }
    for m in arr(&c["volumeMounts"], "volumeMounts") {
        assert_eq!(m["readOnly"], true, "{m}");
    }
    assert!(c["resources"]["requests"]["cpu"].is_string());
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    assert!(
        pod["terminationGracePeriodSeconds"].as_u64().unwrap() > config.shutdown_grace.as_secs(),
        "the grace period must outlast shutdown_grace_seconds"
    );

    // Probes on the real endpoints of the HTTP listener.
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(resolve_port(c, &get["port"]), http, "{probe} port");
    }
    assert_eq!(resolve_port(c, &Value::from("http")), http);
    assert_eq!(resolve_port(c, &Value::from("grpc")), grpc);

    // Services reach those ports, and select the pods.
    let mut served = BTreeSet::new();
    let services: Vec<Value> = manifests()
        .into_iter()
        .filter(|(f, _)| f.starts_with("deploy/base/"))
        .flat_map(|(_, d)| d)
        .filter(|d| d["kind"] == "Service")
        .collect();
    assert_eq!(services.len(), 2, "a realm and a grpc Service");
    for svc in &services {
        for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
            assert_eq!(&pod_labels[k], v, "Service selector {k}");
        }
        for p in arr(&svc["spec"]["ports"], "ports") {
            let target = resolve_port(c, &p["targetPort"]);
            assert_eq!(
                p["port"].as_u64(),
                Some(target),
                "service port = container port"
            );
            served.insert(target);
        }
    }
    assert_eq!(served, BTreeSet::from([http, grpc]));

    // A PodDisruptionBudget for these pods that keeps one serving.
    let pdb = object("deploy/base/", "PodDisruptionBudget", "svid-broker");
    for (k, v) in pdb["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&pod_labels[k], v, "PDB selector {k}");
    }
    let min = pdb["spec"]["minAvailable"].as_u64().unwrap();
    assert!(min >= 1 && min < d["spec"]["replicas"].as_u64().unwrap());

    // The namespace enforces the restricted profile.
    let ns = object("deploy/base/", "Namespace", NAMESPACE);
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
}

/// The KMS overlay's config loads whole, names its keys in KMS, and is base's in every other
/// table, so the copy cannot drift from base unnoticed.
#[test]
fn the_kms_overlay_config_loads_and_differs_from_base_only_in_signing() {
    let text = read("deploy/overlays/kms/config/broker.toml");
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig::from_toml_str(&text, dir.path())
        .unwrap_or_else(|e| panic!("deploy/overlays/kms/config/broker.toml does not load: {e}"));
    assert!(
        matches!(
            config.signing,
            svid_broker_server::config::SigningSource::KeyStore { .. }
        ),
        "{:?}",
        config.signing
    );
    assert!(config.key_store.aws_kms.is_some() && config.key_store.pkcs11.is_none());
    let mut overlay = toml_value(&text, "the kms overlay's broker.toml");
    let mut base = toml_value(&broker_toml(), "broker.toml");
    let overlay_signing = overlay.as_object_mut().unwrap().remove("signing").unwrap();
    base.as_object_mut().unwrap().remove("signing");
    assert_eq!(
        overlay, base,
        "the kms overlay's config differs from base outside [signing]"
    );
    assert!(
        overlay_signing.get("ca_key_file").is_none(),
        "{overlay_signing}"
    );
}

#[test]
fn broker_config_and_policy_load_and_their_paths_are_mounted() {
    let config = broker_config();
    let raw = toml_value(&broker_toml(), "broker.toml");
    let policy_text = read("deploy/base/config/policy.toml");
    svid_broker_policy::Policy::from_toml_str(&policy_text)
        .unwrap_or_else(|e| panic!("deploy/base/config/policy.toml does not load: {e}"));
    let d = deployment();
    let c = container(&d);

    // The container reads the generated config from its mount.
    let args: Vec<&str> = arr(&c["args"], "args")
        .iter()
        .map(|a| s(a, "arg"))
        .collect();
    assert_eq!(&args[..2], ["serve", "--config"]);
    let (dir, volume) = mount_of(&d, |v| v["configMap"]["name"] == "svid-broker-config");
    assert_eq!(
        generator_files("deploy/base/kustomization.yaml", "svid-broker-config"),
        ["config/broker.toml"]
    );
    assert_eq!(args[2], format!("{dir}/broker.toml"));
    assert!(volume["configMap"].get("items").is_none());

    // The policy the config names is the generated one.
    let policy_path = config.policy_file.display().to_string();
    let (dir, _) = mount_of(&d, |v| v["configMap"]["name"] == "svid-broker-policy");
    assert_eq!(
        generator_files("deploy/base/kustomization.yaml", "svid-broker-policy"),
        ["config/policy.toml"]
    );
    assert_eq!(policy_path, format!("{dir}/policy.toml"));

    // The signing CA is a Secret reference with exactly the two files the config names.
    let cert = s(&raw["signing"]["ca_cert_file"], "ca_cert_file");
    let key = s(&raw["signing"]["ca_key_file"], "ca_key_file");
    let (dir, volume) = mount_of(&d, |v| v.get("secret").is_some());
    assert_eq!(volume["secret"]["secretName"], "svid-broker-signing-ca");
    assert_eq!(
        (dir_name(cert), dir_name(key)),
        (dir.as_str(), dir.as_str())
    );
    assert_eq!(
        item_keys(&volume, "secret"),
        BTreeSet::from([file_name(cert).to_owned(), file_name(key).to_owned()])
    );
    // Readable by the owner and the pod's group only.
    assert_eq!(volume["secret"]["defaultMode"].as_u64(), Some(0o440));

    // The service-account issuer's JWKS comes from its ConfigMap.
    let issuer = &raw["service_account"]["issuers"][0];
    let jwks = s(&issuer["jwks_file"], "jwks_file");
    let (dir, volume) = mount_of(&d, |v| v["configMap"]["name"] == "svid-broker-sa-jwks");
    assert_eq!(dir_name(jwks), dir);
    assert_eq!(
        item_keys(&volume, "configMap"),
        BTreeSet::from([file_name(jwks).to_owned()])
    );

    // The Workload API socket is in the SPIFFE CSI driver's volume.
    let socket = config
        .workload_api
        .as_deref()
        .and_then(|w| w.strip_prefix("unix://"))
        .expect("a unix workload_api");
    let (dir, volume) = mount_of(&d, |v| v["csi"]["driver"] == "csi.spiffe.io");
    assert_eq!(dir_name(socket), dir);
    assert_eq!(volume["csi"]["readOnly"], true);

    // Every volume is mounted and every mount has a volume.
    let volumes: BTreeSet<&str> = arr(&pod_spec(&d)["volumes"], "volumes")
        .iter()
        .map(|v| s(&v["name"], "name"))
        .collect();
    let mounts: BTreeSet<&str> = arr(&c["volumeMounts"], "volumeMounts")
        .iter()
        .map(|m| s(&m["name"], "name"))
        .collect();
    assert_eq!(volumes, mounts);

    // The hostPath component swaps exactly that volume for the agent's socket directory.
    let component = yaml_docs(
        &read("deploy/components/hostpath-socket/kustomization.yaml"),
        "component",
    );
    let patch = arr(&component[0]["patches"], "patches")
        .iter()
        .find(|p| p["target"]["kind"] == "Deployment")
        .unwrap();
    let patch = &yaml_docs(s(&patch["patch"], "patch"), "patch")[0];
    let v = &pod_spec(patch)["volumes"][0];
    assert_eq!(v["name"], "spiffe-workload-api");
    assert!(v["csi"].is_null() && v.as_object().unwrap().contains_key("csi"));
    assert_eq!(
        format!(
            "{}/{}",
            s(&v["hostPath"]["path"], "hostPath"),
            file_name(socket)
        ),
        plugin_socket(),
        "the host directory holds the agent socket the plugin uses"
    );

    // The gRPC Service port is the one nodes' plugins dial.
    let plugin = plugin_config();
    let port = s(&plugin["broker"], "broker").rsplit_once(':').unwrap().1;
    assert_eq!(
        port.parse::<u16>().unwrap(),
        config.grpc_addr.unwrap().port()
    );
}

// === the node plugin ===

fn plugin_config() -> Value {
    toml_value(
        &read("deploy/node/config/config.toml"),
        "deploy/node/config/config.toml",
    )
}

/// The host path of the agent socket the plugin dials.
fn plugin_socket() -> String {
    s(&plugin_config()["svid"]["workload_api"], "workload_api")
        .strip_prefix("unix://")
        .unwrap()
        .to_owned()
}

fn kubelet_configs() -> Vec<String> {
    deploy_files()
        .into_iter()
        .filter(|f| f.starts_with("deploy/node/kubelet/"))
        .collect()
}

/// The broker's SPIFFE ID as SPIRE gives it: its namespace and service account.
fn broker_id() -> String {
    let d = deployment();
    let k = &yaml_docs(&read("deploy/base/kustomization.yaml"), "kustomization")[0];
    let td = s(
        &toml_value(&broker_toml(), "broker.toml")["service_account"]["issuers"][0]["trust_domain"],
        "trust_domain",
    )
    .to_owned();
    format!(
        "spiffe://{td}/ns/{}/sa/{}",
        s(&k["namespace"], "namespace"),
        s(&pod_spec(&d)["serviceAccountName"], "serviceAccountName")
    )
}

#[test]
fn node_pieces_fit_the_broker_and_pass_validate() {
    let broker = toml_value(&broker_toml(), "broker.toml");
    let plugin_cfg = plugin_config();
    assert_eq!(plugin_cfg["broker_id"], broker_id().as_str());
    // The registries the plugin serves are the policy's.
    let policy = toml_value(&read("deploy/base/config/policy.toml"), "policy.toml");
    let services: BTreeSet<&str> = arr(&policy["registries"], "registries")
        .iter()
        .map(|r| s(&r["service"], "service"))
        .collect();
    for r in arr(&plugin_cfg["registries"], "registries") {
        assert!(services.contains(s(&r["service"], "service")), "{r}");
    }
    // The ConfigMap is made of the file nodes install.
    assert_eq!(
        generator_files(
            "deploy/node/kustomization.yaml",
            "svid-credential-provider-config"
        ),
        ["config/config.toml"]
    );

    let audiences: Vec<&str> = arr(&broker["service_account"]["issuers"][0]["audiences"], "aud")
        .iter()
        .map(|a| s(a, "audience"))
        .collect();
    let role = object("deploy/node/", "ClusterRole", "svid-broker-token-audience");
    let rule = &arr(&role["rules"], "rules")[0];
    assert_eq!(rule["apiGroups"], serde_json::json!([""]));
    assert_eq!(
        rule["verbs"],
        serde_json::json!(["request-serviceaccounts-token-audience"])
    );
    let binding = object(
        "deploy/node/",
        "ClusterRoleBinding",
        "svid-broker-token-audience",
    );
    assert_eq!(binding["roleRef"]["name"], "svid-broker-token-audience");
    assert_eq!(binding["subjects"][0]["kind"], "Group");
    assert_eq!(binding["subjects"][0]["name"], "system:nodes");

    let config_arg = format!("{}/config.toml", install_default("CONFIG_DIR"));
    let mut names = BTreeSet::new();
    let mut sa_mode = 0;
    for f in kubelet_configs() {
        let doc = &yaml_docs(&read(&f), &f)[0];
        for p in arr(&doc["providers"], "providers") {
            names.insert(s(&p["name"], "name").to_owned());
            assert_eq!(
                p["args"],
                serde_json::json!(["--config", config_arg]),
                "{f}: the installed plugin config"
            );
            if let Some(t) = p.get("tokenAttributes") {
                let aud = s(&t["serviceAccountTokenAudience"], "audience");
                assert!(audiences.contains(&aud), "{f}: audience {aud}");
                assert_eq!(rule["resources"], serde_json::json!([aud]), "RBAC resource");
                assert_eq!(p["name"], "svid-credential-provider-sa");
                sa_mode += 1;
            } else {
                assert_eq!(p["name"], PLUGIN);
            }
        }
    }
    assert_eq!(kubelet_configs().len(), 3, "node, sa and both");
    assert_eq!(sa_mode, 2);
    assert_eq!(
        names,
        BTreeSet::from([PLUGIN.to_owned(), format!("{PLUGIN}-sa")])
    );

    let Some(bin) = plugin_binary() else { return };
    for f in kubelet_configs() {
        assert_validates(
            &bin,
            &root().join(&f),
            &root().join("deploy/node/config/config.toml"),
        );
    }
    // The check can fail: a config that does not cover the patterns is reported.
    let dir = tempfile::tempdir().unwrap();
    let narrow = dir.path().join("narrow.toml");
    std::fs::write(
        &narrow,
        read("deploy/node/config/config.toml").replace(
            "match_images = [\"registry.example.org\"]",
            "match_images = [\"other.example.org\"]",
        ),
    )
    .unwrap();
    let out = plugin(
        &bin,
        &[
            "validate",
            "--kubelet-config",
            root()
                .join("deploy/node/kubelet/credential-provider-config.yaml")
                .to_str()
                .unwrap(),
            "--config",
            narrow.to_str().unwrap(),
        ],
    );
    assert!(out.stdout.starts_with("warning: "), "{}", out.stdout);
}

/// Runs `install-plugin.sh BINARY MODE` into `dest`; returns the output with `dest` removed.
fn install(bin: &Path, mode: &str, dest: &Path) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg(root().join("deploy/node/install-plugin.sh"))
        .arg(bin)
        .arg(mode);
    for var in ["BIN_DIR", "CONFIG_DIR", "KUBELET_CONFIG_DIR"] {
        cmd.env(var, format!("{}{}", dest.display(), install_default(var)));
    }
    let mut out = exec(cmd, None);
    out.stdout = out.stdout.replace(&dest.display().to_string(), "");
    out
}

#[test]
fn install_plugin_places_the_binary_the_link_and_the_configs() {
    let Some(bin) = plugin_binary() else { return };
    for (mode, source) in [
        ("node", "credential-provider-config.yaml"),
        ("sa", "credential-provider-config-sa.yaml"),
        ("both", "credential-provider-config-both.yaml"),
    ] {
        let dest = tempfile::tempdir().unwrap();
        let out = install(&bin, mode, dest.path());
        assert_eq!(out.code(), Some(0), "{mode}: {}{}", out.stdout, out.stderr);
        let bin_dir = dest
            .path()
            .join(install_default("BIN_DIR").trim_start_matches('/'));
        let installed = bin_dir.join(PLUGIN);
        assert_eq!(
            std::fs::read(&installed).unwrap(),
            std::fs::read(&bin).unwrap()
        );
        let link = bin_dir.join(format!("{PLUGIN}-sa"));
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new(PLUGIN),
            "a relative symbolic link"
        );
        let kubelet_file = dest
            .path()
            .join(install_default("KUBELET_CONFIG_DIR").trim_start_matches('/'))
            .join("svid-credential-provider.yaml");
        assert_eq!(
            std::fs::read_to_string(&kubelet_file).unwrap(),
            read(&format!("deploy/node/kubelet/{source}"))
        );
        assert!(out.stdout.contains(&format!(
            "--image-credential-provider-bin-dir={}\n",
            install_default("BIN_DIR")
        )));
    }
    let dest = tempfile::tempdir().unwrap();
    let out = install(&bin, "everything", dest.path());
    assert_eq!(out.code(), Some(2));
    assert_eq!(
        out.stderr,
        "install-plugin.sh: mode must be node, sa or both\n"
    );
}

// === the docs ===

/// True when every key of `part` has the same value in `whole` (objects recursively; arrays
/// and scalars equal).
fn subset(part: &Value, whole: &Value) -> bool {
    match (part, whole) {
        (Value::Object(p), Value::Object(w)) => p
            .iter()
            .all(|(k, v)| w.get(k).is_some_and(|wv| subset(v, wv))),
        (Value::Array(p), Value::Array(w)) if p.len() == w.len() => {
            p.iter().zip(w).all(|(a, b)| subset(a, b))
        }
        _ => part == whole,
    }
}

/// `base` with the tables `fragment` defines replaced by the fragment's.
fn replace_tables(base: &str, fragment: &str) -> String {
    let headers: BTreeSet<&str> = fragment
        .lines()
        .filter(|l| l.starts_with('['))
        .map(str::trim)
        .collect();
    let mut out = String::new();
    let mut skipping = false;
    for line in base.lines() {
        if line.starts_with('[') {
            skipping = headers.contains(line.trim());
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(fragment);
    out
}

/// What the checks of one page collected.
#[derive(Default)]
struct Facts {
    /// (parent, spiffe id, selectors, node entry)
    entries: Vec<(String, String, Vec<String>, bool)>,
    agent: Option<String>,
    cluster_spiffeid: Option<Value>,
    outputs: Vec<String>,
}

/// A page's named files, written to a temporary directory.
struct Workspace {
    dir: tempfile::TempDir,
    files: BTreeMap<String, String>,
}

impl Workspace {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A documented argument as a real path: `deploy/...` in the repository, the installed
    /// plugin config as deploy's, bare names in the workspace.
    fn map_arg(&self, arg: &str) -> String {
        let default_config = format!("{}/config.toml", install_default("CONFIG_DIR"));
        if arg.starts_with("deploy/") {
            root().join(arg).display().to_string()
        } else if arg == default_config {
            root()
                .join("deploy/node/config/config.toml")
                .display()
                .to_string()
        } else if self.files.contains_key(arg) || arg.ends_with(".log") {
            self.path(arg).display().to_string()
        } else {
            arg.to_owned()
        }
    }
}

fn check_page(page: &str, md: &str, bin: Option<&Path>, facts: &mut Facts) -> usize {
    let blocks = blocks(page, md);
    let ws = Workspace {
        dir: tempfile::tempdir().unwrap(),
        files: blocks
            .iter()
            .filter_map(|b| Some((b.file.clone()?, b.body.clone())))
            .collect(),
    };
    for (name, body) in &ws.files {
        std::fs::write(ws.path(name), body).unwrap();
    }
    let plugin_config = blocks
        .iter()
        .find(|b| b.is(Role::PluginConfig))
        .map_or_else(
            || root().join("deploy/node/config/config.toml"),
            |b| ws.path(b.file.as_deref().expect("plugin-config needs file=")),
        );
    let mut checked = 0;
    let mut logs = Vec::new();
    for b in &blocks {
        let at = format!("{page} line {}", b.line);
        let before = checked;
        // What the block's language and keys ask, whatever its role.
        let parsed = match b.lang.as_str() {
            "yaml" => {
                let docs = yaml_docs(&b.body, &at);
                if let Some(path) = &b.same_as {
                    let theirs = yaml_docs(&read(path), path);
                    for d in &docs {
                        assert!(theirs.contains(d), "{at}: differs from {path}");
                    }
                    checked += 1;
                }
                docs.into_iter().next()
            }
            "toml" => {
                let value = toml_value(&b.body, &at);
                if let Some(path) = &b.subset_of {
                    let whole = toml_value(&read(path), path);
                    assert!(subset(&value, &whole), "{at}: not as in {path}");
                    checked += 1;
                }
                Some(value)
            }
            "json" => {
                let value: Value = serde_json::from_str(&b.body)
                    .unwrap_or_else(|e| panic!("{at}: not valid json: {e}"));
                assert!(b.file.is_some(), "{at}: json blocks are files");
                Some(value)
            }
            _ => None,
        };
        assert!(
            b.same_as.is_none() || b.lang == "yaml",
            "{at}: same-as= compares yaml"
        );
        assert!(
            b.subset_of.is_none() || b.lang == "toml",
            "{at}: subset-of= compares toml"
        );
        if b.file.is_some() {
            // Used by the page's commands; parsed above when it is yaml, toml or json.
            checked += 1;
        }
        match b.role {
            None => {}
            Some(Role::KubeletConfig) => {
                if let Some(bin) = bin {
                    let file = ws.path(&format!("kubelet-{}.yaml", b.line));
                    std::fs::write(&file, &b.body).unwrap();
                    assert_validates(bin, &file, &plugin_config);
                }
                checked += 1;
            }
            Some(Role::ClusterSpiffeid) => {
                facts.cluster_spiffeid =
                    Some(parsed.unwrap_or_else(|| panic!("{at}: a ClusterSPIFFEID is yaml")));
                checked += 1;
            }
            Some(Role::BrokerFragment) => {
                let merged = replace_tables(&broker_toml(), &b.body);
                let dir = tempfile::tempdir().unwrap();
                BrokerConfig::from_toml_str(&merged, dir.path())
                    .unwrap_or_else(|e| panic!("{at}: the broker refuses it: {e}"));
                checked += 1;
            }
            Some(Role::PluginConfig) => {
                if let Some(bin) = bin {
                    let kubelet =
                        root().join("deploy/node/kubelet/credential-provider-config.yaml");
                    assert_validates(bin, &kubelet, &plugin_config);
                }
                checked += 1;
            }
            Some(Role::SpireAgent) => {
                facts.agent = Some(b.body.clone());
                checked += 1;
            }
            Some(Role::KubeletLog) => {
                // Checked once the page's commands have run: it may quote their output.
                logs.push((at.clone(), b.body.clone()));
                checked += 1;
            }
            Some(Role::Run) => {
                if let Some(bin) = bin {
                    run_plugin_block(&at, b, bin, &ws, facts);
                }
                checked += 1;
            }
            Some(Role::Install) => {
                if let Some(bin) = bin {
                    for (cmd, expected) in commands(b) {
                        let w = words(&cmd);
                        assert_eq!(w[..2], ["sudo", "deploy/node/install-plugin.sh"], "{at}");
                        let dest = tempfile::tempdir().unwrap();
                        let out = install(bin, &w[3], dest.path());
                        assert_eq!(out.code(), Some(0), "{at}: {}", out.stderr);
                        assert_eq!(out.stdout, expected, "{at}: output differs");
                    }
                }
                checked += 1;
            }
            Some(Role::Kubectl) => {
                for (cmd, output) in commands(b) {
                    assert_eq!(output, "", "{at}: kubectl output is not shown");
                    check_kubectl(&at, &cmd);
                }
                checked += 1;
            }
            Some(Role::Spire) => {
                for (cmd, output) in commands(b) {
                    assert_eq!(output, "", "{at}");
                    check_spire_command(&at, &cmd, facts);
                }
                checked += 1;
            }
            Some(Role::Sh) => {
                run_ca_recipe(&at, b);
                checked += 1;
            }
            Some(role @ (Role::Policy | Role::BrokerConfig | Role::AuditExample)) => {
                panic!("{at}: {role:?} blocks are checked on the operator pages (docs.rs)")
            }
        }
        assert!(checked > before, "{at}: the block is checked by nothing");
    }
    for (at, body) in logs {
        check_kubelet_log(&at, &body, bin, facts);
    }
    checked
}

fn run_plugin_block(at: &str, b: &Block, bin: &Path, ws: &Workspace, facts: &mut Facts) {
    let want_code = b.exit.unwrap_or(0);
    for (cmd, expected) in commands(b) {
        let mut w = words(&cmd);
        assert_eq!(w.remove(0), PLUGIN, "{at}: only the plugin is run");
        let mut stdin = None;
        if let Some(i) = w.iter().position(|a| a == "<") {
            let file = ws.map_arg(&w[i + 1]);
            stdin = Some(std::fs::read(file).unwrap());
            w.truncate(i);
        }
        let args: Vec<String> = w.iter().map(|a| ws.map_arg(a)).collect();
        let mut command = Command::new(bin);
        command.args(&args).current_dir(ws.dir.path());
        let out = exec(command, stdin.as_deref());
        assert_eq!(
            out.code(),
            Some(want_code),
            "{at}: `{cmd}`: {}{}",
            out.stdout,
            out.stderr
        );
        assert!(
            out.stdout.is_empty() || out.stderr.is_empty(),
            "{at}: output on both streams"
        );
        let text = format!("{}{}", out.stdout, out.stderr)
            .replace(&format!("{}/", ws.dir.path().display()), "");
        assert_eq!(
            text, expected,
            "{at}: output of `{cmd}` differs from the page"
        );
        facts.outputs.extend(expected.lines().map(str::to_owned));
    }
}

fn check_kubelet_log(at: &str, body: &str, bin: Option<&Path>, facts: &Facts) {
    let corpus = message_corpus();
    for line in body.lines() {
        let rest = line
            .strip_prefix(
                "Failed getting credential from external registry credential provider: error execing credential provider plugin ",
            )
            .unwrap_or_else(|| panic!("{at}: not a kubelet plugin failure line: {line}"));
        let (provider, rest) = rest.split_once(" for image ").unwrap();
        let (image, message) = rest.split_once(": exit status 1: ").unwrap();
        // The provider exists in deploy's kubelet configs and matches the image.
        let patterns: Vec<String> = kubelet_configs()
            .iter()
            .flat_map(|f| {
                let doc = yaml_docs(&read(f), f).remove(0);
                arr(&doc["providers"], "providers").clone()
            })
            .filter(|p| p["name"] == provider)
            .flat_map(|p| arr(&p["matchImages"], "matchImages").clone())
            .map(|m| m.as_str().unwrap().to_owned())
            .collect();
        assert!(!patterns.is_empty(), "{at}: unknown provider {provider}");
        if let Some(bin) = bin {
            let matched = patterns
                .iter()
                .any(|p| plugin(bin, &["match-image", p, image]).stdout == "true\n");
            assert!(matched, "{at}: {provider} is not run for {image}");
        }
        // The plugin's line is a real output shown on the page, or made of the sources' texts.
        let real = facts.outputs.iter().any(|o| o == message);
        let from_sources = message
            .strip_prefix("svid-credential-provider: ")
            .unwrap()
            .split('…')
            .map(|f| f.trim_end_matches(": ").trim())
            .filter(|f| !f.is_empty())
            .all(|f| f.split(": ").all(|part| corpus.contains(part)));
        assert!(
            real || from_sources,
            "{at}: {message:?} is not what the plugin prints"
        );
    }
}

fn check_kubectl(at: &str, cmd: &str) {
    let mut w = words(cmd);
    assert_eq!(w.remove(0), "kubectl", "{at}");
    if let Some(i) = w.iter().position(|a| a == "-n") {
        assert_eq!(w[i + 1], NAMESPACE, "{at}: namespace");
        w.drain(i..i + 2);
    }
    let d = deployment();
    let from_files = |w: &[String]| -> BTreeSet<String> {
        w.iter()
            .filter_map(|a| a.strip_prefix("--from-file="))
            .map(|f| f.split_once('=').map_or(f, |(k, _)| k).to_owned())
            .collect()
    };
    match w.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["apply", "-k", dir] => {
            assert!(
                root().join(dir).join("kustomization.yaml").is_file(),
                "{at}: {dir} is not a kustomization"
            );
        }
        ["create", "namespace", ns] => assert_eq!(*ns, NAMESPACE, "{at}"),
        ["create", "secret", "generic", name, ..] => {
            let (_, volume) = mount_of(&d, |v| v["secret"]["secretName"] == *name);
            assert_eq!(from_files(&w), item_keys(&volume, "secret"), "{at}: keys");
        }
        ["create", "configmap", name, ..] => {
            let (_, volume) = mount_of(&d, |v| v["configMap"]["name"] == *name);
            assert_eq!(
                from_files(&w),
                item_keys(&volume, "configMap"),
                "{at}: keys"
            );
        }
        ["get", "--raw", path, rest @ ..] => {
            assert!(
                ["/openid/v1/jwks", "/.well-known/openid-configuration"].contains(path),
                "{at}: {path}"
            );
            if let [">", file] = rest {
                let (_, volume) = mount_of(&d, |v| v["configMap"]["name"] == "svid-broker-sa-jwks");
                assert!(item_keys(&volume, "configMap").contains(*file), "{at}");
            }
        }
        ["auth", "can-i", verb, resource, rest @ ..] => {
            let role = object("deploy/node/", "ClusterRole", "svid-broker-token-audience");
            let rule = &role["rules"][0];
            assert!(
                arr(&rule["verbs"], "verbs").contains(&Value::from(*verb)),
                "{at}"
            );
            assert!(
                arr(&rule["resources"], "resources").contains(&Value::from(*resource)),
                "{at}"
            );
            let binding = object(
                "deploy/node/",
                "ClusterRoleBinding",
                "svid-broker-token-audience",
            );
            let group = rest
                .iter()
                .find_map(|a| a.strip_prefix("--as-group="))
                .expect("--as-group");
            assert_eq!(binding["subjects"][0]["name"], group, "{at}");
        }
        ["rollout", "status", target] => {
            assert_eq!(*target, "deployment/svid-broker", "{at}");
        }
        other => panic!("{at}: unchecked kubectl command {other:?}"),
    }
}

fn check_spire_command(at: &str, cmd: &str, facts: &mut Facts) {
    let w = words(cmd);
    match w.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["spire-server", "entry", "create", flags @ ..] => {
            let (mut parent, mut id, mut selectors, mut node) =
                (String::new(), String::new(), Vec::new(), false);
            let mut it = flags.iter();
            while let Some(flag) = it.next() {
                match *flag {
                    "-node" => node = true,
                    "-parentID" => parent = (*it.next().unwrap()).to_owned(),
                    "-spiffeID" => id = (*it.next().unwrap()).to_owned(),
                    "-selector" => selectors.push((*it.next().unwrap()).to_owned()),
                    other => panic!("{at}: unchecked flag {other}"),
                }
            }
            SpiffeId::parse(&id).unwrap_or_else(|e| panic!("{at}: {id}: {e}"));
            facts.entries.push((parent, id, selectors, node));
        }
        ["spire-server", "bundle", "show", "-format", "spiffe"] => {}
        other => panic!("{at}: unchecked spire command {other:?}"),
    }
}

fn run_ca_recipe(at: &str, b: &Block) {
    if Command::new("openssl").arg("version").output().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{at}: openssl is needed"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (cmd, output) in commands(b) {
        assert_eq!(output, "", "{at}");
        let mut sh = Command::new("sh");
        sh.args(["-euc", &cmd]).current_dir(dir.path());
        let out = exec(sh, None);
        assert_eq!(out.code(), Some(0), "{at}: `{cmd}`: {}", out.stderr);
    }
    // The broker accepts the CA: registry-config loads the config with it and writes the bundle.
    let config = broker_toml()
        .replace("/etc/svid-broker/signing-ca/", "")
        .replace("/etc/svid-broker/policy/", "")
        .replace("/etc/svid-broker/sa-jwks/", "");
    std::fs::write(dir.path().join("broker.toml"), config).unwrap();
    std::fs::write(
        dir.path().join("policy.toml"),
        read("deploy/base/config/policy.toml"),
    )
    .unwrap();
    let config_path = dir.path().join("broker.toml");
    let out_dir = dir.path().join("out");
    let out = run(
        &[
            "registry-config",
            "--config",
            config_path.to_str().unwrap(),
            "--registry",
            "main",
            "--out-dir",
            out_dir.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.code(), Some(0), "{at}: {}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(out_dir.join("main-rootcertbundle.pem"))
            .unwrap()
            .trim(),
        std::fs::read_to_string(dir.path().join("ca.pem"))
            .unwrap()
            .trim()
    );
}

/// The SPIRE entries, agent settings and `ClusterSPIFFEID` of the pages agree with deploy/.
fn check_spire_facts(facts: &Facts) {
    let broker = toml_value(&broker_toml(), "broker.toml");
    let td = s(
        &broker["service_account"]["issuers"][0]["trust_domain"],
        "trust_domain",
    );
    let agent = facts.agent.as_deref().expect("an hcl spire-agent block");
    let setting = |key: &str| -> String {
        let line = agent
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(key)?.trim_start().strip_prefix('='))
            .unwrap_or_else(|| panic!("agent config has no {key}"));
        line.trim().trim_matches('"').to_owned()
    };
    assert_eq!(setting("trust_domain"), td);
    assert_eq!(setting("socket_path"), plugin_socket());
    assert_eq!(setting("discover_workload_path"), "true");
    let unix = agent
        .find("WorkloadAttestor \"unix\"")
        .expect("unix attestor");
    assert!(agent[unix..].contains("discover_workload_path = true"));
    let cluster = setting("cluster");

    let nodes: Vec<_> = facts.entries.iter().filter(|e| e.3).collect();
    assert_eq!(nodes.len(), 1, "one node alias");
    let alias = &nodes[0].1;
    assert_eq!(nodes[0].2, [format!("k8s_psat:cluster:{cluster}")]);
    let actors: Vec<&str> = arr(&broker["service_account"]["trusted_actors"], "actors")
        .iter()
        .map(|a| s(a, "actor"))
        .collect();
    let actors = TrustedActors::parse(&actors).unwrap();
    let plugin_path = format!("{}/{PLUGIN}", install_default("BIN_DIR"));
    let (mut saw_plugin, mut saw_broker) = (false, false);
    for (parent, id, selectors, node) in &facts.entries {
        assert!(id.starts_with(&format!("spiffe://{td}/")), "{id}");
        if *node {
            continue;
        }
        assert_eq!(parent, alias, "{id} hangs off the node alias");
        if selectors.iter().any(|s| s.starts_with("unix:")) {
            assert_eq!(
                selectors,
                &["unix:uid:0".to_owned(), format!("unix:path:{plugin_path}")]
            );
            let spiffe = SpiffeId::parse(id).unwrap();
            assert!(
                actors.admits(&spiffe).is_some(),
                "{id} is not a trusted actor"
            );
            // Node mode: the plugin's identity may pull the shared base images.
            let out = run(
                &[
                    "policy",
                    "explain",
                    "--policy",
                    root()
                        .join("deploy/base/config/policy.toml")
                        .to_str()
                        .unwrap(),
                    "--subject",
                    id,
                    "--service",
                    "registry.example.org",
                    "--scope",
                    "repository:base/debian:pull",
                ],
                None,
            );
            assert!(
                out.stdout
                    .contains("granted:  repository:base/debian:pull\n"),
                "{}{}",
                out.stdout,
                out.stderr
            );
            saw_plugin = true;
        } else if selectors.contains(&format!("k8s:ns:{NAMESPACE}")) {
            assert_eq!(*id, broker_id());
            let d = deployment();
            let sa = s(&pod_spec(&d)["serviceAccountName"], "sa");
            assert_eq!(
                selectors,
                &[format!("k8s:ns:{NAMESPACE}"), format!("k8s:sa:{sa}")]
            );
            saw_broker = true;
        } else {
            let (ns, sa) = (&selectors[0], &selectors[1]);
            let ns = ns.strip_prefix("k8s:ns:").unwrap();
            let sa = sa.strip_prefix("k8s:sa:").unwrap();
            assert_eq!(*id, format!("spiffe://{td}/ns/{ns}/sa/{sa}"));
        }
    }
    assert!(
        saw_plugin && saw_broker,
        "entries for the plugin and the broker"
    );

    // The controller manager's template gives the broker the ID the plugin expects.
    let cs = facts.cluster_spiffeid.as_ref().expect("a ClusterSPIFFEID");
    let template = s(&cs["spec"]["spiffeIDTemplate"], "template");
    let d = deployment();
    let rendered = template
        .replace("{{ .TrustDomain }}", td)
        .replace("{{ .PodMeta.Namespace }}", NAMESPACE)
        .replace(
            "{{ .PodSpec.ServiceAccountName }}",
            s(&pod_spec(&d)["serviceAccountName"], "sa"),
        );
    assert_eq!(rendered, broker_id());
}

#[test]
fn setup_docs_run_and_agree_with_deploy() {
    let bin = plugin_binary();
    let mut facts = Facts::default();
    let mut checked = 0;
    for page in [
        "docs/kubelet-setup.md",
        "docs/spire-setup.md",
        "deploy/README.md",
    ] {
        checked += check_page(page, &read(page), bin.as_deref(), &mut facts);
    }
    // Only the plugin's section of the troubleshooting page is ours.
    let trouble = read("docs/troubleshooting.md");
    let start = trouble
        .find("\n## The kubelet credential provider plugin\n")
        .expect("the plugin section");
    checked += check_page(
        "docs/troubleshooting.md",
        &trouble[start..],
        bin.as_deref(),
        &mut facts,
    );
    assert!(checked >= 30, "only {checked} blocks checked");
    check_spire_facts(&facts);
}

#[test]
fn new_pages_are_linked_and_their_links_resolve() {
    let readme = read("README.md");
    for page in ["docs/kubelet-setup.md", "docs/spire-setup.md"] {
        assert!(
            readme.contains(&format!("]({page})")),
            "README.md does not link {page}"
        );
    }
    for page in [
        "docs/kubelet-setup.md",
        "docs/spire-setup.md",
        "deploy/README.md",
    ] {
        let md = read(page);
        for link in md.split("](").skip(1) {
            let target = link.split(')').next().unwrap();
            if target.starts_with("http") {
                continue;
            }
            let file = target.split('#').next().unwrap();
            let path = root().join(dir_name(page)).join(file);
            assert!(path.exists(), "{page}: broken link {target}");
        }
    }
}

#[test]
fn the_harness_reads_commands_and_fragments_as_documented() {
    let b = &blocks(
        "t.md",
        "```console spire\n$ a -x \\\n    b\n$ c \"d e\"\nout\n```\n",
    )[0];
    assert_eq!(
        commands(b),
        [
            ("a -x b".to_owned(), String::new()),
            ("c \"d e\"".to_owned(), "out\n".to_owned())
        ]
    );
    assert_eq!(words("c \"d e\" 'f'"), ["c", "d e", "f"]);
    let whole = serde_json::json!({"a": {"b": 1, "c": [1, 2]}, "d": 2});
    assert!(subset(&serde_json::json!({"a": {"c": [1, 2]}}), &whole));
    assert!(!subset(&serde_json::json!({"a": {"b": 2}}), &whole));
    assert!(!subset(&serde_json::json!({"e": 1}), &whole));
    assert_eq!(
        replace_tables("[a]\nx = 1\n[b]\ny = 2\n", "[a]\nx = 3\n"),
        "[b]\ny = 2\n[a]\nx = 3\n"
    );
}
