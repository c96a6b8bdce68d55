#!/usr/bin/env python3
"""Generate the `shop-prod` incident evidence in this directory, deterministically.

The output is what a responder would have collected from a small Kubernetes v1.32 cluster on
2026-03-10: the kube-apiserver audit log of 08:00-11:40 UTC (`audit.log`) and the dumps of
`kubectl get serviceaccounts -A -o json`, `kubectl get secrets -A --field-selector
type=kubernetes.io/service-account-token -o json`, `kubectl get pods -A -o json` and
`kubectl get nodes -o json` taken at 11:42 UTC. README.md tells the story and lists the exact
findings a correct tool must report; this script is the single source of those facts, and it
checks the story's invariants (see `check_story`) before writing anything.

Run it with no arguments (Python 3.9+, standard library only); it rewrites the five evidence
files and prints the identifiers README.md refers to. Every value is derived from fixed seeds,
so running it twice gives byte-identical files.

Layout of this file:
  * constants of the cluster and its inhabitants (nodes, service accounts, pods);
  * `AuditLog`: builds audit.k8s.io/v1 events with the field order and content a real
    kube-apiserver writes, under the audit policy shown in README.md;
  * `Credentials`: the JTI lineage of every pod-bound and controller token (kubelet rotation);
  * one function per part of the story (`benign_*`, `attack_*`), in the order things happen;
  * the inventory dumps, `check_story`, `main`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent

# --------------------------------------------------------------------------------------------
# Time, identifiers, formatting
# --------------------------------------------------------------------------------------------

LOG_START = datetime(2026, 3, 10, 8, 0, 0, tzinfo=timezone.utc)
LOG_END = datetime(2026, 3, 10, 11, 40, 0, tzinfo=timezone.utc)
COLLECTED = datetime(2026, 3, 10, 11, 42, 0, tzinfo=timezone.utc)

# One seeded generator for all jitter. Only `random()` is used (through `uniform`), whose output
# for a given seed is stable across Python versions, unlike `randrange`/`choice` helpers.
RNG = random.Random(20260310)


def uniform(lo: float, hi: float) -> float:
    return lo + (hi - lo) * RNG.random()


def at(hh: int, mm: int, ss: float = 0.0) -> datetime:
    """A time on the incident day, in UTC."""
    return datetime(2026, 3, 10, hh, mm, tzinfo=timezone.utc) + timedelta(seconds=ss)


def micro(t: datetime) -> str:
    """MicroTime, as audit events carry it: RFC 3339 with microseconds, UTC."""
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def seconds(t: datetime) -> str:
    """metav1.Time, as object metadata and status carry it: RFC 3339, whole seconds."""
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def uid(label: str) -> str:
    """A random-looking but stable UUIDv4 (Kubernetes UIDs and JTIs are v4) for a label."""
    digest = hashlib.sha256(("tokentrail-example/shop-prod/" + label).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def hexid(label: str, n: int) -> str:
    return hashlib.sha256(label.encode()).hexdigest()[:n]


# --------------------------------------------------------------------------------------------
# The cluster
# --------------------------------------------------------------------------------------------

CLUSTER = "shop-prod"
K8S_VERSION = "v1.32.3"
K8S_COMMIT = "32cc146"  # kubernetes v1.32.3
LOOPBACK = "127.0.0.1"  # control-plane components talk to the apiserver on their own host


@dataclass(frozen=True)
class Node:
    name: str
    ip: str
    pod_cidr: str

    @property
    def uid(self) -> str:
        return uid("node/" + self.name)

    @property
    def kubelet_user(self) -> dict:
        # Since v1.32 an x509 user carries a credential-id too, but with the X509SHA256= prefix:
        # a detector must not take it for a service-account JTI.
        return {
            "username": f"system:node:{self.name}",
            "groups": ["system:nodes", "system:authenticated"],
            "extra": {"authentication.kubernetes.io/credential-id": [
                "X509SHA256=" + hashlib.sha256(("kubelet-cert/" + self.name).encode()).hexdigest()]},
        }


NODES = {
    "worker-1": Node("worker-1", "10.0.1.11", "10.244.1.0/24"),
    "worker-2": Node("worker-2", "10.0.1.12", "10.244.2.0/24"),
    "worker-3": Node("worker-3", "10.0.1.13", "10.244.3.0/24"),
}

KUBELET_UA = f"kubelet/{K8S_VERSION} (linux/amd64) kubernetes/{K8S_COMMIT}"
KCM_UA = f"kube-controller-manager/{K8S_VERSION} (linux/amd64) kubernetes/{K8S_COMMIT}"
SCHEDULER_UA = f"kube-scheduler/{K8S_VERSION} (linux/amd64) kubernetes/{K8S_COMMIT}/scheduler"


def x509_user(name: str) -> dict:
    return {
        "username": name,
        "groups": ["system:authenticated"],
        "extra": {"authentication.kubernetes.io/credential-id": [
            "X509SHA256=" + hashlib.sha256(("cert/" + name).encode()).hexdigest()]},
    }


KCM_USER = x509_user("system:kube-controller-manager")
SCHEDULER_USER = x509_user("system:kube-scheduler")


@dataclass(frozen=True)
class ServiceAccount:
    namespace: str
    name: str
    created: datetime

    @property
    def uid(self) -> str:
        return uid(f"sa/{self.namespace}/{self.name}")

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"

    @property
    def groups(self) -> list:
        return ["system:serviceaccounts", f"system:serviceaccounts:{self.namespace}",
                "system:authenticated"]


def _sa(ns: str, name: str, created: str) -> ServiceAccount:
    return ServiceAccount(ns, name, datetime.fromisoformat(created).replace(tzinfo=timezone.utc))


# kube-controller-manager runs with --use-service-account-credentials: each controller has its own
# ServiceAccount and an unbound TokenRequest token (credential-id, no pod extras).
CONTROLLERS = ["deployment-controller", "endpointslice-controller", "horizontal-pod-autoscaler",
               "replicaset-controller", "statefulset-controller"]

SERVICE_ACCOUNTS = {f"{sa.namespace}/{sa.name}": sa for sa in [
    *[_sa("kube-system", c, "2024-11-04T09:12:40") for c in CONTROLLERS],
    _sa("kube-system", "coredns", "2024-11-04T09:12:52"),
    _sa("kube-system", "default", "2024-11-04T09:12:38"),
    _sa("monitoring", "default", "2024-11-04T10:02:11"),
    _sa("monitoring", "node-exporter", "2024-11-04T10:02:15"),
    _sa("monitoring", "legacy-exporter", "2022-05-17T14:31:09"),
    _sa("payments", "default", "2024-11-05T08:40:02"),
    _sa("payments", "api", "2024-11-05T08:40:05"),
    _sa("shop", "default", "2024-11-05T08:41:30"),
    _sa("shop", "web", "2024-11-05T08:41:33"),
    _sa("shop", "checkout", "2024-11-05T08:41:34"),
    _sa("shop", "db", "2026-03-10T08:14:29"),
    _sa("shop", "cart", "2026-03-10T10:01:59"),
    _sa("shop", "ci-deployer", "2021-09-02T16:20:44"),
]}
# The ServiceAccounts created during the incident window are created by `kubectl apply` in the log.
CREATED_IN_WINDOW = {"shop/db", "shop/cart"}


@dataclass
class Pod:
    """A pod, keyed by uid: two `shop/db-0` objects exist on this day."""

    namespace: str
    name: str
    incarnation: str  # distinguishes pods that share a name
    node: str
    ip: str  # status.podIP (the node's address for hostNetwork pods)
    sa: str  # ServiceAccount name
    owner: tuple  # (kind, name) of the controller owning the pod
    app: str
    image: str
    created: datetime
    deleted: datetime | None = None  # when the deletion was requested
    host_network: bool = False
    legacy_secret: str | None = None  # a Secret-based token mounted instead of a projected one
    snat: bool = False  # its requests to the apiserver leave with the node's address
    labels: dict = field(default_factory=dict)

    @property
    def uid(self) -> str:
        return uid(f"pod/{self.namespace}/{self.name}/{self.incarnation}")

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}#{self.incarnation}"

    @property
    def service_account(self) -> ServiceAccount:
        return SERVICE_ACCOUNTS[f"{self.namespace}/{self.sa}"]

    @property
    def client_ip(self) -> str:
        """The TCP peer the apiserver sees for this pod's requests (docs/kubernetes.md §8)."""
        return NODES[self.node].ip if (self.host_network or self.snat) else self.ip

    @property
    def volume(self) -> str:
        return "kube-api-access-" + hexid("vol/" + self.key, 5).translate(
            str.maketrans("0123456789", "bcdfghjklm"))


def _pre(ts: str) -> datetime:
    return datetime.fromisoformat(ts).replace(tzinfo=timezone.utc)


