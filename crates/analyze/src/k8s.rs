//! Kubernetes: a `kubectl` command (from `argv` or `command`) or a `manifest` (a JSON object, a
//! list of them, or a `kind: List`; YAML must already be converted to JSON). Verb, kinds,
//! namespaces, replica changes, deletes of namespaces/PVCs/CRDs, privileged pods, RBAC bindings
//! to cluster-admin.

use countersign_core::Risk;
use serde_json::{Map, Value};

use crate::{names, Findings};

/// Most manifest objects looked at.
const MAX_OBJECTS: usize = 1000;

/// Global options of kubectl that take a value (`-n ns`, `--context x`).
const VALUE_OPTIONS: &[&str] = &[
    "-n",
    "--namespace",
    "--context",
    "--cluster",
    "--kubeconfig",
    "--user",
    "-s",
    "--server",
    "--token",
    "--as",
    "--as-group",
    "-l",
    "--selector",
    "-o",
    "--output",
    "-f",
    "--filename",
    "-c",
    "--container",
    "--field-selector",
    "--grace-period",
    "--timeout",
    "--replicas",
    "--clusterrole",
    "--role",
    "--serviceaccount",
    "--image",
    "-k",
    "--kustomize",
];

/// Kinds whose deletion loses data or everything in them.
fn deletion_tag(kind: &str) -> Option<(&'static str, &'static str)> {
    match kind.to_ascii_lowercase().as_str() {
        "ns" | "namespace" | "namespaces" => {
            Some(("k8s:delete-namespace", "a namespace and everything in it"))
        }
        "pvc"
        | "persistentvolumeclaim"
        | "persistentvolumeclaims"
        | "pv"
        | "persistentvolume"
        | "persistentvolumes" => Some(("k8s:delete-volume", "persistent volumes and their data")),
        "crd" | "crds" | "customresourcedefinition" | "customresourcedefinitions" => Some((
            "k8s:delete-crd",
            "a custom resource definition and every resource of its kind",
        )),
        _ => None,
    }
}

