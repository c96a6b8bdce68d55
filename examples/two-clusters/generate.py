#!/usr/bin/env python3
"""Generate the two-cluster sample incident in this directory, deterministically.

Two clusters of one company, 14 April 2026, 09:00-11:00 UTC, as a responder collected them:

  * `eks-prod/`: an Amazon EKS cluster. Its kube-apiserver audit log as `aws logs
    filter-log-events --log-group-name /aws/eks/eks-prod/cluster --log-stream-name-prefix
    kube-apiserver-audit` prints it (each CloudWatch event's `message` is one audit.k8s.io/v1
    event), and the `kubectl get -o json` dumps of nodes, pods, service accounts and token Secrets.
  * `gke-prod/`: a Google GKE cluster. Its audit log as `gcloud logging read
    'resource.type="k8s_cluster"' --format=json` prints it (Cloud Audit Log `LogEntry`s, Admin
    Activity and Data Access), and the same dumps.

README.md tells the story and quotes the report; this script is the single source of its facts
and checks the story's invariants (`check_story`) before writing anything.

It reuses the audit-event builder and the dump writers of ../incident/generate.py (the
single-cluster sample): the field order and content of an upstream event are the same; only the
clusters, their inhabitants and the providers' envelopes differ. Run it with no arguments (Python
3.9+, standard library only); running it twice gives byte-identical files.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("shop_incident", HERE.parent / "incident" / "generate.py")
shop = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = shop  # dataclasses look their module up there
_spec.loader.exec_module(shop)

Node, Pod, ServiceAccount, Token = shop.Node, shop.Pod, shop.ServiceAccount, shop.Token
micro, hexid, rbac_reason, CORE = shop.micro, shop.hexid, shop.rbac_reason, shop.CORE

# The shared jitter generator of ../incident, reseeded: this sample's draws are its own.
shop.RNG.seed(20260414)
uniform = shop.uniform

DAY = datetime(2026, 4, 14, tzinfo=timezone.utc)
LOG_START = DAY + timedelta(hours=9)
LOG_END = DAY + timedelta(hours=11)
COLLECTED = DAY + timedelta(hours=11, minutes=5)


def at(hh: int, mm: int, ss: float = 0.0) -> datetime:
    """A time on the incident day, in UTC."""
    return DAY + timedelta(hours=hh, minutes=mm, seconds=ss)


def uid(label: str) -> str:
    """A stable UUIDv4 for a label, distinct from ../incident's."""
    return shop.uid("two-clusters/" + label)


ATTACKER_IP = "203.0.113.77"  # the attacker's VPS: used in both clusters
UNRELATED_IP = "198.51.100.61"  # a forgotten Grafana agent at a hosting provider: GKE only
CURL = "curl/8.5.0"
KUBECTL_ATTACKER = "kubectl/v1.30.2 (linux/amd64) kubernetes/3968350"
ATTACK: dict = {}  # facts README.md and check_story refer to


class ClusterLog(shop.AuditLog):
    """../incident's audit-event builder, with auditIDs of this cluster's own."""

    def __init__(self, cluster: str) -> None:
        super().__init__()
        self.cluster = cluster

    def _audit_id(self) -> str:
        self.count += 1
        return uid(f"{self.cluster}/audit/{self.count}")

    def ordered(self) -> list:
        """The events written before LOG_END, ordered by stageTimestamp."""
        return [ev for t, _, ev in sorted(self.events, key=lambda e: (e[0], e[1])) if t <= LOG_END]