PODS = {p.key: p for p in [
    # payments/api: two replicas. k2x7p is the victim of the attack.
    Pod("payments", "api-6f9c7d8b5-k2x7p", "1", "worker-1", "10.244.1.12", "api",
        ("ReplicaSet", "api-6f9c7d8b5"), "api", "registry.shop.example/payments/api:2.14.1",
        _pre("2026-03-03T13:05:41"), labels={"pod-template-hash": "6f9c7d8b5"}),
    Pod("payments", "api-6f9c7d8b5-r8m4q", "1", "worker-2", "10.244.2.15", "api",
        ("ReplicaSet", "api-6f9c7d8b5"), "api", "registry.shop.example/payments/api:2.14.1",
        _pre("2026-03-03T13:05:41"), labels={"pod-template-hash": "6f9c7d8b5"}),
    # shop/web: one long-lived replica, and one the HPA adds at 08:04 and removes at 09:40.
    Pod("shop", "web-7c5d9b8f4-2jxqz", "1", "worker-1", "10.244.1.19", "web",
        ("ReplicaSet", "web-7c5d9b8f4"), "web", "registry.shop.example/shop/web:5.3.0",
        _pre("2026-03-06T10:22:17"), labels={"pod-template-hash": "7c5d9b8f4"}),
    Pod("shop", "web-7c5d9b8f4-tz4wn", "1", "worker-2", "10.244.2.21", "web",
        ("ReplicaSet", "web-7c5d9b8f4"), "web", "registry.shop.example/shop/web:5.3.0",
        at(8, 4, 12.48), deleted=at(9, 40, 5.113), labels={"pod-template-hash": "7c5d9b8f4"}),
    # shop/cart: deployed at 10:02; its pod gets the address web-...-tz4wn held until 09:40.
    Pod("shop", "cart-5c9d7f8b6-wq4zt", "1", "worker-2", "10.244.2.21", "cart",
        ("ReplicaSet", "cart-5c9d7f8b6"), "cart", "registry.shop.example/shop/cart:1.0.0",
        at(10, 2, 1.904), labels={"pod-template-hash": "5c9d7f8b6"}),
    # shop/checkout: its client uses the cluster's external API endpoint, so ip-masq-agent
    # masquerades its traffic to the node address 10.0.1.13.
    Pod("shop", "checkout-84f6d9c7b5-mz8vr", "1", "worker-3", "10.244.3.22", "checkout",
        ("ReplicaSet", "checkout-84f6d9c7b5"), "checkout",
        "registry.shop.example/shop/checkout:3.8.2", _pre("2026-03-04T09:47:03"), snat=True,
        labels={"pod-template-hash": "84f6d9c7b5"}),
    # shop/db: a StatefulSet (OnDelete updates) created at 08:14; db-0 is deleted at 09:50 and
    # recreated under the same name with a new uid, on another node.
    Pod("shop", "db-0", "1", "worker-3", "10.244.3.7", "db", ("StatefulSet", "db"), "db",
        "registry.shop.example/shop/patroni-pg:16.4-3.3.2", at(8, 14, 31.207),
        deleted=at(9, 50, 2.318), labels={"apps.kubernetes.io/pod-index": "0",
                                          "statefulset.kubernetes.io/pod-name": "db-0"}),
    Pod("shop", "db-0", "2", "worker-1", "10.244.1.25", "db", ("StatefulSet", "db"), "db",
        "registry.shop.example/shop/patroni-pg:16.4-3.3.2", at(9, 50, 8.442),
        labels={"apps.kubernetes.io/pod-index": "0", "statefulset.kubernetes.io/pod-name": "db-0"}),
    # monitoring/node-exporter: a hostNetwork DaemonSet; its kube-rbac-proxy sidecar calls
    # TokenReview/SubjectAccessReview from the node's own address.
    *[Pod("monitoring", f"node-exporter-{sfx}", "1", node, NODES[node].ip, "node-exporter",
          ("DaemonSet", "node-exporter"), "node-exporter", "quay.io/prometheus/node-exporter:v1.8.2",
          _pre(created), host_network=True, labels={"controller-revision-hash": "6b9f8d7c4d"})
      for sfx, node, created in [("4xk9p", "worker-1", "2026-02-18T07:30:12"),
                                 ("b7r2m", "worker-2", "2026-02-18T07:30:12"),
                                 ("q9z5t", "worker-3", "2026-02-18T07:30:13")]],
    # monitoring/legacy-exporter: an old exporter still mounting a Secret-based token.
    Pod("monitoring", "legacy-exporter-7d4b9c6f5-x8k2n", "1", "worker-3", "10.244.3.14",
        "legacy-exporter", ("ReplicaSet", "legacy-exporter-7d4b9c6f5"), "legacy-exporter",
        "registry.shop.example/monitoring/legacy-exporter:0.9.3", _pre("2026-01-27T11:03:58"),
        legacy_secret="legacy-exporter-token-abcde", labels={"pod-template-hash": "7d4b9c6f5"}),
    # kube-system/coredns: in the inventory only; its watches are left out of the log to keep it
    # short (shop/web's watch shows the same stage pattern).
    *[Pod("kube-system", f"coredns-6f6b679f8f-{sfx}", "1", node, ip, "coredns",
          ("ReplicaSet", "coredns-6f6b679f8f"), "kube-dns", "registry.k8s.io/coredns/coredns:v1.11.3",
          _pre("2026-02-18T07:29:40"), labels={"pod-template-hash": "6f6b679f8f"})
      for sfx, node, ip in [("h4kzn", "worker-1", "10.244.1.3"), ("t8wqx", "worker-2", "10.244.2.3")]],
]}

VICTIM = PODS["payments/api-6f9c7d8b5-k2x7p#1"]
WEB_HPA = PODS["shop/web-7c5d9b8f4-tz4wn#1"]
CART = PODS["shop/cart-5c9d7f8b6-wq4zt#1"]
DB_OLD = PODS["shop/db-0#1"]
DB_NEW = PODS["shop/db-0#2"]
LEGACY_POD = PODS["monitoring/legacy-exporter-7d4b9c6f5-x8k2n#1"]

# People. OIDC usernames carry the apiserver's --oidc-username-prefix; since v1.32 an OIDC token
# with a `jti` claim also yields a JTI= credential-id, so a detector must check the username too.
OFFICE_IP = "192.0.2.44"
CI_IP = "192.0.2.10"
ATTACKER_VPS = "198.51.100.23"  # where the stolen developer session is used from
REPLAY_IP = "203.0.113.50"  # where the stolen pod token is replayed from
LEGACY_REPLAY_IP = "198.51.100.77"  # where the stolen legacy token is used from
KUBECTL_DEV = "kubectl/v1.29.4 (darwin/arm64) kubernetes/55019c8"  # SPDY exec: verb create
KUBECTL_ATTACKER = "kubectl/v1.29.4 (linux/amd64) kubernetes/55019c8"
CURL = "curl/8.5.0"


def oidc_user(email: str, groups: list, session: str) -> dict:
    return {
        "username": "oidc:" + email,
        "groups": [*("oidc:" + g for g in groups), "system:authenticated"],
        "extra": {"authentication.kubernetes.io/credential-id": ["JTI=" + uid("oidc/" + session)]},
    }


NOWAK_OFFICE = oidc_user("a.nowak@shop.example", ["shop-developers"], "nowak-0759")
KELLER_OFFICE = oidc_user("m.keller@shop.example", ["payments-oncall"], "keller-0812")
# The attacker replays m.keller's refresh token from an infostealer dump: a fresh ID token.
KELLER_STOLEN = oidc_user("m.keller@shop.example", ["payments-oncall"], "keller-0949")

LEGACY_SECRET = ("monitoring", "legacy-exporter-token-abcde")
UNUSED_LEGACY_SECRET = ("shop", "ci-deployer-token")

# --------------------------------------------------------------------------------------------
# Audit events
# --------------------------------------------------------------------------------------------

CORE = ""


def request_uri(verb: str, resource: str, namespace: str | None, name: str | None,
                subresource: str | None, group: str, query: str = "") -> str:
    base = "/api/v1" if group == CORE else f"/apis/{group}/v1"
    path = base + (f"/namespaces/{namespace}" if namespace else "") + "/" + resource
    if name:
        path += "/" + name
    if subresource:
        path += "/" + subresource
    return path + (("?" + query) if query else "")


def rbac_reason(binding_kind: str, binding: str, role_kind: str, role: str, subject: str) -> str:
    return f'RBAC: allowed by {binding_kind} "{binding}" of {role_kind} "{role}" to {subject}'