/// A `kubectl` command's arguments (after the program name).
pub(crate) fn kubectl(args: &[String], f: &mut Findings) {
    let mut positional: Vec<&str> = Vec::new();
    let mut namespaces: Vec<String> = Vec::new();
    let mut all = false;
    let mut replicas: Option<String> = None;
    let mut clusterrole: Option<String> = None;
    let mut from_file = false;
    let mut privileged = false;
    let mut i = 0;
    while let Some(a) = args.get(i) {
        let (flag, inline) = match a.split_once('=') {
            Some((k, v)) if a.starts_with('-') => (k, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        if flag.starts_with('-') && flag.len() > 1 {
            let takes = VALUE_OPTIONS.contains(&flag);
            let value = match (&inline, takes) {
                (Some(v), _) => Some(v.clone()),
                (None, true) => {
                    i += 1;
                    args.get(i).cloned()
                }
                (None, false) => None,
            };
            match flag {
                "-n" | "--namespace" => namespaces.extend(value),
                "-A" | "--all-namespaces" => {
                    all = true;
                    namespaces.push("all namespaces".into());
                }
                "--all" => all = true,
                "--replicas" => replicas = value,
                "--clusterrole" => clusterrole = value,
                "-f" | "--filename" | "-k" | "--kustomize" => from_file = true,
                "--privileged" => privileged = inline.as_deref() != Some("false"),
                _ => {}
            }
        } else {
            positional.push(a.as_str());
        }
        i += 1;
    }
    let Some((&verb, rest)) = positional.split_first() else {
        return;
    };
    // `kind name`, `kind/name`, `kind1,kind2`.
    let mut kinds: Vec<String> = Vec::new();
    let mut targets: Vec<String> = Vec::new();
    if let Some(first) = rest.first() {
        for part in first.split(',') {
            let kind = part.split('/').next().unwrap_or(part);
            if !kind.is_empty() && !kinds.iter().any(|k| k == kind) {
                kinds.push(kind.to_string());
            }
        }
        targets.push((*first).to_string());
        targets.extend(rest.iter().skip(1).map(|s| s.to_string()));
    }
    let where_ = if namespaces.is_empty() {
        String::new()
    } else {
        format!(" in {}", names(&namespaces))
    };
    match verb {
        "get" | "describe" | "logs" | "top" | "explain" | "api-resources" | "api-versions"
        | "version" | "diff" | "cluster-info" | "events" | "wait" | "config" => {
            f.tag(Risk::Low, "k8s:read");
        }
        "auth" => f.tag(Risk::Low, "k8s:read"),
        "delete" => {
            f.tag(Risk::High, "k8s:delete");
            let what = if targets.is_empty() && from_file {
                "the resources in a file".to_string()
            } else {
                names(&targets)
            };
            f.say(format!("deletes {what}{where_}"));
            for kind in &kinds {
                if let Some((tag, what)) = deletion_tag(kind) {
                    f.flag(Risk::Critical, tag, format!("deletes {what}"));
                }
            }
            if all {
                f.flag(
                    Risk::Critical,
                    "k8s:delete-all",
                    "deletes every resource of a kind (--all / --all-namespaces)",
                );
            }
        }
        "scale" | "autoscale" => {
            f.tag(Risk::Medium, "k8s:write");
            f.tag(Risk::Medium, "k8s:replicas");
            let to = replicas.clone().unwrap_or_else(|| "?".into());
            f.say(format!(
                "scales {} to {to} replicas{where_}",
                names(&targets)
            ));
            if to == "0" {
                f.flag(
                    Risk::High,
                    "k8s:scale-to-zero",
                    "scales to zero: the workload stops",
                );
            }
        }
        "exec" | "attach" | "cp" | "port-forward" | "debug" | "proxy" | "run" => {
            let risk = if verb == "run" {
                Risk::Medium
            } else {
                Risk::High
            };
            f.flag(
                risk,
                "k8s:exec",
                format!("kubectl {verb}: runs or reaches into a container{where_}"),
            );
            if privileged {
                f.flag(
                    Risk::Critical,
                    "k8s:privileged",
                    "runs a privileged container",
                );
            }
        }
        "drain" | "cordon" | "uncordon" | "taint" => f.flag(
            Risk::High,
            "k8s:node",
            format!(
                "kubectl {verb}: changes scheduling on nodes {}",
                names(&targets)
            ),
        ),
        "certificate" => f.flag(
            Risk::High,
            "k8s:certificate",
            "approves or denies a certificate signing request",
        ),
        _ => {
            // apply, create, replace, patch, edit, set, label, annotate, rollout, expose...
            f.tag(Risk::Medium, "k8s:write");
            let what = if targets.is_empty() && from_file {
                "the resources in a file".to_string()
            } else {
                names(&targets)
            };
            f.say(format!("kubectl {verb} {what}{where_}").replace("  ", " "));
            if verb == "create" && kinds.iter().any(|k| k.contains("rolebinding")) {
                if clusterrole.as_deref() == Some("cluster-admin") {
                    f.flag(
                        Risk::Critical,
                        "k8s:cluster-admin",
                        "binds cluster-admin (full control of the cluster)",
                    );
                } else {
                    f.tag(Risk::High, "k8s:rbac");
                }
            }
            if verb == "rollout" && rest.first().is_some_and(|s| *s == "undo") {
                f.tag(Risk::Medium, "k8s:rollback");
            }
            if let Some(n) = &replicas {
                f.tag(Risk::Medium, "k8s:replicas");
                if n == "0" {
                    f.tag(Risk::High, "k8s:scale-to-zero");
                }
            }
        }
    }
    if namespaces.iter().any(|n| n == "kube-system") {
        f.flag(
            Risk::High,
            "k8s:kube-system",
            "acts on kube-system, the cluster's own components",
        );
    }
}

/// The `manifest` parameter.
pub(crate) fn run_manifest(value: &Value, _params: &Map<String, Value>, f: &mut Findings) {
    let Some(doc) = crate::document(value) else {
        f.flag(
            Risk::High,
            "k8s:unparsed",
            "the manifest is not JSON (convert YAML to JSON); treated as high risk",
        );
        return;
    };
    let mut objects: Vec<&Map<String, Value>> = Vec::new();
    collect(&doc, &mut objects, 0);
    if objects.is_empty() {
        f.flag(
            Risk::High,
            "k8s:unparsed",
            "the manifest holds no Kubernetes object; treated as high risk",
        );
        return;
    }
    f.tag(Risk::Medium, "k8s:write");
    let mut applied: Vec<String> = Vec::new();
    let mut namespaces: Vec<String> = Vec::new();
    for obj in &objects {
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("?");
        let meta = obj.get("metadata").and_then(Value::as_object);
        let name = meta
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("?");
        if let Some(ns) = meta
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
        {
            if !namespaces.iter().any(|n| n == ns) {
                namespaces.push(ns.to_string());
            }
        }
        applied.push(format!("{kind}/{name}"));
        object(kind, name, obj, f);
    }
    let where_ = if namespaces.is_empty() {
        String::new()
    } else {
        format!(" in {}", names(&namespaces))
    };
    f.say(format!(
        "applies {}: {}{where_}",
        crate::count(applied.len(), "object", "objects"),
        names(&applied)
    ));
    if namespaces.iter().any(|n| n == "kube-system") {
        f.flag(
            Risk::High,
            "k8s:kube-system",
            "changes kube-system, the cluster's own components",
        );
    }
}

fn collect<'a>(v: &'a Value, out: &mut Vec<&'a Map<String, Value>>, depth: usize) {
    if out.len() >= MAX_OBJECTS || depth > 3 {
        return;
    }
    match v {
        Value::Array(items) => items.iter().for_each(|i| collect(i, out, depth + 1)),
        Value::Object(m) => {
            if let Some(items) = m.get("items").filter(|_| {
                m.get("kind")
                    .and_then(Value::as_str)
                    .is_some_and(|k| k.ends_with("List"))
            }) {
                collect(items, out, depth + 1);
            } else if m.contains_key("kind") {
                out.push(m);
            }
        }
        _ => {}
    }
}

/// The pod spec inside a workload, if any.
fn pod_spec<'a>(kind: &str, obj: &'a Map<String, Value>) -> Option<&'a Map<String, Value>> {
    let spec = obj.get("spec")?.as_object()?;
    let at = |v: &'a Map<String, Value>, path: &[&str]| -> Option<&'a Map<String, Value>> {
        let mut cur = v;
        for p in path {
            cur = cur.get(*p)?.as_object()?;
        }
        Some(cur)
    };
    match kind {
        "Pod" => Some(spec),
        "CronJob" => at(spec, &["jobTemplate", "spec", "template", "spec"]),
        _ => at(spec, &["template", "spec"]),
    }
}

