#!/usr/bin/env python3
"""Builds the format-variant golden scenarios from the example incident.

The same incident, delivered the way each provider exports audit logs, must give the same
verdicts (less what the format cannot carry). Run from anywhere; rewrites the `evidence/`
directories next to this script. Deterministic: no clocks, no randomness.
"""
import gzip
import json

import yaml  # PyYAML: the YAML scenarios
from pathlib import Path

HERE = Path(__file__).resolve().parent
INCIDENT = HERE.parents[2] / "examples" / "incident"
LINES = (INCIDENT / "audit.log").read_text().splitlines()


def fresh(name):
    d = HERE / name / "evidence"
    d.mkdir(parents=True, exist_ok=True)
    for old in d.iterdir():
        old.unlink()
    return d


def copy_inventory(d, *names):
    for n in names:
        (d / n).write_text((INCIDENT / n).read_text())


# EKS: `aws logs filter-log-events` output, the event JSON as a string in `message`.
d = fresh("eks-cloudwatch")
events = []
for i, line in enumerate(LINES):
    ts = json.loads(line)["requestReceivedTimestamp"]
    events.append({"logStreamName": "kube-apiserver-audit-0123456789abcdef0123456789abcdef",
                   "timestamp": 1773129600000 + i, "message": line, "ingestionTime": 1773129660000 + i,
                   "eventId": f"{i:056d}"})
(d / "cloudwatch-export.json").write_text(json.dumps({"events": events, "searchedLogStreams": []}, indent=2))
copy_inventory(d, "nodes.json", "pods.json")

# AKS: Event Hubs / storage export, `{"records":[...]}` with the event in properties.log, BOM first.
d = fresh("aks-diagnostic")
records = [{"time": json.loads(l)["requestReceivedTimestamp"],
            "resourceId": "/SUBSCRIPTIONS/0000/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/SHOP",
            "category": "kube-audit", "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
            "properties": {"log": l, "stream": "stdout", "pod": "kube-apiserver-6d4f9c7b8-abcde"}} for l in LINES]
(d / "PT1H.json").write_bytes(b"\xef\xbb\xbf" + json.dumps({"records": records}).encode())
copy_inventory(d, "nodes.json", "pods.json", "sa_secrets.json")

# The audit log alone, gzip-compressed: what tokentrail proves with no inventory at all.
d = fresh("gzip-log-only")
with gzip.open(d / "audit.log.gz", "wt") as f:
    f.write("\n".join(LINES) + "\n")

# GKE: Cloud Logging LogEntry, one per line. No user.extra survives, so no pod binding: only
# service-account-level checks, and coverage must say so.
d = fresh("gke-no-pod-binding")
out = []
for line in LINES:
    e = json.loads(line)
    ref = e.get("objectRef", {})
    group = ref.get("apiGroup") or "core"
    version = ref.get("apiVersion", "v1")
    parts = [group, version]
    if ref.get("namespace"):
        parts += ["namespaces", ref["namespace"]]
    parts.append(ref.get("resource", ""))
    if ref.get("name"):
        parts.append(ref["name"])
    if ref.get("subresource"):
        parts.append(ref["subresource"])
    method = f"io.k8s.{group}.{version}.{ref.get('resource', '')}" + (f".{ref['subresource']}" if ref.get("subresource") else "") + f".{e['verb']}"
    code = e.get("responseStatus", {}).get("code", 200)
    out.append(json.dumps({
        "protoPayload": {"@type": "type.googleapis.com/google.cloud.audit.AuditLog",
                         "authenticationInfo": {"principalEmail": e.get("user", {}).get("username", "")},
                         "methodName": method, "resourceName": "/".join(parts), "serviceName": "k8s.io",
                         "requestMetadata": {"callerIp": e["sourceIPs"][-1], "callerSuppliedUserAgent": e.get("userAgent", "")},
                         "status": {"code": 0 if code < 400 else 7}},
        "insertId": e["auditID"], "resource": {"type": "k8s_cluster", "labels": {"cluster_name": "shop"}},
        "timestamp": e["requestReceivedTimestamp"], "labels": e.get("annotations", {}),
        "logName": "projects/shop/logs/cloudaudit.googleapis.com%2Fdata_access",
        "operation": {"id": e["auditID"], "producer": "k8s.io", "first": True, "last": True}}))
(d / "gke-audit.jsonl").write_text("\n".join(out) + "\n")
copy_inventory(d, "nodes.json", "pods.json")


def gcloud_yaml(value):
    """One document the way `gcloud logging read` and `kubectl get -o yaml` print it: keys
    sorted, block style, long plain scalars folded at 80 columns, ambiguous strings quoted."""
    return "---\n" + yaml.safe_dump(value, sort_keys=True, default_flow_style=False, allow_unicode=True)


# GKE as `gcloud logging read` prints it by default: YAML, `---` before each LogEntry (the same
# entries as gke-no-pod-binding, with the fields Cloud Logging adds); the inventory as
# `kubectl get -o yaml`. Must give exactly what the JSON does.
d = fresh("gke-yaml")
docs = []
for line in out:
    entry = json.loads(line)
    entry["receiveTimestamp"] = entry["timestamp"]
    entry["severity"] = "INFO"
    docs.append(gcloud_yaml(entry))
(d / "gcloud-logging-read.yaml").write_text("".join(docs))
for n in ("nodes", "pods"):
    (d / f"{n}.yaml").write_text(gcloud_yaml(json.loads((INCIDENT / f"{n}.json").read_text()))[4:])

# Audit events kept as YAML: one audit.k8s.io Event per document for the first half, one
# document holding a list of events for the rest.
d = fresh("audit-yaml")
events = [json.loads(l) for l in LINES]
half = len(events) // 2
text = "".join(gcloud_yaml(e) for e in events[:half]) + gcloud_yaml(events[half:])
(d / "audit.yaml").write_text(text)
copy_inventory(d, "nodes.json", "pods.json", "sa_secrets.json", "serviceaccounts.json")
print("scenarios written under", HERE)