class AuditLog:
    """Builds audit.k8s.io/v1 events and writes them ordered by stageTimestamp, as the log
    backend does (it writes each stage when it happens).

    The policy (README.md) logs `serviceaccounts/token` and kubelet `pods/status` writes at
    Request level, everything else at Metadata level; it omits the RequestReceived stage except
    for Secrets and interactive pod access (exec/attach/portforward), so those appear at every
    stage under one auditID.
    """

    def __init__(self) -> None:
        self.events: list = []  # (stageTimestamp, sequence, event)
        self.count = 0

    def _audit_id(self) -> str:
        self.count += 1
        return uid(f"audit/{self.count}")

    def request(self, t: datetime, *, user: dict, source_ips: list, user_agent: str, verb: str,
                resource: str, namespace: str | None = None, name: str | None = None,
                subresource: str | None = None, group: str = CORE, query: str = "",
                code: int = 200, status: dict | None = None, annotations: dict | None = None,
                authz_reason: str = "", request_object: dict | None = None,
                duration: float | None = None, long_running: bool = False) -> str:
        """Log one request at every stage the policy keeps; returns its auditID.

        `annotations` are authentication annotations (legacy-token, stale-token, ...); the
        authorization decision is added from `code`. `duration` is how long the request took;
        long-running requests (watch, exec) also get a ResponseStarted stage.
        """
        audit_id = self._audit_id()
        sensitive = resource == "secrets" or (resource == "pods" and subresource in
                                               ("exec", "attach", "portforward"))
        request_level = (resource == "serviceaccounts" and subresource == "token") or (
            resource == "pods" and subresource == "status" and "system:nodes" in user.get("groups", []))
        level = "Request" if request_level else "Metadata"
        object_ref = {"resource": resource}
        if namespace:
            object_ref["namespace"] = namespace
        if name:
            object_ref["name"] = name
        if group:
            object_ref["apiGroup"] = group
        object_ref["apiVersion"] = "v1"
        if subresource:
            object_ref["subresource"] = subresource
        if duration is None:
            duration = uniform(0.002, 0.012)
        authn = dict(annotations or {})
        authz = {"authorization.k8s.io/decision": "forbid" if code == 403 else "allow",
                 "authorization.k8s.io/reason": "" if code == 403 else authz_reason}
        response = status or {"metadata": {}, "code": code}

        def emit(stage: str, stage_time: datetime, with_response: bool, ann: dict) -> None:
            ev = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": level,
                  "auditID": audit_id, "stage": stage,
                  "requestURI": request_uri(verb, resource, namespace, name, subresource, group,
                                            query),
                  "verb": verb, "user": user, "sourceIPs": source_ips, "userAgent": user_agent,
                  "objectRef": object_ref}
            if with_response:
                ev["responseStatus"] = response
            if request_object is not None and level == "Request":
                ev["requestObject"] = request_object
            ev["requestReceivedTimestamp"] = micro(t)
            ev["stageTimestamp"] = micro(stage_time)
            # Go's encoding/json writes map keys sorted.
            if ann:
                ev["annotations"] = dict(sorted(ann.items()))
            self.events.append((stage_time, len(self.events), ev))

        if sensitive:
            # Authentication ran before the audit filter, authorization after: RequestReceived
            # carries authentication annotations only.
            emit("RequestReceived", t, False, authn)
        if long_running and code < 400:
            emit("ResponseStarted", t + timedelta(seconds=uniform(0.003, 0.3)), True,
                 {**authn, **authz})
        emit("ResponseComplete", t + timedelta(seconds=duration), True, {**authn, **authz})
        return audit_id

    def failed_authentication(self, t: datetime, *, source_ips: list, user_agent: str, verb: str,
                              resource: str, namespace: str | None = None) -> None:
        """A bearer token that failed to authenticate: one ResponseStarted event, `user: {}`."""
        ev = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
              "auditID": self._audit_id(), "stage": "ResponseStarted",
              "requestURI": request_uri(verb, resource, namespace, None, None, "apps"),
              "verb": verb, "user": {}, "sourceIPs": source_ips, "userAgent": user_agent,
              "objectRef": {"resource": resource, "namespace": namespace, "apiGroup": "apps",
                            "apiVersion": "v1"},
              "responseStatus": {"metadata": {}, "message": "Authentication failed, attempted: bearer",
                                 "code": 401},
              "requestReceivedTimestamp": micro(t),
              "stageTimestamp": micro(t + timedelta(microseconds=412))}
        self.events.append((t, len(self.events), ev))

    def write(self, path: Path) -> int:
        # The log was copied off the apiserver at LOG_END: stages that had not happened yet
        # (the end of watches still open then) are not in it.
        lines = [json.dumps(ev, separators=(",", ":"), ensure_ascii=False)
                 for t, _, ev in sorted(self.events, key=lambda e: (e[0], e[1])) if t <= LOG_END]
        path.write_text("\n".join(lines) + "\n")
        return len(lines)


LOG = AuditLog()


def forbidden(verb: str, resource: str, group: str, namespace: str | None, username: str) -> dict:
    where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    return {"metadata": {}, "status": "Failure",
            "message": f'{resource} is forbidden: User "{username}" cannot {verb} resource '
                       f'"{resource}" in API group "{group}"{where}',
            "reason": "Forbidden", "details": {"kind": resource}, "code": 403}


# --------------------------------------------------------------------------------------------
# Credentials: JTI lineage of pod-bound and controller tokens
# --------------------------------------------------------------------------------------------

KUBELET_TTL = 3607  # the admission-injected projected token's expirationSeconds
CONTROLLER_TTL = 3600  # kube-controller-manager's TokenRequest for its controllers


@dataclass
class Token:
    jti: str
    iat: datetime  # minted at (the mint request's time)
    in_use_from: datetime  # when the client switched to it (client-go re-reads every minute)
    mint_audit_id: str | None = None  # None: minted before the log starts


class Credentials:
    """The JTIs each holder used over the day, and when it switched from one to the next."""

    def __init__(self) -> None:
        self.tokens: dict = {}  # holder key -> [Token]

    def current(self, holder: str, t: datetime) -> Token:
        chain = [tok for tok in self.tokens[holder] if tok.in_use_from <= t]
        return chain[-1]

    def previous(self, holder: str, tok: Token) -> Token:
        chain = self.tokens[holder]
        return chain[chain.index(tok) - 1]


CREDS = Credentials()


def kubelet_mint(pod: Pod, t: datetime, index: int) -> Token:
    """The kubelet of the pod's node requests a pod-bound token (TokenRequest, Request level)."""
    node = NODES[pod.node]
    jti = uid(f"jti/{pod.key}/{index}")
    audit_id = LOG.request(
        t, user=node.kubelet_user, source_ips=[node.ip], user_agent=KUBELET_UA, verb="create",
        resource="serviceaccounts", namespace=pod.namespace, name=pod.sa, subresource="token",
        code=201, annotations={"authentication.kubernetes.io/issued-credential-id": "JTI=" + jti},
        request_object={
            "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "spec": {"audiences": None, "expirationSeconds": KUBELET_TTL,
                     "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod.name,
                                        "uid": pod.uid}},
            "status": {"token": "", "expirationTimestamp": None}},
        duration=uniform(0.004, 0.011))
    # client-go re-reads the token file every minute: the switch comes within a minute.
    return Token(jti, t, t + timedelta(seconds=uniform(12, 58)), audit_id)


def rotation_interval() -> timedelta:
    # requiresRefresh: 80% of 3607 s minus up to 10 s of jitter, noticed on the next volume sync.
    return timedelta(seconds=0.8 * KUBELET_TTL - uniform(0, 10) + uniform(15, 95))


# The victim's mints are pinned so the story's times read well in README.md; the rest follow
# the kubelet's rotation rule from a random phase.
VICTIM_MINTS = [at(7, 40, 32.117), at(8, 29, 14.602), at(9, 17, 49.331), at(10, 6, 31.845),
                at(10, 55, 9.270)]


def plan_pod_tokens() -> None:
    for pod in PODS.values():
        if pod.legacy_secret:
            continue
        end = min(pod.deleted or LOG_END, LOG_END)
        chain: list = []
        if pod is VICTIM:
            mints = VICTIM_MINTS
        elif pod.created < LOG_START:
            mints = [LOG_START - timedelta(seconds=uniform(60, 2800))]
        else:
            # Volumes are mounted (and the token minted) right after the pod is bound.
            mints = [pod.created + timedelta(seconds=uniform(1.2, 1.9))]
        # Two jitter draws per rotation: one decides whether another rotation comes before the
        # pod's end, one places it. Kept as first written: golden tests pin this evidence, and
        # check_story verifies that every mint falls inside its pod's life.
        while pod is not VICTIM and mints[-1] + rotation_interval() < end:
            mints.append(mints[-1] + rotation_interval())
        for i, t in enumerate(mints):
            if t < LOG_START:
                chain.append(Token(uid(f"jti/{pod.key}/{i}"), t, t))
            else:
                tok = kubelet_mint(pod, t, i)
                if i == 0:
                    tok.in_use_from = t  # nothing older to switch from
                chain.append(tok)
        CREDS.tokens[pod.key] = chain