@contextmanager
def as_shop(**globals_):
    """Run one of ../incident's dump writers over this sample's objects: they read the
    module's globals (NODES, PODS, SERVICE_ACCOUNTS, COLLECTED, K8S_VERSION)."""
    saved = {k: getattr(shop, k) for k in globals_}
    for k, v in globals_.items():
        setattr(shop, k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(shop, k, v)


def _sa(ns: str, name: str, created: str) -> ServiceAccount:
    return ServiceAccount(ns, name, datetime.fromisoformat(created).replace(tzinfo=timezone.utc))


def _pod(ns, name, node, ip, sa, app, image, created, **kw) -> Pod:
    owner = ("DaemonSet", name.rsplit("-", 1)[0]) if kw.pop("daemon", False) else (
        "ReplicaSet", name.rsplit("-", 1)[0])
    labels = ({"controller-revision-hash": hexid("hash/" + owner[1], 10)} if owner[0] == "DaemonSet"
              else {"pod-template-hash": owner[1].rsplit("-", 1)[1]})
    return Pod(ns, name, "1", node, ip, sa, owner, app, image,
               datetime.fromisoformat(created).replace(tzinfo=timezone.utc), labels=labels, **kw)


def client_ip(pod: Pod, nodes: dict) -> str:
    """The TCP peer the apiserver sees for a pod's requests: its node's for hostNetwork."""
    return nodes[pod.node].ip if pod.host_network else pod.ip


def sa_user(sa: ServiceAccount, extra: dict | None = None) -> dict:
    user = {"username": sa.username, "uid": sa.uid, "groups": sa.groups}
    if extra:
        user["extra"] = extra
    return user


def sa_secrets_dump(cluster: str, secrets: list, accounts: dict) -> dict:
    """`kubectl get secrets -A --field-selector type=kubernetes.io/service-account-token -o json`:
    manually created token Secrets (fake, JWT-shaped tokens; nothing may print them)."""
    def b64(s: str) -> str:
        return shop.base64.b64encode(s.encode()).decode()

    items = []
    for ns, name, sa_name, created, last_used in secrets:
        sa = accounts[f"{ns}/{sa_name}"]
        items.append({
            "apiVersion": "v1", "kind": "Secret",
            "data": {"ca.crt": b64(shop.FAKE_CA), "namespace": b64(ns),
                     "token": b64(shop.fake_legacy_jwt(ns, name, sa))},
            "metadata": {
                "annotations": {"kubernetes.io/service-account.name": sa_name,
                                "kubernetes.io/service-account.uid": sa.uid},
                "creationTimestamp": created,
                "labels": {"kubernetes.io/legacy-token-last-used": last_used},
                "name": name, "namespace": ns,
                "resourceVersion": shop.resource_version(f"{cluster}/secret/{ns}/{name}"),
                "uid": uid(f"{cluster}/secret/{ns}/{name}")},
            "type": "kubernetes.io/service-account-token"})
    return shop.kubectl_list(items)


# ============================================================================================
# eks-prod: Amazon EKS 1.31, eu-west-1, VPC CNI (pods take addresses of their node's subnet)
# ============================================================================================

EKS_VERSION = "v1.31.4-eks-2d5f260"
AWS_ACCOUNT = "111122223333"
EKS_NODES = {n.name: n for n in [
    Node("ip-10-20-11-45.eu-west-1.compute.internal", "10.20.11.45", ""),
    Node("ip-10-20-12-203.eu-west-1.compute.internal", "10.20.12.203", ""),
]}
N1, N2 = EKS_NODES
EKS_ACCOUNTS = {f"{sa.namespace}/{sa.name}": sa for sa in [
    _sa("kube-system", "aws-node", "2025-06-02T08:11:40"),
    _sa("kube-system", "default", "2025-06-02T08:11:38"),
    _sa("platform", "default", "2025-06-03T10:20:01"),
    _sa("platform", "release-bot", "2025-06-03T10:20:04"),
    _sa("shop", "default", "2025-06-03T10:21:12"),
    _sa("shop", "storefront", "2025-06-03T10:21:15"),
]}
EKS_PODS = {p.key: p for p in [
    # The victim: deploys releases to both clusters; holds gke-prod's deployer kubeconfig in a
    # Secret of its namespace.
    _pod("platform", "release-bot-7b9f6c5d4-qw8zn", N1, "10.20.11.87", "release-bot",
         "release-bot", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/platform/release-bot:4.2.0",
         "2026-04-09T14:02:51"),
    _pod("shop", "storefront-5d8c7b9f6-h2k4m", N1, "10.20.11.132", "storefront", "storefront",
         "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/storefront:8.1.3", "2026-04-11T07:45:10"),
    _pod("shop", "storefront-5d8c7b9f6-p7x9t", N2, "10.20.12.61", "storefront", "storefront",
         "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/storefront:8.1.3", "2026-04-11T07:45:10"),
    # aws-node (the VPC CNI) is hostNetwork: it calls from its node's address.
    *[_pod("kube-system", f"aws-node-{sfx}", node, EKS_NODES[node].ip, "aws-node", "aws-node",
           "602401143452.dkr.ecr.eu-west-1.amazonaws.com/amazon-k8s-cni:v1.19.2-eksbuild.1",
           "2026-03-30T06:12:44", daemon=True, host_network=True)
      for sfx, node in [("8kx2p", N1), ("t4w7r", N2)]],
]}
EKS_VICTIM = EKS_PODS["platform/release-bot-7b9f6c5d4-qw8zn#1"]
EKS_UA = {"storefront": "storefront/8.1.3 (linux/amd64) kubernetes/$Format",
          "release-bot": "release-bot/4.2.0 (linux/amd64) kubernetes/$Format",
          "aws-node": "aws-node/v1.19.2 (linux/amd64) kubernetes/$Format"}
EKS_KUBELET_UA = f"kubelet/{EKS_VERSION} (linux/amd64) kubernetes/2d5f260"
EKS_TTL = 3607


def iam_user(role: str, session: str, node: bool = False) -> dict:
    """A caller authenticated by aws-iam-authenticator (an EKS access entry or aws-auth)."""
    principal = "AROA" + hexid("role/" + role, 17).upper()
    arn = f"arn:aws:sts::{AWS_ACCOUNT}:assumed-role/{role}/{session}"
    return {
        "username": f"system:node:{session}" if node else arn,
        "uid": f"aws-iam-authenticator:{AWS_ACCOUNT}:{principal}",
        "groups": ["system:bootstrappers", "system:nodes", "system:authenticated"] if node else
        ["system:authenticated"],
        "extra": {"accessKeyId": ["ASIA" + hexid("key/" + session, 16).upper()],
                  "arn": [arn], "canonicalArn": [f"arn:aws:iam::{AWS_ACCOUNT}:role/{role}"],
                  "principalId": [principal], "sessionName": [session]}}


def eks_kubelet(node: Node) -> dict:
    # An EC2 node's kubelet assumes the node role; its session name is the instance id, but
    # aws-auth maps its username to the node name.
    return iam_user("eks-prod-node-role", node.name, node=True)


EKS_ADMIN = iam_user("eks-platform-admins", "j.lindqvist")
EKS_ONCALL_STOLEN = iam_user("eks-oncall", "d.okafor")  # keys from a leaked ~/.aws/credentials
OFFICE_IP = "192.0.2.80"
KUBECTL_MAC = "kubectl/v1.31.3 (darwin/arm64) kubernetes/c83cbee"


class EksCluster:
    """The JTI chains of eks-prod's pods (kubelet rotation) and their requests."""

    def __init__(self) -> None:
        self.log = ClusterLog("eks-prod")
        self.tokens: dict = {}  # pod key -> [Token]

    def plan_tokens(self) -> None:
        for i, pod in enumerate(EKS_PODS.values()):
            # The first token was minted before the log begins; then every ~48 minutes.
            t = LOG_START - timedelta(minutes=5 + 9 * i, seconds=uniform(0, 50))
            if pod is EKS_VICTIM:
                # Pinned so that the exec and every replay fall between two rotations.
                t = at(8, 21, 10.412)
            chain = [Token(uid(f"eks/jti/{pod.key}/0"), t, t + timedelta(seconds=uniform(12, 58)))]
            n = 1
            while True:
                t = t + timedelta(seconds=0.8 * EKS_TTL + uniform(15, 95))
                if t >= LOG_END:
                    break
                chain.append(self.mint(pod, t, n))
                n += 1
            self.tokens[pod.key] = chain

    def mint(self, pod: Pod, t: datetime, n: int) -> Token:
        """The kubelet's TokenRequest (at Metadata level under the EKS audit policy)."""
        node = EKS_NODES[pod.node]
        jti = uid(f"eks/jti/{pod.key}/{n}")
        sa = EKS_ACCOUNTS[f"{pod.namespace}/{pod.sa}"]
        audit_id = self.log.request(
            t, user=eks_kubelet(node), source_ips=[node.ip], user_agent=EKS_KUBELET_UA,
            verb="create", resource="serviceaccounts", namespace=pod.namespace, name=sa.name,
            subresource="token", code=201,
            annotations={"authentication.kubernetes.io/issued-credential-id": "JTI=" + jti},
            authz_reason="")
        return Token(jti, t, t + timedelta(seconds=uniform(12, 58)), audit_id)

    def current(self, pod: Pod, t: datetime) -> Token:
        return [tok for tok in self.tokens[pod.key] if tok.in_use_from <= t][-1]

    def pod_user(self, pod: Pod, tok: Token) -> dict:
        node = EKS_NODES[pod.node]
        return sa_user(EKS_ACCOUNTS[f"{pod.namespace}/{pod.sa}"], {
            "authentication.kubernetes.io/credential-id": ["JTI=" + tok.jti],
            "authentication.kubernetes.io/node-name": [node.name],
            "authentication.kubernetes.io/node-uid": [node.uid],
            "authentication.kubernetes.io/pod-name": [pod.name],
            "authentication.kubernetes.io/pod-uid": [pod.uid]})

    def workload(self) -> None:
        calls = {  # app -> (every, verb, resource, group, namespace)
            "storefront": (timedelta(minutes=12), "get", "configmaps", CORE, "shop", "storefront-flags"),
            "release-bot": (timedelta(minutes=15), "list", "deployments", "apps", None, None),
            "aws-node": (timedelta(minutes=20), "get", "nodes", CORE, None, None),
        }
        for pod in EKS_PODS.values():
            every, verb, res, group, ns, name = calls[pod.app]
            name = pod.node if pod.app == "aws-node" else name
            t = LOG_START + timedelta(seconds=uniform(20, every.total_seconds()))
            sa = EKS_ACCOUNTS[f"{pod.namespace}/{pod.sa}"]
            while t < LOG_END - timedelta(minutes=2):
                self.log.request(
                    t, user=self.pod_user(pod, self.current(pod, t)), source_ips=[client_ip(pod, EKS_NODES)],
                    user_agent=EKS_UA[pod.app], verb=verb, resource=res, namespace=ns, name=name,
                    group=group, query="limit=500" if verb == "list" else "",
                    authz_reason=rbac_reason("ClusterRoleBinding", sa.name, "ClusterRole", sa.name,
                                             f'ServiceAccount "{sa.name}/{sa.namespace}"'))
                t += every + timedelta(seconds=uniform(-40, 40))

    def people(self) -> None:
        reason = rbac_reason("ClusterRoleBinding", "eks-platform-admins", "ClusterRole",
                             "cluster-admin", 'Group "eks-platform-admins"')
        for t, verb, res, ns, name in [(at(9, 12, 3.4), "list", "pods", "shop", None),
                                       (at(9, 12, 41.9), "get", "deployments", "shop", "storefront"),
                                       (at(10, 37, 15.2), "list", "events", "shop", None)]:
            self.log.request(t, user=EKS_ADMIN, source_ips=[OFFICE_IP], user_agent=KUBECTL_MAC,
                             verb=verb, resource=res, namespace=ns, name=name,
                             group="apps" if res == "deployments" else CORE,
                             query="limit=500" if verb == "list" else "", authz_reason=reason)

    def attack(self) -> None:
        """09:40 the stolen on-call session lists platform's pods and execs into release-bot;
        09:46-09:49 the pod's token is replayed from the same address with curl."""
        reason = rbac_reason("ClusterRoleBinding", "eks-oncall", "ClusterRole", "oncall-operator",
                             'Group "eks-oncall"')
        self.log.request(at(9, 40, 31.6), user=EKS_ONCALL_STOLEN, source_ips=[ATTACKER_IP],
                         user_agent=KUBECTL_ATTACKER, verb="list", resource="pods",
                         namespace="platform", query="limit=500", authz_reason=reason)
        exec_t = at(9, 41, 12.408)
        ATTACK["eks_exec"] = self.log.request(
            exec_t, user=EKS_ONCALL_STOLEN, source_ips=[ATTACKER_IP], user_agent=KUBECTL_ATTACKER,
            verb="create", resource="pods", namespace="platform", name=EKS_VICTIM.name,
            subresource="exec", query=shop.EXEC_QUERY.format(c="release-bot"), code=101,
            duration=187.3, long_running=True, authz_reason=reason)
        ATTACK["eks_exec_time"] = exec_t
        stolen = self.current(EKS_VICTIM, exec_t)
        ATTACK["eks_stolen"] = stolen
        sa = EKS_ACCOUNTS["platform/release-bot"]
        reason = rbac_reason("RoleBinding", "release-bot/platform", "Role", "release-bot",
                             'ServiceAccount "release-bot/platform"')
        ATTACK["eks_replays"] = []
        for t, verb, res, group, ns, name, code in [
                (at(9, 46, 5.331), "create", "selfsubjectrulesreviews", "authorization.k8s.io", None, None, 201),
                (at(9, 46, 48.027), "list", "secrets", CORE, "platform", None, 200),
                (at(9, 47, 19.664), "get", "secrets", CORE, "platform", "gke-prod-deployer-kubeconfig", 200),
                (at(9, 49, 30.912), "list", "pods", CORE, None, None, 403)]:
            audit_id = self.log.request(
                t, user=self.pod_user(EKS_VICTIM, stolen), source_ips=[ATTACKER_IP], user_agent=CURL,
                verb=verb, resource=res, namespace=ns, name=name, group=group,
                query="limit=500" if verb == "list" else "", code=code,
                status=shop.forbidden(verb, res, group, ns, sa.username) if code == 403 else None,
                authz_reason=reason)
            ATTACK["eks_replays"].append((t, verb, res, ns, name, code, audit_id))

    def write(self, out: Path) -> int:
        """`aws logs filter-log-events` output: {"events": [...]}, oldest first. AWS's audit
        policy omits RequestReceived and logs TokenRequests at Metadata."""
        events = []
        for ev in self.log.ordered():
            if ev["stage"] == "RequestReceived":
                continue
            ev = dict(ev)
            ev.pop("requestObject", None)
            ev["level"] = "Metadata"
            stage_ms = int(datetime.fromisoformat(ev["stageTimestamp"][:-1] + "+00:00").timestamp() * 1000)
            # Two apiserver instances, one log stream each.
            server = int(hexid("server/" + ev["auditID"], 2), 16) % 2
            stream = "kube-apiserver-audit-" + hexid(f"eks-prod/stream/{server}", 32)
            events.append({
                "logStreamName": stream, "timestamp": stage_ms,
                "message": json.dumps(ev, separators=(",", ":"), ensure_ascii=False),
                "ingestionTime": stage_ms + int(uniform(900, 2600)),
                "eventId": str(int(hexid("event/" + ev["auditID"] + ev["stage"], 48), 16))[:56].zfill(56)})
        shop.write_json(out / "cloudwatch-audit.json", {"events": events, "searchedLogStreams": []})
        return len(events)

    def dumps(self, out: Path) -> None:
        with as_shop(NODES=EKS_NODES, PODS=EKS_PODS, SERVICE_ACCOUNTS=EKS_ACCOUNTS,
                     COLLECTED=COLLECTED, K8S_VERSION=EKS_VERSION):
            nodes = shop.nodes_dump()
            pods = shop.pods_dump()
            accounts = shop.serviceaccounts_dump()
        for item in nodes["items"]:
            # VPC CNI: no podCIDR; EKS's own labels, provider id and OS image.
            item["spec"] = {"providerID": "aws:///eu-west-1a/i-0" + hexid("ec2/" + item["metadata"]["name"], 16)}
            item["metadata"]["labels"].update({"eks.amazonaws.com/nodegroup": "general",
                                               "topology.kubernetes.io/region": "eu-west-1"})
            item["metadata"]["labels"].pop("node.kubernetes.io/pool")
            item["status"]["nodeInfo"].update({"kernelVersion": "6.1.119-129.201.amzn2023.x86_64",
                                               "osImage": "Amazon Linux 2023.6.20250107"})
            item["status"]["addresses"].insert(1, {"address": item["metadata"]["name"],
                                                   "type": "InternalDNS"})
        shop.write_json(out / "nodes.json", nodes)
        shop.write_json(out / "pods.json", pods)
        shop.write_json(out / "serviceaccounts.json", accounts)
        # No token Secret in eks-prod: the list is empty, as kubectl prints it.
        shop.write_json(out / "sa_secrets.json", shop.kubectl_list([]))


# ============================================================================================
# gke-prod: Google GKE 1.31, europe-west1, VPC-native (each node has a pod range)
# ============================================================================================

GKE_VERSION = "v1.31.5-gke.1023000"
GCP_PROJECT = "acme-prod-3f1c"
GKE_NODES = {n.name: n for n in [
    Node("gke-gke-prod-default-pool-4f1d2c3b-x7k2", "10.132.0.12", "10.40.0.0/24"),
    Node("gke-gke-prod-default-pool-4f1d2c3b-m9p4", "10.132.0.13", "10.40.1.0/24"),
]}
G1, G2 = GKE_NODES
GKE_ACCOUNTS = {f"{sa.namespace}/{sa.name}": sa for sa in [
    _sa("ci", "default", "2023-02-14T09:30:12"),
    _sa("ci", "deployer", "2023-02-14T09:30:15"),
    _sa("kube-system", "default", "2023-02-14T09:02:41"),
    _sa("monitoring", "default", "2023-02-14T09:41:03"),
    _sa("monitoring", "legacy-exporter", "2023-02-14T09:41:06"),
    _sa("web", "default", "2023-02-14T09:44:20"),
    _sa("web", "checkout", "2023-02-14T09:44:22"),
]}
GKE_PODS = {p.key: p for p in [
    _pod("web", "checkout-6c4b8d9f7-r2v8k", G1, "10.40.0.18", "checkout", "checkout",
         "europe-west1-docker.pkg.dev/acme-prod-3f1c/web/checkout:3.9.0", "2026-04-12T16:20:33"),
    _pod("web", "checkout-6c4b8d9f7-z5n3w", G2, "10.40.1.24", "checkout", "checkout",
         "europe-west1-docker.pkg.dev/acme-prod-3f1c/web/checkout:3.9.0", "2026-04-12T16:20:33"),
    _pod("monitoring", "legacy-exporter-58d7c6b9f-j4t6q", G2, "10.40.1.9", "legacy-exporter",
         "legacy-exporter", "europe-west1-docker.pkg.dev/acme-prod-3f1c/monitoring/legacy-exporter:0.7.1",
         "2026-03-02T11:15:47", legacy_secret="legacy-exporter-token"),
]}
# (namespace, Secret, ServiceAccount, created, legacy-token-last-used label)
GKE_SECRETS = [("ci", "deployer-token", "deployer", "2023-02-14T09:30:16Z", "2026-04-07"),
               ("monitoring", "legacy-exporter-token", "legacy-exporter", "2023-02-14T09:41:07Z", "2026-04-14")]
GKE_UA = {"checkout": "checkout/3.9.0 (linux/amd64) kubernetes/$Format",
          "legacy-exporter": "legacy-exporter/0.7.1 (linux/amd64) kubernetes/$Format"}
GKE_HUMAN = {"username": "k.brandt@acme.example", "groups": ["system:authenticated"]}
GRAFANA_AGENT_UA = "grafana-agent/v0.43.4 (linux/amd64) kubernetes/$Format"


def legacy_annotations(ns: str, sa: str, secret: str) -> dict:
    return {"authentication.k8s.io/legacy-token": f"system:serviceaccount:{ns}:{sa}",
            "authentication.k8s.io/legacy-token-manual-secret": secret}


class GkeCluster:
    """gke-prod's requests, built as upstream events and written as Cloud Audit Log entries."""

    def __init__(self) -> None:
        self.log = ClusterLog("gke-prod")

    def workload(self) -> None:
        calls = {"checkout": (timedelta(minutes=10), "get", "configmaps", "web", "checkout-config"),
                 "legacy-exporter": (timedelta(minutes=10), "list", "pods", None, None)}
        for pod in GKE_PODS.values():
            every, verb, res, ns, name = calls[pod.app]
            sa = GKE_ACCOUNTS[f"{pod.namespace}/{pod.sa}"]
            ann = legacy_annotations(pod.namespace, pod.sa, pod.legacy_secret) if pod.legacy_secret else {}
            t = LOG_START + timedelta(seconds=uniform(20, every.total_seconds()))
            while t < LOG_END - timedelta(minutes=2):
                self.log.request(t, user=sa_user(sa), source_ips=[pod.ip], user_agent=GKE_UA[pod.app],
                                 verb=verb, resource=res, namespace=ns, name=name, annotations=ann,
                                 query="limit=500" if verb == "list" else "",
                                 authz_reason=rbac_reason("ClusterRoleBinding", sa.name, "ClusterRole",
                                                          sa.name, f'ServiceAccount "{sa.name}/{sa.namespace}"'))
                t += every + timedelta(seconds=uniform(-40, 40))

    def people(self) -> None:
        reason = rbac_reason("RoleBinding", "web-developers/web", "ClusterRole", "edit",
                             'User "k.brandt@acme.example"')
        for t, verb, res, name in [(at(9, 25, 10.7), "list", "pods", None),
                                   (at(9, 25, 52.3), "get", "deployments", "checkout")]:
            self.log.request(t, user=GKE_HUMAN, source_ips=[OFFICE_IP], user_agent=KUBECTL_MAC,
                             verb=verb, resource=res, namespace="web", name=name,
                             group="apps" if res == "deployments" else CORE,
                             query="limit=500" if verb == "list" else "", authz_reason=reason)

    def attack(self) -> None:
        """10:02-10:05 gke-prod's ci/deployer token, read at 09:47 from eks-prod's Secret
        platform/gke-prod-deployer-kubeconfig, is used from the attacker's address."""
        sa = GKE_ACCOUNTS["ci/deployer"]
        ann = legacy_annotations("ci", "deployer", "deployer-token")
        reason = rbac_reason("ClusterRoleBinding", "ci-deployer", "ClusterRole", "ci-deployer",
                             'ServiceAccount "deployer/ci"')
        ATTACK["gke_replays"] = []
        for t, verb, res, group, ns, name, code in [
                (at(10, 2, 14.517), "list", "namespaces", CORE, None, None, 200),
                (at(10, 2, 40.093), "list", "deployments", "apps", "web", None, 200),
                (at(10, 3, 22.761), "list", "secrets", CORE, "kube-system", None, 403),
                (at(10, 5, 40.228), "create", "clusterrolebindings", "rbac.authorization.k8s.io", None, None, 403)]:
            audit_id = self.log.request(
                t, user=sa_user(sa), source_ips=[ATTACKER_IP], user_agent=KUBECTL_ATTACKER, verb=verb,
                resource=res, namespace=ns, name=name, group=group, annotations=ann,
                query="limit=500" if verb == "list" else "", code=code,
                status=shop.forbidden(verb, res, group, ns, sa.username) if code == 403 else None,
                authz_reason=reason)
            ATTACK["gke_replays"].append((t, verb, res, ns, name, code, audit_id))

    def unrelated(self) -> None:
        """10:31 the monitoring exporter's token, copied into a Grafana agent at a hosting
        provider months ago, is used from there: a leak of its own, not this attacker."""
        sa = GKE_ACCOUNTS["monitoring/legacy-exporter"]
        ann = legacy_annotations("monitoring", "legacy-exporter", "legacy-exporter-token")
        reason = rbac_reason("ClusterRoleBinding", sa.name, "ClusterRole", sa.name,
                             f'ServiceAccount "{sa.name}/{sa.namespace}"')
        ATTACK["unrelated"] = []
        for t, res in [(at(10, 31, 20.145), "nodes"), (at(10, 31, 20.902), "pods")]:
            ATTACK["unrelated"].append(self.log.request(
                t, user=sa_user(sa), source_ips=[UNRELATED_IP], user_agent=GRAFANA_AGENT_UA,
                verb="list", resource=res, query="limit=500", annotations=ann, authz_reason=reason))
            ATTACK["unrelated_time"] = t

    @staticmethod
    def entry(ev: dict) -> dict:
        """One upstream audit event as GKE writes it to Cloud Logging (docs/kubernetes.md §7.2):
        no `user.extra`, one caller address, annotations as labels."""
        ref = ev["objectRef"]
        group = (ref.get("apiGroup") or "core").removesuffix(".k8s.io")
        path_group = ref.get("apiGroup") or "core"
        resource, sub = ref["resource"], ref.get("subresource")
        method = ".".join(["io.k8s", group, "v1", resource, *([sub] if sub else []), ev["verb"]])
        name = "/".join([path_group, "v1", *(["namespaces", ref["namespace"]] if ref.get("namespace") else []),
                         resource, *([ref["name"]] if ref.get("name") else []), *([sub] if sub else [])])
        code = ev["responseStatus"]["code"]
        granted = code < 400
        payload = {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "authenticationInfo": {"principalEmail": ev["user"]["username"]},
            "authorizationInfo": [{"granted": granted, "permission": method, "resource": name}],
            "methodName": method,
            "requestMetadata": {"callerIp": ev["sourceIPs"][-1],
                                "callerSuppliedUserAgent": ev["userAgent"]},
            "resourceName": name,
            "serviceName": "k8s.io",
            # google.rpc.Status: OK is the empty message; a refusal is PERMISSION_DENIED.
            "status": {} if granted else {"code": 7, "message": "PERMISSION_DENIED"},
        }
        if not granted:
            payload["response"] = {"@type": "core.k8s.io/v1.Status", **ev["responseStatus"]}
        write = ev["verb"] not in ("get", "list", "watch")
        return {
            "insertId": ev["auditID"],
            "labels": ev.get("annotations", {}),
            "logName": f"projects/{GCP_PROJECT}/logs/cloudaudit.googleapis.com%2F"
                       + ("activity" if write else "data_access"),
            "operation": {"first": True, "id": ev["auditID"], "last": True, "producer": "k8s.io"},
            "protoPayload": payload,
            "receiveTimestamp": micro(datetime.fromisoformat(ev["stageTimestamp"][:-1] + "+00:00")
                                      + timedelta(seconds=uniform(0.4, 1.8))) [:-4] + "Z",
            "resource": {"labels": {"cluster_name": "gke-prod", "location": "europe-west1",
                                    "project_id": GCP_PROJECT}, "type": "k8s_cluster"},
            "severity": "NOTICE" if write else "INFO",
            "timestamp": ev["requestReceivedTimestamp"],
        }

    def write(self, out: Path) -> int:
        """`gcloud logging read ... --format=json`: a JSON array, newest first. GKE writes one
        entry per request (its last stage)."""
        last = {}
        for ev in self.log.ordered():
            last[ev["auditID"]] = ev
        entries = [self.entry(ev) for ev in reversed(list(last.values()))]
        (out / "cloud-audit-logs.json").write_text(json.dumps(entries, indent=4, ensure_ascii=False) + "\n")
        return len(entries)

    def dumps(self, out: Path) -> None:
        with as_shop(NODES=GKE_NODES, PODS=GKE_PODS, SERVICE_ACCOUNTS=GKE_ACCOUNTS,
                     COLLECTED=COLLECTED, K8S_VERSION=GKE_VERSION):
            nodes = shop.nodes_dump()
            pods = shop.pods_dump()
            accounts = shop.serviceaccounts_dump()
        for item in nodes["items"]:
            item["spec"]["providerID"] = (f"gce://{GCP_PROJECT}/europe-west1-b/"
                                          + item["metadata"]["name"])
            item["metadata"]["labels"].update({"cloud.google.com/gke-nodepool": "default-pool",
                                               "topology.kubernetes.io/region": "europe-west1"})
            item["metadata"]["labels"].pop("node.kubernetes.io/pool")
            item["status"]["nodeInfo"].update({"kernelVersion": "6.6.56+",
                                               "osImage": "Container-Optimized OS from Google"})
        shop.write_json(out / "nodes.json", nodes)
        shop.write_json(out / "pods.json", pods)
        shop.write_json(out / "serviceaccounts.json", accounts)
        shop.write_json(out / "sa_secrets.json", sa_secrets_dump("gke-prod", GKE_SECRETS, GKE_ACCOUNTS))


# ============================================================================================


def check_story(eks: EksCluster, gke: GkeCluster) -> None:
    stolen = ATTACK["eks_stolen"]
    chain = eks.tokens[EKS_VICTIM.key]
    successor = chain[chain.index(stolen) + 1] if stolen is not chain[-1] else None
    assert stolen.in_use_from < ATTACK["eks_exec_time"], "the exec reads the pod's current JTI"
    assert successor is None or ATTACK["eks_replays"][-1][0] < successor.in_use_from, \
        "every replay uses the current token (this sample is not about superseded tokens)"
    first_gke, last_eks = ATTACK["gke_replays"][0][0], ATTACK["eks_replays"][-1][0]
    assert timedelta(0) < first_gke - last_eks < timedelta(hours=1), "gke-prod within the hour"
    assert UNRELATED_IP != ATTACKER_IP
    for key, toks in eks.tokens.items():
        for tok in toks[1:]:
            assert tok.in_use_from - tok.iat < timedelta(minutes=1), key
    for log in (eks.log, gke.log):
        assert all(LOG_START <= datetime.fromisoformat(ev["requestReceivedTimestamp"][:-1] + "+00:00")
                   < LOG_END for _, _, ev in log.events)


def main() -> None:
    eks, gke = EksCluster(), GkeCluster()
    eks.plan_tokens()
    eks.workload()
    eks.people()
    eks.attack()
    gke.workload()
    gke.people()
    gke.attack()
    gke.unrelated()
    check_story(eks, gke)

    for name, cluster in [("eks-prod", eks), ("gke-prod", gke)]:
        out = HERE / name
        out.mkdir(exist_ok=True)
        n = cluster.write(out)
        cluster.dumps(out)
        print(f"{name}: {n} audit records, {cluster.log.count} requests")
    stolen = ATTACK["eks_stolen"]
    print(f"eks-prod victim {EKS_VICTIM.namespace}/{EKS_VICTIM.name} uid={EKS_VICTIM.uid} ip={EKS_VICTIM.ip}")
    print(f"stolen JTI {stolen.jti} (minted {micro(stolen.iat)}, mint auditID {stolen.mint_audit_id})")
    print(f"exec auditID {ATTACK['eks_exec']} at {micro(ATTACK['eks_exec_time'])}")
    for r in ATTACK["eks_replays"]:
        print("eks-prod replay", micro(r[0]), *r[1:])
    for r in ATTACK["gke_replays"]:
        print("gke-prod replay", micro(r[0]), *r[1:])
    print("gke-prod unrelated", ATTACK["unrelated"])


if __name__ == "__main__":
    main()