fn object(kind: &str, name: &str, obj: &Map<String, Value>, f: &mut Findings) {
    if let Some(spec) = pod_spec(kind, obj) {
        for host in ["hostNetwork", "hostPID", "hostIPC"] {
            if spec.get(host) == Some(&Value::Bool(true)) {
                f.flag(
                    Risk::High,
                    "k8s:host-namespace",
                    format!("{kind}/{name} shares the node's {host}"),
                );
            }
        }
        if spec
            .get("volumes")
            .and_then(Value::as_array)
            .is_some_and(|vs| vs.iter().any(|v| v.get("hostPath").is_some()))
        {
            f.flag(
                Risk::High,
                "k8s:host-path",
                format!("{kind}/{name} mounts a path of the node"),
            );
        }
        let containers = ["containers", "initContainers", "ephemeralContainers"]
            .iter()
            .filter_map(|k| spec.get(*k).and_then(Value::as_array))
            .flatten();
        for c in containers {
            let sc = c.get("securityContext");
            let privileged = sc.and_then(|s| s.get("privileged")) == Some(&Value::Bool(true));
            let caps = sc
                .and_then(|s| s.get("capabilities"))
                .and_then(|c| c.get("add"))
                .and_then(Value::as_array)
                .is_some_and(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .any(|c| matches!(c, "SYS_ADMIN" | "ALL" | "NET_ADMIN" | "SYS_PTRACE"))
                });
            if privileged || caps {
                f.flag(
                    Risk::Critical,
                    "k8s:privileged",
                    format!("{kind}/{name} runs a privileged container"),
                );
            }
        }
    }
    if let Some(n) = obj
        .get("spec")
        .and_then(|s| s.get("replicas"))
        .and_then(Value::as_i64)
    {
        f.flag(
            if n == 0 { Risk::High } else { Risk::Medium },
            "k8s:replicas",
            format!("sets {kind}/{name} to {n} replicas"),
        );
        if n == 0 {
            f.tag(Risk::High, "k8s:scale-to-zero");
        }
    }
    match kind {
        "ClusterRoleBinding" | "RoleBinding" => {
            let role = obj
                .get("roleRef")
                .and_then(|r| r.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if role == "cluster-admin" || role == "admin" && kind == "ClusterRoleBinding" {
                f.flag(
                    Risk::Critical,
                    "k8s:cluster-admin",
                    format!("{kind}/{name} binds {role}"),
                );
            } else {
                f.flag(
                    Risk::High,
                    "k8s:rbac",
                    format!("{kind}/{name} binds the role {role}"),
                );
            }
        }
        "ClusterRole" | "Role" => {
            let wildcard = obj
                .get("rules")
                .and_then(Value::as_array)
                .is_some_and(|rules| {
                    rules.iter().any(|r| {
                        ["verbs", "resources", "apiGroups"].iter().all(|k| {
                            r.get(*k)
                                .and_then(Value::as_array)
                                .is_some_and(|a| a.iter().any(|x| x == "*"))
                        }) || ["verbs", "resources"].iter().any(|k| {
                            r.get(*k)
                                .and_then(Value::as_array)
                                .is_some_and(|a| a.iter().any(|x| x == "*"))
                        })
                    })
                });
            f.tag(Risk::High, "k8s:rbac");
            if wildcard {
                f.flag(
                    Risk::High,
                    "k8s:rbac-wildcard",
                    format!("{kind}/{name} allows `*`"),
                );
            }
        }
        "Namespace"
        | "CustomResourceDefinition"
        | "PersistentVolume"
        | "StorageClass"
        | "MutatingWebhookConfiguration"
        | "ValidatingWebhookConfiguration" => {
            f.tag(Risk::High, "k8s:cluster-scoped");
        }
        _ => {}
    }
}