def controller_token(controller: str, t: datetime) -> Token:
    """The controller's current unbound token, minted lazily as client-go's token source does:
    when the cached one is past 80% of its lifetime at the time of a request."""
    key = "controller/" + controller
    chain = CREDS.tokens.setdefault(key, [])
    if not chain:
        iat = LOG_START - timedelta(seconds=uniform(60, 2800))
        chain.append(Token(uid(f"jti/{key}/0"), iat, iat))
    tok = chain[-1]
    if t - tok.iat > timedelta(seconds=0.8 * CONTROLLER_TTL):
        mint_t = t - timedelta(seconds=0.03)
        jti = uid(f"jti/{key}/{len(chain)}")
        audit_id = LOG.request(
            mint_t, user=KCM_USER, source_ips=[LOOPBACK], user_agent=KCM_UA + "/kube-controller-manager",
            verb="create", resource="serviceaccounts", namespace="kube-system", name=controller,
            subresource="token", code=201,
            annotations={"authentication.kubernetes.io/issued-credential-id": "JTI=" + jti},
            authz_reason=rbac_reason("ClusterRoleBinding", "system:kube-controller-manager",
                                     "ClusterRole", "system:kube-controller-manager",
                                     'User "system:kube-controller-manager"'),
            request_object={"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                            "metadata": {"creationTimestamp": None},
                            "spec": {"audiences": None, "expirationSeconds": CONTROLLER_TTL,
                                     "boundObjectRef": None},
                            "status": {"token": "", "expirationTimestamp": None}},
            duration=0.006)
        tok = Token(jti, mint_t, mint_t, audit_id)
        chain.append(tok)
    return tok


# --------------------------------------------------------------------------------------------
# Who does what with which token
# --------------------------------------------------------------------------------------------


def pod_user(pod: Pod, tok: Token) -> dict:
    """`user` of a request made with a pod-bound token: every extra of docs/kubernetes.md §2."""
    sa = pod.service_account
    node = NODES[pod.node]
    return {"username": sa.username, "uid": sa.uid, "groups": sa.groups, "extra": {
        "authentication.kubernetes.io/credential-id": ["JTI=" + tok.jti],
        "authentication.kubernetes.io/node-name": [node.name],
        "authentication.kubernetes.io/node-uid": [node.uid],
        "authentication.kubernetes.io/pod-name": [pod.name],
        "authentication.kubernetes.io/pod-uid": [pod.uid]}}


def controller_request(controller: str, t: datetime, **kw) -> str:
    tok = controller_token(controller, t)
    sa = SERVICE_ACCOUNTS["kube-system/" + controller]
    user = {"username": sa.username, "uid": sa.uid, "groups": sa.groups,
            "extra": {"authentication.kubernetes.io/credential-id": ["JTI=" + tok.jti]}}
    role = "system:controller:" + controller
    return LOG.request(t, user=user, source_ips=[LOOPBACK], user_agent=f"{KCM_UA}/{sa.username}",
                       authz_reason=rbac_reason("ClusterRoleBinding", role, "ClusterRole", role,
                                                f'ServiceAccount "{controller}/kube-system"'),
                       **kw)


@dataclass
class Call:
    """One kind of request a workload makes periodically with its own token."""

    every: float  # seconds (thinned: real clients call far more often)
    verb: str
    resource: str
    name: str | None = None
    namespace: str | None = None  # defaults to the pod's namespace; "" for cluster scope
    group: str = CORE
    subresource: str | None = None
    query: str = ""
    code: int = 200
    watch: bool = False  # a watch with no timeoutSeconds: the server ends it after 30-60 min


WORKLOADS = {
    # app label -> (user agent, RBAC reason parts, calls)
    "api": ("payments-api/2.14.1 (linux/amd64) kubernetes/$Format",
            ("RoleBinding", "api/payments", "Role", "api"),
            [Call(900, "get", "leases", "payments-api-leader", group="coordination.k8s.io"),
             Call(3600, "get", "secrets", "payments-db")]),
    "web": ("web/5.3.0 (linux/amd64) kubernetes/$Format",
            ("RoleBinding", "web/shop", "Role", "web"),
            [Call(900, "get", "configmaps", "web-content"),
             Call(1800, "list", "endpoints", code=403),  # a missing RBAC rule: benign 403s
             Call(0, "watch", "configmaps", watch=True,
                  query="fieldSelector=metadata.name%3Dweb-flags&watch=true")]),
    "cart": ("cart/1.0.0 (linux/amd64) kubernetes/$Format",
             ("RoleBinding", "cart/shop", "Role", "cart"),
             [Call(900, "get", "configmaps", "cart-config")]),
    "checkout": ("checkout/3.8.2 (linux/amd64) kubernetes/$Format",
                 ("RoleBinding", "checkout/shop", "Role", "checkout"),
                 [Call(900, "get", "configmaps", "checkout-flags")]),
    "db": ("Patroni/3.3.2 Python/3.11.9 Linux",
           ("RoleBinding", "db/shop", "Role", "db"),
           [Call(900, "patch", "endpoints", "db")]),
    "node-exporter": ("kube-rbac-proxy/v0.18.1 (linux/amd64) kubernetes/$Format",
                      ("ClusterRoleBinding", "node-exporter", "ClusterRole", "node-exporter"),
                      [Call(2700, "create", "tokenreviews", namespace="",
                            group="authentication.k8s.io", code=201),
                       Call(2700, "create", "subjectaccessreviews", namespace="",
                            group="authorization.k8s.io", code=201)]),
}


def workload_request(pod: Pod, t: datetime, call: Call, tok: Token, *, duration=None,
                     extra_annotations=None) -> str:
    ua, (bkind, binding, rkind, role) = WORKLOADS[pod.app][0], WORKLOADS[pod.app][1]
    sa = pod.service_account
    ns = pod.namespace if call.namespace is None else (call.namespace or None)
    status = None
    if call.code == 403:
        status = forbidden(call.verb, call.resource, call.group, ns, sa.username)
    return LOG.request(t, user=pod_user(pod, tok), source_ips=[pod.client_ip], user_agent=ua,
                       verb=call.verb, resource=call.resource, namespace=ns, name=call.name,
                       subresource=call.subresource, group=call.group, query=call.query,
                       code=call.code, status=status, annotations=extra_annotations,
                       authz_reason=rbac_reason(bkind, binding, rkind, role,
                                                f'ServiceAccount "{sa.name}/{sa.namespace}"'),
                       duration=duration, long_running=call.verb == "watch")


def pod_active_window(pod: Pod) -> tuple:
    # In-window pods start calling once their containers run (a few seconds after the mint);
    # deleted pods stop calling when they receive SIGTERM.
    start = max(LOG_START, pod.created + timedelta(seconds=12))
    end = min(pod.deleted or LOG_END, LOG_END)
    return start, end


def benign_workload_traffic() -> None:
    """Every pod's own periodic requests with its current token, plus the rotation overlap."""
    for pod in PODS.values():
        if pod.legacy_secret or pod.app not in WORKLOADS:
            continue
        start, end = pod_active_window(pod)
        for call in WORKLOADS[pod.app][2]:
            if call.watch:
                benign_watch_chain(pod, call, start, end)
                continue
            # A pod started during the window makes its first calls as it initialises.
            first = (1, 20) if pod.created >= LOG_START else (5, call.every)
            t = start + timedelta(seconds=uniform(*first))
            while t < end:
                workload_request(pod, t, call, CREDS.current(pod.key, t))
                t += timedelta(seconds=call.every + uniform(-40, 40))
        # The rotation overlap: in the minute between a mint and client-go re-reading the file,
        # the pod still calls with the previous JTI. Benign; must stay silent.
        first_call = WORKLOADS[pod.app][2][0]
        for tok in CREDS.tokens[pod.key][1:]:
            if tok.mint_audit_id and start < tok.iat < end:
                old = CREDS.previous(pod.key, tok)
                t = tok.iat + timedelta(seconds=uniform(2, (tok.in_use_from - tok.iat).total_seconds() - 1))
                workload_request(pod, t, first_call, old)
                workload_request(pod, tok.in_use_from + timedelta(seconds=uniform(0.5, 3)),
                                 first_call, tok)


def benign_watch_chain(pod: Pod, call: Call, start: datetime, end: datetime) -> None:
    """A watch re-opened as soon as the server ends it. The client sets no timeoutSeconds, so
    the apiserver picks 30-60 min (--min-request-timeout 1800 s, times 1 to 2): most of these
    watches straddle a rotation. The JTI was used when the watch was opened
    (requestReceivedTimestamp); its ResponseComplete stage, logged half an hour later while the
    pod already calls with the next JTI, is not a later use of the old one."""
    t = start + timedelta(seconds=uniform(1, 90))
    while t < end:
        duration = uniform(1800, 3600)
        if pod.deleted and t + timedelta(seconds=duration) > end:
            duration = (end - t).total_seconds() + 0.4  # the connection closes with the pod
        workload_request(pod, t, call, CREDS.current(pod.key, t), duration=duration)
        t += timedelta(seconds=duration + uniform(0.2, 1.5))


# --------------------------------------------------------------------------------------------
# Pod lifecycle (controllers, scheduler, kubelet)
# --------------------------------------------------------------------------------------------


def container_status(pod: Pod, t: datetime, state: dict, ready: bool) -> dict:
    return {"containerID": "containerd://" + hexid("ctr/" + pod.key, 64),
            "image": pod.image, "imageID": pod.image.split(":")[0] + "@sha256:" + hexid("img/" + pod.image, 64),
            "lastState": {}, "name": pod.app if pod.app != "kube-dns" else "coredns", "ready": ready,
            "restartCount": 0, "started": ready, "state": state}


def kubelet_status_patch(pod: Pod, t: datetime, phase: str) -> None:
    """The kubelet's strategic-merge patch of pods/status (Request level: it names the uid and,
    once the sandbox is up, the pod's addresses)."""
    node = NODES[pod.node]
    order = [{"type": c} for c in ("PodReadyToStartContainers", "Initialized", "Ready",
                                   "ContainersReady", "PodScheduled")]
    if phase == "Pending":
        status = {"$setElementOrder/conditions": order,
                  "conditions": [{"lastProbeTime": None, "lastTransitionTime": seconds(t),
                                  "status": "False", "type": "PodReadyToStartContainers"},
                                 {"lastProbeTime": None, "lastTransitionTime": seconds(t),
                                  "status": "True", "type": "Initialized"},
                                 {"lastProbeTime": None, "lastTransitionTime": seconds(t),
                                  "message": "containers with unready status: [" + pod.app + "]",
                                  "reason": "ContainersNotReady", "status": "False", "type": "Ready"},
                                 {"lastProbeTime": None, "lastTransitionTime": seconds(t),
                                  "message": "containers with unready status: [" + pod.app + "]",
                                  "reason": "ContainersNotReady", "status": "False",
                                  "type": "ContainersReady"}],
                  "containerStatuses": [{"image": pod.image, "imageID": "", "lastState": {},
                                         "name": pod.app, "ready": False, "restartCount": 0,
                                         "started": False,
                                         "state": {"waiting": {"reason": "ContainerCreating"}}}],
                  "hostIP": node.ip, "hostIPs": [{"ip": node.ip}], "startTime": seconds(t)}
    elif phase == "Running":
        status = {"$setElementOrder/conditions": order,
                  "conditions": [{"lastTransitionTime": seconds(t), "status": "True",
                                  "type": "PodReadyToStartContainers"},
                                 {"lastTransitionTime": seconds(t), "message": None, "reason": None,
                                  "status": "True", "type": "Ready"},
                                 {"lastTransitionTime": seconds(t), "message": None, "reason": None,
                                  "status": "True", "type": "ContainersReady"}],
                  "containerStatuses": [container_status(
                      pod, t, {"running": {"startedAt": seconds(t)}}, True)],
                  "phase": "Running", "podIP": pod.ip, "podIPs": [{"ip": pod.ip}]}
    else:  # terminated after a deletion
        status = {"$setElementOrder/conditions": order,
                  "conditions": [{"lastTransitionTime": seconds(t), "status": "False",
                                  "type": "PodReadyToStartContainers"},
                                 {"lastTransitionTime": seconds(t), "reason": "PodCompleted",
                                  "status": "False", "type": "Ready"},
                                 {"lastTransitionTime": seconds(t), "reason": "PodCompleted",
                                  "status": "False", "type": "ContainersReady"}],
                  "containerStatuses": [container_status(pod, t, {"terminated": {
                      "containerID": "containerd://" + hexid("ctr/" + pod.key, 64), "exitCode": 0,
                      "finishedAt": seconds(t), "reason": "Completed",
                      "startedAt": seconds(pod.created + timedelta(seconds=4))}}, False)],
                  "phase": "Succeeded"}
    LOG.request(t, user=node.kubelet_user, source_ips=[node.ip], user_agent=KUBELET_UA,
                verb="patch", resource="pods", namespace=pod.namespace, name=pod.name,
                subresource="status",
                request_object={"metadata": {"uid": pod.uid}, "status": status},
                duration=uniform(0.005, 0.014))


def pod_started(pod: Pod, creator: str) -> None:
    """Controller creates the pod, the scheduler binds it, the kubelet mints its token (planned
    in `plan_pod_tokens`) and reports its status."""
    t = pod.created
    # A ReplicaSet's pods are created with generateName, so the request names no pod; a
    # StatefulSet's pods are created by name (the audit objectRef takes it from the body).
    named = pod.name if pod.owner[0] == "StatefulSet" else None
    controller_request(creator, t - timedelta(seconds=0.02), verb="create", resource="pods",
                       namespace=pod.namespace, name=named, code=201, duration=0.011)
    LOG.request(t + timedelta(seconds=0.03), user=SCHEDULER_USER, source_ips=[LOOPBACK],
                user_agent=SCHEDULER_UA, verb="create", resource="pods", namespace=pod.namespace,
                name=pod.name, subresource="binding", code=201,
                authz_reason=rbac_reason("ClusterRoleBinding", "system:kube-scheduler", "ClusterRole",
                                         "system:kube-scheduler", 'User "system:kube-scheduler"'))
    kubelet_status_patch(pod, t + timedelta(seconds=uniform(2.0, 2.6)), "Pending")
    kubelet_status_patch(pod, t + timedelta(seconds=uniform(6.0, 9.0)), "Running")
    controller_request("endpointslice-controller", t + timedelta(seconds=uniform(9.5, 10.5)),
                       verb="update", resource="endpointslices", namespace=pod.namespace,
                       name=pod.owner[1].rsplit("-", 1)[0] + "-" + hexid("eps/" + pod.app, 5),
                       group="discovery.k8s.io")


def pod_removed(pod: Pod, *, grace: float) -> None:
    """After the deletion request: the kubelet stops the containers, reports them terminated,
    then removes the object (its own delete with grace period 0)."""
    node = NODES[pod.node]
    stopped = pod.deleted + timedelta(seconds=grace)
    kubelet_status_patch(pod, stopped, "Succeeded")
    LOG.request(stopped + timedelta(seconds=0.9), user=node.kubelet_user, source_ips=[node.ip],
                user_agent=KUBELET_UA, verb="delete", resource="pods", namespace=pod.namespace,
                name=pod.name)
    controller_request("endpointslice-controller", stopped + timedelta(seconds=1.3),
                       verb="update", resource="endpointslices", namespace=pod.namespace,
                       name=pod.owner[1].rsplit("-", 1)[0] + "-" + hexid("eps/" + pod.app, 5),
                       group="discovery.k8s.io")


def benign_lifecycle() -> None:
    # 08:04 the HPA scales shop/web from 1 to 2 replicas (morning traffic).
    hpa_t = WEB_HPA.created - timedelta(seconds=2.4)
    controller_request("horizontal-pod-autoscaler", hpa_t, verb="update", resource="deployments",
                       namespace="shop", name="web", subresource="scale", group="apps")
    controller_request("deployment-controller", hpa_t + timedelta(seconds=1.1), verb="update",
                       resource="replicasets", namespace="shop", name="web-7c5d9b8f4", group="apps")
    pod_started(WEB_HPA, "replicaset-controller")

    # 08:14 a.nowak deploys the new shop/db StatefulSet (updateStrategy OnDelete).
    t = DB_OLD.created - timedelta(seconds=1.8)
    for res, name, group in [("serviceaccounts", "db", CORE), ("statefulsets", "db", "apps")]:
        human(NOWAK_OFFICE, OFFICE_IP, KUBECTL_DEV, t, "create", res, "shop", name, group=group,
              code=201)
        t += timedelta(seconds=0.2)
    pod_started(DB_OLD, "statefulset-controller")

    # Every 15 minutes the HPA writes its status (thinned from every 15 s).
    t = LOG_START + timedelta(seconds=uniform(30, 400))
    while t < LOG_END:
        controller_request("horizontal-pod-autoscaler", t, verb="update",
                           resource="horizontalpodautoscalers", namespace="shop", name="web",
                           subresource="status", group="autoscaling")
        t += timedelta(seconds=900 + uniform(-20, 20))

    # 09:40 the HPA scales back to 1; the ReplicaSet controller deletes the extra pod.
    controller_request("horizontal-pod-autoscaler", WEB_HPA.deleted - timedelta(seconds=1.6),
                       verb="update", resource="deployments", namespace="shop", name="web",
                       subresource="scale", group="apps")
    controller_request("deployment-controller", WEB_HPA.deleted - timedelta(seconds=0.9),
                       verb="update", resource="replicasets", namespace="shop",
                       name="web-7c5d9b8f4", group="apps")
    controller_request("replicaset-controller", WEB_HPA.deleted, verb="delete", resource="pods",
                       namespace="shop", name=WEB_HPA.name)
    pod_removed(WEB_HPA, grace=uniform(1.5, 3.0))

    # 09:48 a.nowak changes the db configuration and, as OnDelete requires, deletes db-0.
    human(NOWAK_OFFICE, OFFICE_IP, KUBECTL_DEV, at(9, 48, 12.5), "patch", "statefulsets", "shop",
          "db", group="apps")
    human(NOWAK_OFFICE, OFFICE_IP, KUBECTL_DEV, DB_OLD.deleted, "delete", "pods", "shop", "db-0")
    # Patroni handles SIGTERM by releasing the leader key: the old pod's last request arrives
    # during its termination grace period, after the deletion request. Still its own request.
    workload_request(DB_OLD, DB_OLD.deleted + timedelta(seconds=1.73), WORKLOADS["db"][2][0],
                     CREDS.current(DB_OLD.key, DB_OLD.deleted))
    pod_removed(DB_OLD, grace=3.9)
    pod_started(DB_NEW, "statefulset-controller")

    # 10:02 a.nowak deploys shop/cart; its pod lands on worker-2 and gets 10.244.2.21.
    t = CART.created - timedelta(seconds=2.7)
    for res, group in [("serviceaccounts", CORE), ("deployments", "apps")]:
        human(NOWAK_OFFICE, OFFICE_IP, KUBECTL_DEV, t, "create", res, "shop", "cart", group=group,
              code=201)
        t += timedelta(seconds=0.2)
    controller_request("deployment-controller", CART.created - timedelta(seconds=1.2),
                       verb="create", resource="replicasets", namespace="shop",
                       name="cart-5c9d7f8b6", group="apps", code=201)
    pod_started(CART, "replicaset-controller")


# --------------------------------------------------------------------------------------------
# People
# --------------------------------------------------------------------------------------------

HUMAN_REASONS = {
    "oidc:a.nowak@shop.example": rbac_reason("RoleBinding", "shop-developers/shop", "ClusterRole",
                                             "edit", 'Group "oidc:shop-developers"'),
    "oidc:m.keller@shop.example": rbac_reason("ClusterRoleBinding", "payments-oncall",
                                              "ClusterRole", "oncall-operator",
                                              'Group "oidc:payments-oncall"'),
}


def human(user: dict, ip: str, ua: str, t: datetime, verb: str, resource: str,
          namespace: str | None, name: str | None = None, *, group: str = CORE,
          subresource: str | None = None, query: str = "", code: int = 200,
          duration: float | None = None) -> str:
    return LOG.request(t, user=user, source_ips=[ip], user_agent=ua, verb=verb, resource=resource,
                       namespace=namespace, name=name, group=group, subresource=subresource,
                       query=query, code=code, authz_reason=HUMAN_REASONS[user["username"]],
                       duration=duration, long_running=subresource in ("exec", "log"))


EXEC_QUERY = "command=sh&container={c}&stdin=true&stdout=true&tty=true"


def benign_people() -> None:
    # 08:31 m.keller, from the office, looks at the payments pods and their logs.
    t = at(8, 31, 4.2)
    human(KELLER_OFFICE, OFFICE_IP, KUBECTL_DEV, t, "list", "pods", "payments", query="limit=500")
    human(KELLER_OFFICE, OFFICE_IP, KUBECTL_DEV, t + timedelta(seconds=21), "get", "pods", "payments",
          "api-6f9c7d8b5-r8m4q", subresource="log", query="container=api&tailLines=200",
          duration=0.4)
    # 08:40 a.nowak execs into the long-lived web pod to debug. The web pod keeps using its token
    # from its own address: exec followed by in-cluster use by the pod itself is benign.
    human(NOWAK_OFFICE, OFFICE_IP, KUBECTL_DEV, at(8, 40, 11.9), "create", "pods", "shop",
          "web-7c5d9b8f4-2jxqz", subresource="exec", query=EXEC_QUERY.format(c="web"), code=101,
          duration=371.4)
    # 09:05 a CI job with an expired token: a 401 that has nothing to do with a deleted pod.
    LOG.failed_authentication(at(9, 5, 42.77), source_ips=[CI_IP], user_agent="Helm/3.14.4",
                              verb="list", resource="deployments", namespace="shop")


# --------------------------------------------------------------------------------------------
# The attack
# --------------------------------------------------------------------------------------------

ATTACK = {}  # facts README.md and check_story refer to


def attack_developer_session() -> None:
    """09:51 the attacker, holding m.keller's stolen session, reads the legacy token Secret."""
    t = at(9, 51, 37.4)
    human(KELLER_STOLEN, ATTACKER_VPS, KUBECTL_ATTACKER, t, "list", "namespaces", None,
          query="limit=500")
    ATTACK["secret_list"] = human(KELLER_STOLEN, ATTACKER_VPS, KUBECTL_ATTACKER,
                                  t + timedelta(seconds=19.6), "list", "secrets", "monitoring",
                                  query="limit=500")
    ATTACK["secret_get"] = human(KELLER_STOLEN, ATTACKER_VPS, KUBECTL_ATTACKER,
                                 t + timedelta(seconds=44.1), "get", "secrets", LEGACY_SECRET[0],
                                 LEGACY_SECRET[1])
    ATTACK["secret_read_times"] = (t + timedelta(seconds=19.6), t + timedelta(seconds=44.1))


def legacy_user() -> dict:
    sa = SERVICE_ACCOUNTS["monitoring/legacy-exporter"]
    return {"username": sa.username, "uid": sa.uid, "groups": sa.groups}


LEGACY_ANNOTATIONS = {
    "authentication.k8s.io/legacy-token": "system:serviceaccount:monitoring:legacy-exporter",
    "authentication.k8s.io/legacy-token-manual-secret": LEGACY_SECRET[1],
}
LEGACY_REASON = rbac_reason("ClusterRoleBinding", "legacy-exporter", "ClusterRole",
                            "legacy-exporter", 'ServiceAccount "legacy-exporter/monitoring"')


def benign_legacy_exporter() -> None:
    """The exporter lists pods every 15 minutes with its Secret-based token (thinned)."""
    t = LOG_START + timedelta(seconds=uniform(10, 600))
    ATTACK["legacy_pod_uses"] = 0
    while t < LOG_END:
        LOG.request(t, user=legacy_user(), source_ips=[LEGACY_POD.ip],
                    user_agent="legacy-exporter/0.9.3 (linux/amd64) kubernetes/$Format",
                    verb="list", resource="pods", query="limit=500",
                    annotations=LEGACY_ANNOTATIONS, authz_reason=LEGACY_REASON,
                    duration=uniform(0.02, 0.05))
        ATTACK["legacy_pod_uses"] += 1
        t += timedelta(seconds=900 + uniform(-30, 30))


def attack_legacy_token() -> None:
    """10:03 the legacy token is used from outside the cluster."""
    t = at(10, 3, 18.06)
    uses = [("list", "namespaces", None, 200), ("list", "pods", None, 200),
            ("list", "configmaps", "kube-system", 403)]
    ATTACK["legacy_replay_times"] = []
    for verb, res, ns, code in uses:
        LOG.request(t, user=legacy_user(), source_ips=[LEGACY_REPLAY_IP], user_agent=KUBECTL_ATTACKER,
                    verb=verb, resource=res, namespace=ns, query="limit=500", code=code,
                    status=forbidden(verb, res, "", ns, legacy_user()["username"]) if code == 403 else None,
                    annotations=LEGACY_ANNOTATIONS, authz_reason=LEGACY_REASON)
        ATTACK["legacy_replay_times"].append(t)
        t += timedelta(seconds=uniform(8, 30))


def attack_exec_and_replay() -> None:
    """10:21 exec into the payments pod, read its token; replay it from 203.0.113.50 with a
    forged X-Forwarded-For naming the pod's own address; come back at 11:14 with the same JTI."""
    human(KELLER_STOLEN, ATTACKER_VPS, KUBECTL_ATTACKER, at(10, 20, 41.3), "list", "pods", "payments",
          query="limit=500")
    exec_t = at(10, 21, 7.052)
    ATTACK["exec"] = human(KELLER_STOLEN, ATTACKER_VPS, KUBECTL_ATTACKER, exec_t, "create", "pods",
                           "payments", VICTIM.name, subresource="exec",
                           query=EXEC_QUERY.format(c="api"), code=101, duration=224.6)
    ATTACK["exec_time"] = exec_t
    stolen = CREDS.current(VICTIM.key, exec_t)
    ATTACK["stolen"] = stolen
    sa = VICTIM.service_account
    reason = rbac_reason("RoleBinding", "api/payments", "Role", "api",
                         'ServiceAccount "api/payments"')
    replays = [
        # (time, verb, resource, group, namespace, name, code)
        (at(10, 26, 40.118), "create", "selfsubjectrulesreviews", "authorization.k8s.io", None, None, 201),
        (at(10, 27, 2.504), "list", "secrets", CORE, "payments", None, 200),
        (at(10, 27, 31.771), "get", "secrets", CORE, "payments", "payments-db", 200),
        (at(10, 28, 5.239), "get", "secrets", CORE, "payments", "stripe-api-key", 200),
        (at(10, 29, 12.880), "create", "pods", CORE, "payments", None, 403),
        (at(10, 29, 40.415), "list", "nodes", CORE, None, None, 403),
        (at(11, 14, 22.603), "get", "secrets", CORE, "payments", "stripe-api-key", 200),
        (at(11, 14, 50.027), "list", "secrets", CORE, "payments", None, 200),
    ]
    ATTACK["replays"] = []
    for t, verb, res, group, ns, name, code in replays:
        annotations = {}
        # The kubelet asked for 3607 s, so the token got warnafter = iat + 3607 s (and a one-year
        # exp): past it, every use is annotated stale (docs/kubernetes.md §3.4).
        warn_after = stolen.iat + timedelta(seconds=KUBELET_TTL)
        if t > warn_after:
            annotations["authentication.k8s.io/stale-token"] = (
                f"subject: {sa.username}, seconds after warning threshold: "
                f"{int((t - warn_after).total_seconds())}")
        audit_id = LOG.request(
            t, user=pod_user(VICTIM, stolen), source_ips=[VICTIM.ip, REPLAY_IP], user_agent=CURL,
            verb=verb, resource=res, namespace=ns, name=name, group=group,
            query="limit=500" if verb == "list" else "", code=code,
            status=forbidden(verb, res, group, ns, sa.username) if code == 403 else None,
            annotations=annotations, authz_reason=reason)
        ATTACK["replays"].append((t, verb, res, ns, name, code, audit_id, bool(annotations)))


# --------------------------------------------------------------------------------------------
# Inventory dumps (kubectl get ... -o json), collected at 11:42
# --------------------------------------------------------------------------------------------


def kubectl_list(items: list) -> dict:
    return {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}


def write_json(path: Path, doc: dict) -> None:
    # kubectl prints objects as unstructured maps: keys sorted, four-space indent.
    path.write_text(json.dumps(doc, indent=4, sort_keys=True, ensure_ascii=False) + "\n")


def resource_version(label: str) -> str:
    return str(4_000_000 + int(hexid("rv/" + label, 6), 16) % 900_000)


def nodes_dump() -> dict:
    items = []
    for node in NODES.values():
        items.append({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                         "volumes.kubernetes.io/controller-managed-attach-detach": "true"},
                         "creationTimestamp": "2026-02-18T07:21:09Z",
                         "labels": {"beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
                                    "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": node.name,
                                    "kubernetes.io/os": "linux", "node.kubernetes.io/pool": "general"},
                         "name": node.name, "resourceVersion": resource_version("node/" + node.name),
                         "uid": node.uid},
            "spec": {"podCIDR": node.pod_cidr, "podCIDRs": [node.pod_cidr]},
            "status": {
                "addresses": [{"address": node.ip, "type": "InternalIP"},
                              {"address": node.name, "type": "Hostname"}],
                "allocatable": {"cpu": "3920m", "ephemeral-storage": "95551679124",
                                "memory": "15629920Ki", "pods": "110"},
                "capacity": {"cpu": "4", "ephemeral-storage": "103680000Ki",
                             "memory": "16335456Ki", "pods": "110"},
                "conditions": [{"lastHeartbeatTime": seconds(COLLECTED - timedelta(seconds=37)),
                                "lastTransitionTime": "2026-02-18T07:21:41Z",
                                "message": "kubelet is posting ready status", "reason": "KubeletReady",
                                "status": "True", "type": "Ready"}],
                "nodeInfo": {"architecture": "amd64", "bootID": uid("boot/" + node.name),
                             "containerRuntimeVersion": "containerd://1.7.24",
                             "kernelVersion": "6.8.0-1021-generic", "kubeProxyVersion": "",
                             "kubeletVersion": K8S_VERSION, "machineID": hexid("mid/" + node.name, 32),
                             "operatingSystem": "linux", "osImage": "Ubuntu 24.04.1 LTS",
                             "systemUUID": uid("sys/" + node.name)}}})
    return kubectl_list(items)


def serviceaccounts_dump() -> dict:
    items = []
    for sa in sorted(SERVICE_ACCOUNTS.values(), key=lambda s: (s.namespace, s.name)):
        items.append({"apiVersion": "v1", "kind": "ServiceAccount",
                      "metadata": {"creationTimestamp": seconds(sa.created), "name": sa.name,
                                   "namespace": sa.namespace,
                                   "resourceVersion": resource_version("sa/" + sa.uid),
                                   "uid": sa.uid}})
    return kubectl_list(items)


def fake_legacy_jwt(namespace: str, secret: str, sa: ServiceAccount) -> str:
    """A JWT-shaped legacy token: real legacy claims, a made-up key id and signature. It signs
    nothing and opens nothing; tests use it to prove no token reaches any output."""
    def b64url(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = {"alg": "RS256", "kid": b64url(hashlib.sha256(b"shop-prod-sa-signing-key").digest())}
    claims = {"iss": "kubernetes/serviceaccount",
              "kubernetes.io/serviceaccount/namespace": namespace,
              "kubernetes.io/serviceaccount/secret.name": secret,
              "kubernetes.io/serviceaccount/service-account.name": sa.name,
              "kubernetes.io/serviceaccount/service-account.uid": sa.uid,
              "sub": sa.username}
    signature = b"".join(hashlib.sha512(f"fake-signature/{secret}/{i}".encode()).digest()
                         for i in range(4))  # 256 bytes, the size of an RS256 signature
    return ".".join([b64url(json.dumps(header, separators=(",", ":")).encode()),
                     b64url(json.dumps(claims, separators=(",", ":")).encode()),
                     b64url(signature)])


FAKE_CA = ("-----BEGIN CERTIFICATE-----\n" +
           "\n".join(base64.b64encode(hashlib.sha512(f"ca/{i}".encode()).digest()).decode()[:64]
                     for i in range(8)) + "\n-----END CERTIFICATE-----\n")


def sa_secrets_dump() -> dict:
    def b64(s: str) -> str:
        return base64.b64encode(s.encode()).decode()

    items = []
    for (ns, name), sa_name, created, last_used in [
            (LEGACY_SECRET, "legacy-exporter", "2022-05-17T14:31:10Z", "2026-03-10"),
            (UNUSED_LEGACY_SECRET, "ci-deployer", "2021-09-02T16:20:45Z", "2025-06-02")]:
        sa = SERVICE_ACCOUNTS[f"{ns}/{sa_name}"]
        applied = {"apiVersion": "v1", "kind": "Secret", "metadata": {
            "annotations": {"kubernetes.io/service-account.name": sa_name},
            "name": name, "namespace": ns}, "type": "kubernetes.io/service-account-token"}
        items.append({
            "apiVersion": "v1", "kind": "Secret",
            "data": {"ca.crt": b64(FAKE_CA), "namespace": b64(ns),
                     "token": b64(fake_legacy_jwt(ns, name, sa))},
            "metadata": {
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration":
                        json.dumps(applied, separators=(",", ":")) + "\n",
                    "kubernetes.io/service-account.name": sa_name,
                    "kubernetes.io/service-account.uid": sa.uid},
                "creationTimestamp": created,
                "labels": {"kubernetes.io/legacy-token-last-used": last_used},
                "name": name, "namespace": ns,
                "resourceVersion": resource_version(f"secret/{ns}/{name}"),
                "uid": uid(f"secret/{ns}/{name}")},
            "type": "kubernetes.io/service-account-token"})
    return kubectl_list(items)


def pods_dump() -> dict:
    items = []
    alive = [p for p in PODS.values() if p.deleted is None]
    for pod in sorted(alive, key=lambda p: (p.namespace, p.name)):
        node = NODES[pod.node]
        container = pod.app if pod.app != "kube-dns" else "coredns"
        if pod.legacy_secret:
            volume = {"name": "sa-token", "secret": {"defaultMode": 420,
                                                     "secretName": pod.legacy_secret}}
        else:
            volume = {"name": pod.volume, "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": KUBELET_TTL, "path": "token"}},
                {"configMap": {"items": [{"key": "ca.crt", "path": "ca.crt"}],
                               "name": "kube-root-ca.crt"}},
                {"downwardAPI": {"items": [{"fieldRef": {"apiVersion": "v1",
                                                         "fieldPath": "metadata.namespace"},
                                            "path": "namespace"}]}}]}}
        metadata = {"creationTimestamp": seconds(pod.created),
                    "labels": {"app": pod.app, **pod.labels}, "name": pod.name,
                    "namespace": pod.namespace,
                    "ownerReferences": [{"apiVersion": "apps/v1", "blockOwnerDeletion": True,
                                         "controller": True, "kind": pod.owner[0],
                                         "name": pod.owner[1], "uid": uid("owner/" + pod.owner[1])}],
                    "resourceVersion": resource_version("pod/" + pod.uid), "uid": pod.uid}
        if pod.owner[0] == "ReplicaSet":
            metadata["generateName"] = pod.owner[1] + "-"
        elif pod.owner[0] == "DaemonSet":
            metadata["generateName"] = pod.owner[1] + "-"
        else:
            metadata["generateName"] = "db-"
        spec = {"containers": [{"image": pod.image, "imagePullPolicy": "IfNotPresent",
                                "name": container, "resources": {},
                                "terminationMessagePath": "/dev/termination-log",
                                "terminationMessagePolicy": "File",
                                "volumeMounts": [{"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                                                  "name": volume["name"], "readOnly": True}]}],
                "dnsPolicy": "ClusterFirstWithHostNet" if pod.host_network else "ClusterFirst",
                "enableServiceLinks": True, "nodeName": pod.node, "preemptionPolicy": "PreemptLowerPriority",
                "priority": 0, "restartPolicy": "Always", "schedulerName": "default-scheduler",
                "securityContext": {}, "serviceAccount": pod.sa, "serviceAccountName": pod.sa,
                "terminationGracePeriodSeconds": 30,
                "tolerations": [{"effect": "NoExecute", "key": "node.kubernetes.io/not-ready",
                                 "operator": "Exists", "tolerationSeconds": 300},
                                {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable",
                                 "operator": "Exists", "tolerationSeconds": 300}],
                "volumes": [volume]}
        if pod.host_network:
            spec["hostNetwork"] = True
        if pod.legacy_secret:
            spec["automountServiceAccountToken"] = False
        if pod.owner[0] == "StatefulSet":
            spec["hostname"] = pod.name
            spec["subdomain"] = "db"
        started = pod.created + timedelta(seconds=2)
        status = {"conditions": [{"lastProbeTime": None, "lastTransitionTime": seconds(started + timedelta(seconds=4)),
                                  "status": "True", "type": t}
                                 for t in ("PodReadyToStartContainers", "Initialized", "Ready",
                                           "ContainersReady", "PodScheduled")],
                  "containerStatuses": [container_status(
                      pod, started, {"running": {"startedAt": seconds(started + timedelta(seconds=3))}}, True)],
                  "hostIP": node.ip, "hostIPs": [{"ip": node.ip}], "phase": "Running",
                  "podIP": pod.ip, "podIPs": [{"ip": pod.ip}], "qosClass": "BestEffort",
                  "startTime": seconds(started)}
        items.append({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec,
                      "status": status})
    return kubectl_list(items)


# --------------------------------------------------------------------------------------------
# Invariants of the story, checked before anything is written
# --------------------------------------------------------------------------------------------

GRACE = timedelta(minutes=5)  # --rotation-grace default


def check_story() -> None:
    stolen = ATTACK["stolen"]
    chain = CREDS.tokens[VICTIM.key]
    successor = chain[chain.index(stolen) + 1]
    assert stolen.mint_audit_id, "the stolen JTI's mint is in the log"
    assert stolen.in_use_from < ATTACK["exec_time"] < successor.iat, "exec reads the current JTI"
    early = [r for r in ATTACK["replays"] if r[0] - ATTACK["exec_time"] <= timedelta(minutes=30)]
    late = [r for r in ATTACK["replays"] if r not in early]
    assert len(early) == 6 and len(late) == 2
    assert all(r[0] > successor.in_use_from + GRACE for r in late), "late replays are superseded"
    assert all(r[7] for r in late) and not any(r[7] for r in early), "stale-token only on late ones"
    # Every mint in the log falls inside its pod's life.
    for pod in PODS.values():
        for tok in CREDS.tokens.get(pod.key, []):
            assert not tok.mint_audit_id or pod.created <= tok.iat < (pod.deleted or LOG_END), pod.key
    # Every pod's rotation overlap is shorter than the grace period.
    for key, toks in CREDS.tokens.items():
        for tok in toks[1:]:
            assert tok.in_use_from - tok.iat < timedelta(minutes=1), key
    # The address reuse: 10.244.2.21 changes hands with a gap, never overlapping.
    assert WEB_HPA.ip == CART.ip and WEB_HPA.deleted < CART.created
    assert DB_OLD.name == DB_NEW.name and DB_OLD.uid != DB_NEW.uid and DB_OLD.ip != DB_NEW.ip
    # At least one watch straddles a rotation by more than the grace period (see
    # benign_watch_chain): opened with JTI n, completed > 5 min after the pod's first use of n+1.
    first_use: dict = {}
    for _, _, ev in sorted(LOG.events, key=lambda e: e[2]["requestReceivedTimestamp"]):
        jti = ev["user"].get("extra", {}).get("authentication.kubernetes.io/credential-id", [""])[0]
        first_use.setdefault(jti, ev["requestReceivedTimestamp"])
    straddles = 0
    for key, toks in CREDS.tokens.items():
        for old, new in zip(toks, toks[1:]):
            for stage_t, _, ev in LOG.events:
                if (ev["verb"] == "watch" and ev["stage"] == "ResponseComplete"
                        and ev["user"]["extra"]["authentication.kubernetes.io/credential-id"][0] == "JTI=" + old.jti
                        and "JTI=" + new.jti in first_use and stage_t <= LOG_END
                        and micro(stage_t - GRACE) > first_use["JTI=" + new.jti]):
                    straddles += 1
    assert straddles >= 1, "a watch outlives its JTI's rotation"
    ATTACK["straddling_watches"] = straddles
    # Every request starts inside the log's window (its last stages may fall after it).
    assert all(LOG_START <= datetime.fromisoformat(ev["requestReceivedTimestamp"][:-1] + "+00:00")
               < LOG_END for _, _, ev in LOG.events)


# --------------------------------------------------------------------------------------------


def main() -> None:
    plan_pod_tokens()
    benign_workload_traffic()
    benign_lifecycle()
    benign_people()
    benign_legacy_exporter()
    attack_developer_session()
    attack_legacy_token()
    attack_exec_and_replay()
    check_story()

    lines = LOG.write(HERE / "audit.log")
    write_json(HERE / "nodes.json", nodes_dump())
    write_json(HERE / "serviceaccounts.json", serviceaccounts_dump())
    write_json(HERE / "sa_secrets.json", sa_secrets_dump())
    write_json(HERE / "pods.json", pods_dump())

    # The identifiers README.md quotes.
    stolen = ATTACK["stolen"]
    chain = CREDS.tokens[VICTIM.key]
    print(f"audit.log: {lines} lines, {LOG.count} requests")
    for pod in PODS.values():
        print(f"pod {pod.namespace}/{pod.name} uid={pod.uid} node={pod.node} ip={pod.ip} "
              f"client_ip={pod.client_ip}")
    for node in NODES.values():
        print(f"node {node.name} uid={node.uid} ip={node.ip}")
    print(f"victim JTIs: " + ", ".join(f"{t.jti} (minted {micro(t.iat)}, in use {micro(t.in_use_from)})"
                                      for t in chain))
    print(f"stolen JTI: {stolen.jti}, mint auditID {stolen.mint_audit_id}")
    print(f"exec auditID {ATTACK['exec']} at {micro(ATTACK['exec_time'])}")
    for r in ATTACK["replays"]:
        print("replay", micro(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], "stale" if r[7] else "")
    print("legacy pod uses:", ATTACK["legacy_pod_uses"], "legacy replays:",
          [micro(t) for t in ATTACK["legacy_replay_times"]])
    print("secret reads by the stolen session:", ATTACK["secret_list"], ATTACK["secret_get"],
          [micro(t) for t in ATTACK["secret_read_times"]])
    print("watches completing > 5 min after their JTI was superseded:", ATTACK["straddling_watches"])
    print("SA uids:", {k: v.uid for k, v in SERVICE_ACCOUNTS.items()
                       if k in ("payments/api", "monitoring/legacy-exporter")})


if __name__ == "__main__":
    main()
