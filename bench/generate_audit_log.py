#!/usr/bin/env python3
"""Generate a large, realistic Kubernetes audit log (and the matching kubectl dumps) for the
`tokentrail analyze` benchmark.

    python3 bench/generate_audit_log.py --out bench-out               # ~1M events, 1.3 GB
    python3 bench/generate_audit_log.py --out bench-out --events 250000 --name audit-250k.log

What it writes into --out:
  <name> (default audit.log)  audit.k8s.io/v1 events, one per line, time-ordered, 6 hours
  nodes.json, pods.json,      `kubectl get ... -o json` dumps taken at the end of the window
  sa_secrets.json             (pods alive then; the legacy token Secret, with a fake token)
  <name>.planted.txt          the replays planted in the log, for checking the findings

The cluster (40 nodes, ~2,400 pods in 40 namespaces, kube-controller-manager controllers) and
everything that depends on it (pod churn, kubelet token mints and rotations, planted replays)
come from one seeded generator; the bulk of ordinary requests comes from a second one, scaled by
--events. So a 250k-event log and a 1M-event log describe the same cluster, pods and
credentials, and differ only in request rate: the right pair for showing that memory grows with
pods and credentials, not with events.

What the log holds, roughly by share of lines:
  * pods' own requests with their pod-bound tokens (get/list/update/patch/create, Secret reads
    logged at two stages, watches logged at ResponseStarted and ResponseComplete);
  * kubelets: node Lease renewals every 10 s, TokenRequests at each ~48 min rotation (Request
    level, with boundObjectRef), pods/status patches (Request level, with the pod's address);
  * control plane: leader-election Leases, controllers with unbound tokens, pod lifecycle
    (create with the pod spec as requestObject, binding, deletion, address reuse);
  * people: kubectl reads, logs, exec, ConfigMap updates whose requestObject is 0.5-40 KiB, so
    line sizes vary the way they do in a real log;
  * a few planted replays (stolen tokens used off-cluster, from another pod, after rotation,
    after an exec, after deletion; a legacy token; a forged mint), listed in <name>.planted.txt.

Speed: events are rendered with %-formatting into a handful of templates, never json.dumps per
event; the per-credential `user` object is rendered once and reused. About 10-15 s per
million events on one core. Deterministic: the same arguments give the same bytes.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import hashlib
import heapq
import json
import math
import random
import sys
import time
from pathlib import Path

# ------------------------------------------------------------------------------------------
# Shape of the cluster and of the day
# ------------------------------------------------------------------------------------------

SEED = 20260310
HOURS = 6
START_HOUR = 6  # the window is 06:00-12:00 UTC on 2026-03-10
WINDOW_US = HOURS * 3600 * 1_000_000
NODES = 40
NAMESPACES = 40
CHURN_SHARE = 0.12  # pods replaced (rollouts, rescheduling) during the window
KUBELET_TTL = 3607
ROTATION_S = 0.8 * KUBELET_TTL  # the kubelet refreshes at 80% of the TTL
K8S = "v1.32.3"
KUBELET_UA = f"kubelet/{K8S} (linux/amd64) kubernetes/32cc146"
KCM_UA = f"kube-controller-manager/{K8S} (linux/amd64) kubernetes/32cc146"
CONTROLLERS = ["replicaset-controller", "deployment-controller", "endpointslice-controller",
               "statefulset-controller", "daemon-set-controller", "job-controller",
               "horizontal-pod-autoscaler", "generic-garbage-collector", "namespace-controller",
               "resourcequota-controller"]
LOOPBACK = '["127.0.0.1"]'


def us_to_ts(us: int) -> str:
    """MicroTime inside the window, formatted without datetime (the hot path)."""
    s, frac = divmod(us, 1_000_000)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return "2026-03-10T%02d:%02d:%02d.%06dZ" % (START_HOUR + h, m, sec, frac)


def us_to_seconds(us: int) -> str:
    return us_to_ts(us)[:19] + "Z"


def new_uuid(rng: random.Random) -> str:
    """A UUIDv4 string from the generator's bits (uuid.uuid4 would not be reproducible)."""
    h = "%032x" % rng.getrandbits(128)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def stable_uuid(label: str) -> str:
    h = hashlib.sha256(label.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


def jstr(s: str) -> str:
    return json.dumps(s)


# ------------------------------------------------------------------------------------------
# Event templates. Field order is the apiserver's (audit/v1 Event struct order); annotation
# keys are sorted as Go's encoding/json sorts map keys.
# ------------------------------------------------------------------------------------------

# An event is PRE + stage + POST + response/body + TAIL. The parts are joined by concatenation,
# never formatted twice: URIs carry '%' (fieldSelector=metadata.name%3D...).
PRE = '{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"%s","auditID":"%s","stage":"'
POST = '","requestURI":%s,"verb":"%s","user":%s,"sourceIPs":%s,"userAgent":%s,"objectRef":%s'
RESPONSE = ',"responseStatus":%s'
BODY = ',"requestObject":%s'
TAIL = ',"requestReceivedTimestamp":"%s","stageTimestamp":"%s","annotations":%s}\n'
TAIL_NO_ANN = ',"requestReceivedTimestamp":"%s","stageTimestamp":"%s"}\n'
OK = {c: '{"metadata":{},"code":%d}' % c for c in (101, 200, 201)}


def allow(reason: str) -> str:
    return '{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":%s}' % jstr(reason)


def forbid() -> str:
    return '{"authorization.k8s.io/decision":"forbid","authorization.k8s.io/reason":""}'


def forbidden_status(verb: str, resource: str, ns: str | None, username: str) -> str:
    where = f' in the namespace "{ns}"' if ns else " at the cluster scope"
    return json.dumps({"metadata": {}, "status": "Failure",
                       "message": f'{resource} is forbidden: User "{username}" cannot {verb} '
                                  f'resource "{resource}" in API group ""{where}',
                       "reason": "Forbidden", "details": {"kind": resource}, "code": 403},
                      separators=(",", ":"))


def objref(resource: str, ns: str | None = None, name: str | None = None, group: str = "",
           sub: str | None = None) -> str:
    ref = {"resource": resource}
    if ns:
        ref["namespace"] = ns
    if name:
        ref["name"] = name
    if group:
        ref["apiGroup"] = group
    ref["apiVersion"] = "v1"
    if sub:
        ref["subresource"] = sub
    return json.dumps(ref, separators=(",", ":"))


def uri(resource: str, ns: str | None = None, name: str | None = None, group: str = "",
        sub: str | None = None, query: str = "") -> str:
    path = ("/api/v1" if not group else f"/apis/{group}/v1") + (f"/namespaces/{ns}" if ns else "")
    path += "/" + resource + (("/" + name) if name else "") + (("/" + sub) if sub else "")
    return jstr(path + (("?" + query) if query else ""))


class Request:
    """A request shape a client makes over and over: everything but who, when and the id."""

    __slots__ = ("verb", "uri", "objref", "code", "status", "watch", "stages_rr", "body", "level",
                 "reason")

    def __init__(self, verb: str, resource: str, ns: str | None = None, name: str | None = None,
                 group: str = "", sub: str | None = None, query: str = "", code: int = 200,
                 body: str | None = None, reason: str = "", username: str = ""):
        self.verb = verb
        self.uri = uri(resource, ns, name, group, sub, query)
        self.objref = objref(resource, ns, name, group, sub)
        self.code = code
        self.status = forbidden_status(verb, resource, ns, username) if code == 403 else OK[code]
        self.watch = verb == "watch" or sub in ("exec", "log")
        # The policy keeps RequestReceived for Secrets and interactive access only.
        self.stages_rr = resource == "secrets" or sub in ("exec", "attach", "portforward")
        self.body = body
        self.level = "Request" if body is not None else "Metadata"
        self.reason = reason


def render(out: list, heap: list, seq: list, aid: str, t: int, user: str, ips: str, ua: str,
           req: Request, extra_ann: str = "", duration_us: int = 3000) -> None:
    """Append the lines of one request to `out`; long-running requests schedule their
    ResponseComplete line on `heap` for when they end."""
    ann = forbid() if req.code == 403 else allow(req.reason)
    if extra_ann:
        ann = "{" + extra_ann + "," + ann[1:]
    pre = PRE % (req.level, aid)
    post = POST % (req.uri, req.verb, user, ips, ua, req.objref)
    ts = us_to_ts(t)
    if req.stages_rr:
        # Authentication annotations only: authorization runs after the RequestReceived stage.
        tail = TAIL % (ts, ts, "{" + extra_ann + "}") if extra_ann else TAIL_NO_ANN % (ts, ts)
        out.append((t, pre + "RequestReceived" + post + tail))
    resp = RESPONSE % req.status + (BODY % req.body if req.body is not None else "")
    if req.watch and req.code < 400:
        t1 = t + 2000
        out.append((t1, pre + "ResponseStarted" + post + resp + TAIL % (ts, us_to_ts(t1), ann)))
    end = t + duration_us
    line = pre + "ResponseComplete" + post + resp + TAIL % (ts, us_to_ts(end), ann)
    if req.watch:
        seq[0] += 1
        heapq.heappush(heap, (end, seq[0], "line", line))
    else:
        out.append((end, line))


# ------------------------------------------------------------------------------------------
# The cluster
# ------------------------------------------------------------------------------------------


class Node:
    __slots__ = ("name", "ip", "cidr", "uid", "user", "ips", "next_host", "freed")

    def __init__(self, i: int):
        self.name = f"ip-10-0-{i // 200}-{10 + i % 200}.ec2.internal"
        self.ip = f"10.0.{i // 200}.{10 + i % 200}"
        self.cidr = f"10.{64 + i // 256}.{i % 256}.0/24"
        self.uid = stable_uuid("node/" + self.name)
        self.user = json.dumps({"username": f"system:node:{self.name}",
                                "groups": ["system:nodes", "system:authenticated"],
                                "extra": {"authentication.kubernetes.io/credential-id": [
                                    "X509SHA256=" + hashlib.sha256(self.name.encode()).hexdigest()]}},
                               separators=(",", ":"))
        self.ips = '["%s"]' % self.ip
        self.next_host = 2
        self.freed: list = []  # addresses of removed pods, reused first-in first-out

    def allocate(self, rng: random.Random) -> str:
        # host-local IPAM hands out fresh addresses, but a busy node cycles back to freed ones.
        if self.freed and rng.random() < 0.5:
            return self.freed.pop(0)
        self.next_host += 1
        return self.cidr.rsplit(".", 1)[0] + "." + str(self.next_host)


class App:
    """A workload: its namespace, ServiceAccount, and the requests its pods make."""

    def __init__(self, ns: str, name: str, kind: str, replicas: int, requests: list, weight: float,
                 ua: str, host_network: bool = False, legacy_secret: str | None = None):
        self.ns, self.name, self.kind, self.replicas = ns, name, kind, replicas
        self.sa = name
        self.sa_uid = stable_uuid(f"sa/{ns}/{name}")
        self.username = f"system:serviceaccount:{ns}:{name}"
        self.groups = ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"]
        self.requests, self.weight, self.ua = requests, weight, jstr(ua)
        self.host_network, self.legacy_secret = host_network, legacy_secret
        self.rs_hash = hashlib.sha256(f"{ns}/{name}".encode()).hexdigest()[:10]
        self.create_body = pod_spec_body(self)


class Pod:
    __slots__ = ("app", "name", "uid", "node", "ip", "client_ips", "created", "deleted", "switches",
                 "mints", "jtis", "users", "index")

    def __init__(self, app: App, name: str, node: Node, ip: str, created: int):
        self.app, self.name, self.node, self.ip, self.created = app, name, node, ip, created
        self.uid = stable_uuid(f"pod/{app.ns}/{name}/{created}")
        self.client_ips = node.ips if app.host_network else '["%s"]' % ip
        self.deleted: int | None = None
        self.mints: list = []  # in-window mint times
        self.switches: list = []  # when the pod started using each JTI (index 0: before window)
        self.jtis: list = []
        self.users: dict = {}  # JTI index -> rendered `user`
        self.index = -1  # position in the alive list

    def user(self, k: int) -> str:
        u = self.users.get(k)
        if u is None:
            a = self.app
            if a.legacy_secret:
                u = json.dumps({"username": a.username, "uid": a.sa_uid, "groups": a.groups},
                               separators=(",", ":"))
            else:
                u = json.dumps({"username": a.username, "uid": a.sa_uid, "groups": a.groups, "extra": {
                    "authentication.kubernetes.io/credential-id": ["JTI=" + self.jtis[k]],
                    "authentication.kubernetes.io/node-name": [self.node.name],
                    "authentication.kubernetes.io/node-uid": [self.node.uid],
                    "authentication.kubernetes.io/pod-name": [self.name],
                    "authentication.kubernetes.io/pod-uid": [self.uid]}}, separators=(",", ":"))
            self.users[k] = u
        return u

    def jti_at(self, t: int) -> int:
        return bisect.bisect_right(self.switches, t) - 1


def pod_spec_body(app: App) -> str:
    """The Pod a ReplicaSet controller POSTs (generateName, no uid yet): 2-4 KiB, as real
    specs with env, probes and the injected token volume are."""
    env = [{"name": f"{app.name.upper().replace('-', '_')}_SETTING_{i}", "value": f"value-{i}-" + "x" * (i * 7 % 40)}
           for i in range(12)]
    spec = {"kind": "Pod", "apiVersion": "v1",
            "metadata": {"generateName": f"{app.name}-{app.rs_hash[:9]}-", "namespace": app.ns,
                         "creationTimestamp": None,
                         "labels": {"app": app.name, "pod-template-hash": app.rs_hash[:9]},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                              "name": f"{app.name}-{app.rs_hash[:9]}",
                                              "uid": stable_uuid("rs/" + app.name + app.ns),
                                              "controller": True, "blockOwnerDeletion": True}]},
            "spec": {"volumes": [{"name": "kube-api-access-" + app.rs_hash[:5], "projected": {
                "sources": [{"serviceAccountToken": {"expirationSeconds": KUBELET_TTL, "path": "token"}},
                            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                                "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}],
                "defaultMode": 420}}],
                "containers": [{"name": app.name, "image": f"registry.example/{app.ns}/{app.name}:1.{len(app.name)}.0",
                                "ports": [{"containerPort": 8080, "protocol": "TCP"}], "env": env,
                                "resources": {"limits": {"memory": "512Mi"}, "requests": {"cpu": "100m", "memory": "256Mi"}},
                                "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
                                                  "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1,
                                                  "failureThreshold": 3},
                                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080, "scheme": "HTTP"},
                                                   "timeoutSeconds": 1, "periodSeconds": 5, "successThreshold": 1,
                                                   "failureThreshold": 3},
                                "volumeMounts": [{"name": "kube-api-access-" + app.rs_hash[:5], "readOnly": True,
                                                  "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
                                "terminationMessagePath": "/dev/termination-log",
                                "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}],
                "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
                "serviceAccountName": app.sa, "serviceAccount": app.sa, "securityContext": {},
                "schedulerName": "default-scheduler"},
            "status": {}}
    return json.dumps(spec, separators=(",", ":"))


ARCHETYPES = {
    # name -> (share of background requests per pod, requests(ns, app) -> [(weight, Request)])
    "api": lambda ns, a: [(5, Request("get", "configmaps", ns, f"{a}-config")),
                          (3, Request("get", "leases", ns, f"{a}-leader", "coordination.k8s.io")),
                          (1, Request("update", "leases", ns, f"{a}-leader", "coordination.k8s.io")),
                          (1, Request("get", "secrets", ns, f"{a}-db"))],
    "web": lambda ns, a: [(6, Request("get", "configmaps", ns, f"{a}-flags")),
                          (2, Request("list", "endpoints", ns, query="limit=500", code=403)),
                          (1, Request("watch", "configmaps", ns, query=f"fieldSelector=metadata.name%3D{a}-flags&watch=true"))],
    "operator": lambda ns, a: [(4, Request("list", "pods", ns, query="labelSelector=app%3D" + a + "&limit=500")),
                               (3, Request("patch", "widgets", ns, f"{a}-main", "example.com", "status")),
                               (2, Request("create", "events", ns, code=201)),
                               (1, Request("watch", "pods", ns, query="allowWatchBookmarks=true&timeoutSeconds=420&watch=true"))],
    "worker": lambda ns, a: [(4, Request("get", "configmaps", ns, f"{a}-jobs")),
                             (2, Request("update", "leases", ns, f"{a}-shard", "coordination.k8s.io")),
                             (1, Request("get", "secrets", ns, f"{a}-queue-credentials"))],
}


class Cluster:
    """Nodes, apps, pods and credentials, all from the cluster generator."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.nodes = [Node(i) for i in range(NODES)]
        self.apps: list = []
        self.namespaces = [f"team-{i:02d}" for i in range(NAMESPACES)]
        names = ["checkout", "cart", "search", "ledger", "billing", "catalog", "notify", "auth",
                 "profile", "orders", "inventory", "pricing", "reports", "media", "gateway"]
        for ns in self.namespaces:
            for j in range(5):
                app = names[int(rng.random() * len(names))] + ("" if j == 0 else f"-{j}")
                arch = list(ARCHETYPES)[int(rng.random() * len(ARCHETYPES))]
                username = f"system:serviceaccount:{ns}:{app}"
                reqs = ARCHETYPES[arch](ns, app)
                for _, r in reqs:
                    r.reason = f'RBAC: allowed by RoleBinding "{app}/{ns}" of Role "{app}" to ServiceAccount "{app}/{ns}"'
                    if r.code == 403:
                        r.status = forbidden_status(r.verb, "endpoints", ns, username)
                self.apps.append(App(ns, app, "Deployment", 2 + int(rng.random() * 22), reqs,
                                     1.0, f"{app}/1.{j}.0 (linux/amd64) kubernetes/$Format"))
        ds_reqs = [(3, Request("create", "tokenreviews", group="authentication.k8s.io", code=201)),
                   (3, Request("create", "subjectaccessreviews", group="authorization.k8s.io", code=201))]
        for _, r in ds_reqs:
            r.reason = ('RBAC: allowed by ClusterRoleBinding "node-exporter" of ClusterRole '
                        '"node-exporter" to ServiceAccount "node-exporter/monitoring"')
        self.apps.append(App("monitoring", "node-exporter", "DaemonSet", NODES, ds_reqs, 0.3,
                             "kube-rbac-proxy/v0.18.1 (linux/amd64) kubernetes/$Format", host_network=True))
        legacy_reqs = [(1, Request("list", "pods", query="limit=500"))]
        legacy_reqs[0][1].reason = ('RBAC: allowed by ClusterRoleBinding "legacy-metrics" of ClusterRole '
                                 '"legacy-metrics" to ServiceAccount "legacy-metrics/monitoring"')
        self.legacy = App("monitoring", "legacy-metrics", "Deployment", 1, legacy_reqs, 0.5,
                          "legacy-metrics/0.4.1 (linux/amd64) kubernetes/$Format",
                          legacy_secret="legacy-metrics-token-q7x2c")
        self.apps.append(self.legacy)
        self.pods: list = []
        self.alive: list = []
        for app in self.apps:
            nodes = self.nodes if app.kind == "DaemonSet" else None
            for r in range(app.replicas):
                node = nodes[r] if nodes else self.nodes[int(rng.random() * NODES)]
                ip = node.ip if app.host_network else node.allocate(rng)
                created = -int(rng.uniform(3600, 30 * 86400) * 1e6)  # before the window
                pod = self.new_pod(app, node, ip, created)
                self.activate(pod)

    def new_pod(self, app: App, node: Node, ip: str, created: int) -> Pod:
        rng = self.rng
        if app.kind == "DaemonSet":
            name = f"{app.name}-{rng.getrandbits(25):x}"[:len(app.name) + 6]
        else:
            name = f"{app.name}-{app.rs_hash[:9]}-" + "".join(
                "bcdfghjklmnpqrstvwxz2456789"[int(rng.random() * 27)] for _ in range(5))
        pod = Pod(app, name, node, ip, created)
        if not app.legacy_secret:
            # The first JTI: minted at creation, or (pods older than the window) at a random
            # phase of the rotation before the window starts.
            if created < 0:
                first = -int(rng.uniform(0, ROTATION_S) * 1e6)
            else:
                first = created + int(rng.uniform(1.2, 1.9) * 1e6)
            pod.jtis.append(new_uuid(rng))
            pod.switches.append(-(1 << 62) if created < 0 else first)
            if first >= 0:
                pod.mints.append(first)
            t = first
            while True:
                t += int((ROTATION_S - rng.uniform(0, 10) + rng.uniform(15, 95)) * 1e6)
                if t >= WINDOW_US:
                    break
                pod.mints.append(t)
                pod.jtis.append(new_uuid(rng))
                pod.switches.append(t + int(rng.uniform(5, 58) * 1e6))  # client-go re-reads each minute
        self.pods.append(pod)
        return pod

    def activate(self, pod: Pod) -> None:
        pod.index = len(self.alive)
        self.alive.append(pod)

    def deactivate(self, pod: Pod) -> None:
        last = self.alive.pop()
        if last is not pod:
            self.alive[pod.index] = last
            last.index = pod.index
        pod.index = -1


# ------------------------------------------------------------------------------------------
# The generator
# ------------------------------------------------------------------------------------------


class Generator:
    def __init__(self, events: int):
        self.crng = random.Random(SEED)  # cluster, lifecycle, planted replays
        self.brng = random.Random(SEED + 1)  # the bulk of ordinary requests
        self.cluster = Cluster(self.crng)
        self.heap: list = []  # (time, seq, kind, payload): scheduled work, in time order
        self.seq = [0]
        self.lines = 0
        self.planted: list = []
        self.churn: dict = {}  # pod -> when a rollout replaces it
        self.leases: dict = {}
        self.target = events
        self.kcm_user = json.dumps({"username": "system:kube-controller-manager", "groups": ["system:authenticated"],
                                    "extra": {"authentication.kubernetes.io/credential-id": [
                                        "X509SHA256=" + hashlib.sha256(b"kcm").hexdigest()]}}, separators=(",", ":"))
        self.sched_user = json.dumps({"username": "system:kube-scheduler", "groups": ["system:authenticated"],
                                      "extra": {"authentication.kubernetes.io/credential-id": [
                                          "X509SHA256=" + hashlib.sha256(b"sched").hexdigest()]}}, separators=(",", ":"))
        self.controllers = {c: self._controller(c) for c in CONTROLLERS}
        self.people = [self._person(f"dev{i:02d}@example.com", f"192.0.2.{20 + i}") for i in range(12)]
        self.cm_bodies = self._configmap_bodies()
        self._schedule_cluster_events()
        self._plant_replays()

    # -- schedule -------------------------------------------------------------------------

    def push(self, t: int, kind: str, payload) -> None:
        self.seq[0] += 1
        heapq.heappush(self.heap, (t, self.seq[0], kind, payload))

    def _schedule_cluster_events(self) -> None:
        rng = self.crng
        for pod in list(self.cluster.pods):
            for k, t in enumerate(pod.mints):
                self.push(t, "mint", (pod, k if pod.created >= 0 else k + 1))
            self.schedule_first_uses(pod)
            if pod.app.kind == "Deployment" and not pod.app.legacy_secret and rng.random() < CHURN_SHARE:
                self.churn[pod] = int(rng.uniform(0.02, 0.97) * WINDOW_US)
                self.push(self.churn[pod], "replace", pod)
        for c in self.controllers.values():
            self.push(int(rng.random() * 10_000_000), "controller-use", c)
            for t in c["mints"]:
                self.push(t, "controller-mint", c)
                self.push(t + 60_000, "controller-use", c)  # the request that needed the token

    def schedule_first_uses(self, pod: Pod) -> None:
        """One request right after the pod takes up each JTI (its next call after client-go
        re-read the file). Every credential is then used whatever --events is, so logs of
        different sizes hold the same credentials and differ only in how often each is used."""
        rng = self.crng
        for k, t in enumerate(pod.switches):
            if t < 0:  # the JTI minted before the window: used in its first seconds
                nxt = pod.switches[1] if len(pod.switches) > 1 else WINDOW_US
                t = int(rng.random() * min(nxt, 30_000_000))
            elif k == 0:  # a new pod's first token: used once its containers run
                t = pod.created + int(rng.uniform(12, 17) * 1e6)
            else:
                t += int(rng.uniform(0.1, 5) * 1e6)
            if t < WINDOW_US and (k + 1 >= len(pod.switches) or t < pod.switches[k + 1]):
                self.push(t, "first-use", (pod, k))

    def _controller(self, name: str) -> dict:
        rng = self.crng
        t = -int(rng.uniform(0, 0.8 * 3600) * 1e6)
        mints, jtis = [], [new_uuid(rng)]
        switches = [-(1 << 62)]
        while True:
            t += int(0.8 * 3600 * 1e6)
            if t >= WINDOW_US:
                break
            mints.append(t)
            jtis.append(new_uuid(rng))
            switches.append(t + 30_000)
        username = f"system:serviceaccount:kube-system:{name}"
        users = [json.dumps({"username": username, "uid": stable_uuid("sa/kube-system/" + name),
                             "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system",
                                        "system:authenticated"],
                             "extra": {"authentication.kubernetes.io/credential-id": ["JTI=" + j]}},
                            separators=(",", ":")) for j in jtis]
        role = "system:controller:" + name
        reason = f'RBAC: allowed by ClusterRoleBinding "{role}" of ClusterRole "{role}" to ServiceAccount "{name}/kube-system"'
        reqs = [Request("list", "pods", query="limit=500", reason=reason),
                Request("update", "endpointslices", "team-00", "web-x7k2p", "discovery.k8s.io", reason=reason),
                Request("watch", "replicasets", group="apps", reason=reason,
                        query="allowWatchBookmarks=true&resourceVersion=91823311&timeout=8m24s&timeoutSeconds=504&watch=true"),
                Request("get", "namespaces", name="team-07", reason=reason)]
        return {"name": name, "mints": mints, "jtis": jtis, "switches": switches, "users": users,
                "reqs": reqs, "ua": jstr(f"{KCM_UA}/{username}"), "reason": reason}

    def _person(self, email: str, ip: str) -> dict:
        username = "oidc:" + email
        reason = 'RBAC: allowed by ClusterRoleBinding "developers" of ClusterRole "edit" to Group "oidc:developers"'
        return {"username": username, "ip": f'["{ip}"]', "ua": jstr("kubectl/v1.32.2 (darwin/arm64) kubernetes/67a30c0"),
                "user": json.dumps({"username": username, "groups": ["oidc:developers", "system:authenticated"]},
                                   separators=(",", ":")), "reason": reason}

    def _configmap_bodies(self) -> list:
        """ConfigMap bodies of 0.5-40 KiB (log-normal, median ~2 KiB): application configs,
        rendered dashboards, certificate bundles."""
        rng = self.crng
        bodies = []
        for i in range(64):
            size = int(min(40_000, max(500, math.exp(rng.gauss(7.6, 1.0)))))
            chunk = base64.b64encode(hashlib.sha512(str(i).encode()).digest()).decode()
            text = (chunk * (size // len(chunk) + 1))[:size]
            bodies.append(json.dumps({"kind": "ConfigMap", "apiVersion": "v1",
                                      "metadata": {"name": f"app-config-{i}", "creationTimestamp": None},
                                      "data": {"config.yaml": text}}, separators=(",", ":")))
        return bodies

    def _plant_replays(self) -> None:
        """A few stolen-token stories in the haystack, each a handful of requests."""
        rng = self.crng
        # Victims and bystanders live through the window: a replaced pod's token stops working.
        alive = [p for p in self.cluster.alive
                 if not p.app.legacy_secret and not p.app.host_network and p not in self.churn]

        def victim() -> Pod:
            return alive[int(rng.random() * len(alive))]

        for i in range(4):  # replayed off-cluster, half of them with a forged X-Forwarded-For
            pod, t = victim(), int(rng.uniform(0.1, 0.9) * WINDOW_US)
            xff = i % 2 == 0
            self.push(t, "replay", (pod, pod.jti_at(t), f"203.0.113.{10 + i}", xff, 12))
            self.planted.append(f"token-used-off-cluster{' + xff-spoofed-source' if xff else ''}: "
                                f"{pod.app.ns}/{pod.name} from 203.0.113.{10 + i} at {us_to_ts(t)}")
        for i in range(2):  # replayed from another pod's address
            pod, other, t = victim(), victim(), int(rng.uniform(0.1, 0.9) * WINDOW_US)
            self.push(t, "replay", (pod, pod.jti_at(t), other.ip, False, 6))
            self.planted.append(f"token-used-from-other-workload: {pod.app.ns}/{pod.name} from {other.ip} "
                                f"({other.app.ns}/{other.name}) at {us_to_ts(t)}")
        pod = victim()  # used long after the pod rotated away from it
        k = max(1, pod.jti_at(int(0.3 * WINDOW_US)))
        t = pod.switches[k + 1] + 25 * 60_000_000 if k + 1 < len(pod.switches) else int(0.8 * WINDOW_US)
        self.push(t, "replay", (pod, k, "198.51.100.40", False, 4))
        self.planted.append(f"token-superseded-use + token-used-off-cluster: {pod.app.ns}/{pod.name} "
                            f"JTI={pod.jtis[k]} at {us_to_ts(t)}")
        pod, t = victim(), int(0.55 * WINDOW_US)  # exec, then the token from outside
        self.push(t, "exec", (pod, self.people[3], '["198.51.100.60"]'))
        self.push(t + 240_000_000, "replay", (pod, pod.jti_at(t + 240_000_000), "198.51.100.61", False, 5))
        self.planted.append(f"exec-then-token-use: {pod.app.ns}/{pod.name} exec at {us_to_ts(t)}")
        legacy = [p for p in self.cluster.alive if p.app.legacy_secret][0]
        t = int(0.42 * WINDOW_US)
        self.push(t, "replay", (legacy, 0, "198.51.100.77", False, 3))
        self.planted.append(f"legacy-token-foreign-ip: {legacy.app.legacy_secret} from 198.51.100.77 at {us_to_ts(t)}")
        pod, t = victim(), int(0.66 * WINDOW_US)  # a user mints a token bound to someone's pod
        self.push(t, "forged-mint", (pod, self.people[5]))
        self.planted.append(f"token-forged-mint + token-minted-by-user: {pod.app.ns}/{pod.name} at {us_to_ts(t)}")
        # A token copied off a pod that a rollout then removes: the copy fails with 401 after.
        gone = sorted((t, p.name, p) for p, t in self.churn.items() if 0.3 * WINDOW_US < t < 0.8 * WINDOW_US)[0]
        t, _, pod = gone
        self.push(t - 600_000_000, "replay", (pod, pod.jti_at(t - 600_000_000), "198.51.100.99", False, 3))
        self.push(t + 120_000_000, "revoked", (pod, "198.51.100.99", 3))
        self.planted.append(f"token-after-pod-deletion + token-used-off-cluster: {pod.app.ns}/{pod.name} "
                            f"deleted {us_to_ts(t)}, 401s from 198.51.100.99")

    # -- rendering --------------------------------------------------------------------------

    def mint(self, out: list, t: int, pod: Pod, k: int, minter_user: str | None = None,
             ips: str | None = None, ua: str | None = None) -> None:
        body = ('{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","metadata":{"creationTimestamp":null},'
                '"spec":{"audiences":null,"expirationSeconds":%d,"boundObjectRef":{"kind":"Pod","apiVersion":"v1",'
                '"name":"%s","uid":"%s"}},"status":{"token":"","expirationTimestamp":null}}') % (KUBELET_TTL, pod.name, pod.uid)
        req = Request("create", "serviceaccounts", pod.app.ns, pod.app.sa, sub="token", code=201, body=body)
        render(out, self.heap, self.seq, new_uuid(self.crng), t, minter_user or pod.node.user,
               ips or pod.node.ips, ua or jstr(KUBELET_UA), req,
               extra_ann='"authentication.kubernetes.io/issued-credential-id":"JTI=%s"' % pod.jtis[k],
               duration_us=9000)

    def status_patch(self, out: list, t: int, pod: Pod, running: bool) -> None:
        if running:
            st = ('{"$setElementOrder/conditions":[{"type":"PodReadyToStartContainers"},{"type":"Initialized"},'
                  '{"type":"Ready"},{"type":"ContainersReady"},{"type":"PodScheduled"}],"conditions":[{"lastTransitionTime":"%s",'
                  '"status":"True","type":"Ready"}],"containerStatuses":[{"containerID":"containerd://%s","image":"registry.example/%s",'
                  '"lastState":{},"name":"%s","ready":true,"restartCount":0,"started":true,"state":{"running":{"startedAt":"%s"}}}],'
                  '"phase":"Running","podIP":"%s","podIPs":[{"ip":"%s"}]}') % (
                us_to_seconds(t), hashlib.sha256(pod.uid.encode()).hexdigest(), pod.app.name, pod.app.name,
                us_to_seconds(t), pod.ip, pod.ip)
        else:
            st = ('{"conditions":[{"lastTransitionTime":"%s","reason":"PodCompleted","status":"False","type":"Ready"}],'
                  '"containerStatuses":[{"name":"%s","ready":false,"restartCount":0,"started":false,"state":{"terminated":'
                  '{"exitCode":0,"finishedAt":"%s","reason":"Completed"}}}],"phase":"Succeeded"}') % (
                us_to_seconds(t), pod.app.name, us_to_seconds(t))
        body = '{"metadata":{"uid":"%s"},"status":%s}' % (pod.uid, st)
        req = Request("patch", "pods", pod.app.ns, pod.name, sub="status", body=body)
        render(out, self.heap, self.seq, new_uuid(self.crng), t, pod.node.user, pod.node.ips, jstr(KUBELET_UA), req)

    def controller_request(self, out: list, t: int, name: str, req: Request, rng: random.Random) -> None:
        c = self.controllers[name]
        k = bisect.bisect_right(c["switches"], t) - 1
        render(out, self.heap, self.seq, new_uuid(rng), t, c["users"][k], LOOPBACK, c["ua"], req,
               duration_us=int(rng.uniform(300, 540) * 1e6) if req.watch else 4000)

    def replace(self, out: list, t: int, old: Pod) -> None:
        """A rollout step: the ReplicaSet controller deletes a pod and creates its successor,
        which may land on the address another removed pod held."""
        rng, cl = self.crng, self.cluster
        if old.index < 0:
            return
        rs = self.controllers["replicaset-controller"]["reason"]
        self.controller_request(out, t, "replicaset-controller",
                                Request("delete", "pods", old.app.ns, old.name, reason=rs), rng)
        old.deleted = t
        cl.deactivate(old)
        stop = t + int(rng.uniform(1, 25) * 1e6)
        self.status_patch(out, stop, old, running=False)
        render(out, self.heap, self.seq, new_uuid(rng), stop + 800_000, old.node.user, old.node.ips, jstr(KUBELET_UA),
               Request("delete", "pods", old.app.ns, old.name))
        old.node.freed.append(old.ip)
        node = cl.nodes[int(rng.random() * NODES)]
        created = t + int(rng.uniform(0.05, 0.5) * 1e6)
        new = cl.new_pod(old.app, node, node.allocate(rng), created)
        self.controller_request(out, created - 20_000, "replicaset-controller",
                                Request("create", "pods", old.app.ns, code=201, body=old.app.create_body, reason=rs), rng)
        render(out, self.heap, self.seq, new_uuid(rng), created + 30_000, self.sched_user, LOOPBACK,
               jstr(f"kube-scheduler/{K8S} (linux/amd64) kubernetes/32cc146/scheduler"),
               Request("create", "pods", old.app.ns, new.name, sub="binding", code=201,
                       reason='RBAC: allowed by ClusterRoleBinding "system:kube-scheduler" of ClusterRole '
                              '"system:kube-scheduler" to User "system:kube-scheduler"'))
        for k, tm in enumerate(new.mints):
            self.push(tm, "mint", (new, k))
        self.schedule_first_uses(new)
        self.push(created + int(rng.uniform(5, 9) * 1e6), "running", new)
        self.push(created + 12_000_000, "activate", new)

    def replay(self, out: list, t: int, pod: Pod, k: int, client: str, xff: bool, n: int) -> None:
        rng = self.crng
        ips = f'["{pod.ip}","{client}"]' if xff else f'["{client}"]'
        ns = pod.app.ns
        reason = pod.app.requests[0][1].reason
        menu = [Request("list", "secrets", ns, query="limit=500", reason=reason),
                Request("get", "configmaps", ns, f"{pod.app.name}-config", reason=reason),
                Request("create", "selfsubjectrulesreviews", group="authorization.k8s.io", code=201, reason=reason),
                Request("list", "nodes", code=403, username=pod.app.username)]
        for i in range(n):
            ti = t + i * int(rng.uniform(5, 50) * 1e6)
            extra = ""
            if pod.app.legacy_secret:
                extra = ('"authentication.k8s.io/legacy-token":"%s","authentication.k8s.io/legacy-token-manual-secret":"%s"'
                         % (pod.app.username, pod.app.legacy_secret))
            render(out, self.heap, self.seq, new_uuid(rng), ti, pod.user(k), ips, jstr("curl/8.5.0"), menu[i % 4], extra)

    def revoked(self, out: list, t: int, pod: Pod, client: str, n: int) -> None:
        """Failed bearer authentication: one ResponseStarted event, `user: {}`, 401."""
        for i in range(n):
            ti = t + i * 7_000_000
            ts = us_to_ts(ti)
            out.append((ti, (PRE % ("Metadata", new_uuid(self.crng))) + "ResponseStarted" + (POST % (
                uri("secrets", pod.app.ns, query="limit=500"), "list", "{}", f'["{client}"]', jstr("curl/8.5.0"),
                objref("secrets", pod.app.ns))) + (RESPONSE % '{"metadata":{},"message":"Authentication failed, '
                                                   'attempted: bearer","code":401}') + TAIL_NO_ANN % (ts, ts)))

    def handle(self, out: list, t: int, kind: str, payload) -> None:
        rng = self.crng
        if kind == "line":
            out.append((t, payload))
        elif kind == "mint":
            pod, k = payload
            if pod.deleted is None or t < pod.deleted:
                self.mint(out, t, pod, k)
        elif kind == "controller-mint":
            k = payload["mints"].index(t) + 1
            body = ('{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","metadata":{"creationTimestamp":null},'
                    '"spec":{"audiences":null,"expirationSeconds":3600,"boundObjectRef":null},'
                    '"status":{"token":"","expirationTimestamp":null}}')
            req = Request("create", "serviceaccounts", "kube-system", payload["name"], sub="token", code=201, body=body,
                          reason='RBAC: allowed by ClusterRoleBinding "system:kube-controller-manager" of ClusterRole '
                                 '"system:kube-controller-manager" to User "system:kube-controller-manager"')
            render(out, self.heap, self.seq, new_uuid(rng), t, self.kcm_user, LOOPBACK, jstr(KCM_UA + "/kube-controller-manager"),
                   req, extra_ann='"authentication.kubernetes.io/issued-credential-id":"JTI=%s"' % payload["jtis"][k])
        elif kind == "controller-use":
            self.controller_request(out, t, payload["name"], payload["reqs"][0], rng)
        elif kind == "replace":
            self.replace(out, t, payload)
        elif kind == "running":
            self.status_patch(out, t, payload, running=True)
        elif kind == "activate":
            self.cluster.activate(payload)
        elif kind == "replay":
            self.replay(out, t, *payload)
        elif kind == "revoked":
            self.revoked(out, t, *payload)
        elif kind == "first-use":
            pod, k = payload
            if pod.deleted is None or t < pod.deleted:
                req = pod.app.requests[0][1]
                render(out, self.heap, self.seq, new_uuid(rng), t, pod.user(k), pod.client_ips, pod.app.ua, req,
                       duration_us=int(rng.uniform(60, 600) * 1e6) if req.watch else 4000)
        elif kind == "exec":
            pod, person, ips = payload
            req = Request("create", "pods", pod.app.ns, pod.name, sub="exec", code=101, reason=person["reason"],
                          query=f"command=sh&container={pod.app.name}&stdin=true&stdout=true&tty=true")
            render(out, self.heap, self.seq, new_uuid(rng), t, person["user"], ips, person["ua"], req, duration_us=180_000_000)
        elif kind == "forged-mint":
            pod, person = payload
            pod.jtis.append(new_uuid(rng))
            k = len(pod.jtis) - 1
            self.mint(out, t, pod, k, person["user"], person["ip"], person["ua"])
            self.replay(out, t + 90_000_000, pod, k, "198.51.100.90", False, 4)

    def background(self, out: list, t0: int, n: int) -> None:
        """n ordinary requests spread over one minute."""
        rng, cl = self.brng, self.cluster
        alive = cl.alive
        for _ in range(n):
            t = t0 + int(rng.random() * 60_000_000)
            r = rng.random()
            if r < 0.86:  # a pod's own request
                pod = alive[int(rng.random() * len(alive))]
                if pod.app.weight < 1.0 and rng.random() > pod.app.weight:
                    continue
                reqs = pod.app.requests
                req = reqs[int(rng.random() * len(reqs))][1]
                k = 0 if pod.app.legacy_secret else pod.jti_at(t)
                extra = ""
                if pod.app.legacy_secret:
                    extra = ('"authentication.k8s.io/legacy-token":"%s","authentication.k8s.io/legacy-token-manual-secret":"%s"'
                             % (pod.app.username, pod.app.legacy_secret))
                render(out, self.heap, self.seq, new_uuid(rng), t, pod.user(k), pod.client_ips, pod.app.ua, req, extra,
                       duration_us=int(rng.uniform(60, 600) * 1e6) if req.watch else int(rng.uniform(1500, 9000)))
            elif r < 0.955:  # a controller
                name = CONTROLLERS[int(rng.random() * len(CONTROLLERS))]
                reqs = self.controllers[name]["reqs"]
                self.controller_request(out, t, name, reqs[int(rng.random() * len(reqs))], rng)
            else:  # a person: reads, logs, and ConfigMap updates with their bodies
                p = self.people[int(rng.random() * len(self.people))]
                ns = cl.namespaces[int(rng.random() * NAMESPACES)]
                r2 = rng.random()
                if r2 < 0.45:
                    body = self.cm_bodies[int(rng.random() * len(self.cm_bodies))]
                    req = Request("update", "configmaps", ns, "app-config", body=body, reason=p["reason"])
                elif r2 < 0.8:
                    req = Request("list", "pods", ns, query="limit=500", reason=p["reason"])
                else:
                    pod = alive[int(rng.random() * len(alive))]
                    req = Request("get", "pods", pod.app.ns, pod.name, sub="log", reason=p["reason"],
                                  query=f"container={pod.app.name}&tailLines=100")
                render(out, self.heap, self.seq, new_uuid(rng), t, p["user"], p["ip"], p["ua"], req)

    def periodic(self, out: list, t0: int) -> None:
        """Leader-election and node Lease renewals: constant, whatever the request rate."""
        rng = self.brng
        for i, node in enumerate(self.cluster.nodes):
            for j in range(6):  # every 10 s
                t = t0 + j * 10_000_000 + i * 211_000
                render(out, self.heap, self.seq, new_uuid(rng), t, node.user, node.ips, jstr(KUBELET_UA),
                       self._lease("kube-node-lease", node.name))
        for j in range(30):  # every 2 s, kube-controller-manager and kube-scheduler
            t = t0 + j * 2_000_000
            render(out, self.heap, self.seq, new_uuid(rng), t + 100_000, self.kcm_user, LOOPBACK,
                   jstr(KCM_UA + "/leader-election"), self._lease("kube-system", "kube-controller-manager"))
            render(out, self.heap, self.seq, new_uuid(rng), t + 900_000, self.sched_user, LOOPBACK,
                   jstr(f"kube-scheduler/{K8S} (linux/amd64) kubernetes/32cc146/leader-election"),
                   self._lease("kube-system", "kube-scheduler"))

    def _lease(self, ns: str, name: str) -> Request:
        """The same few Lease updates, built once."""
        key = (ns, name)
        if key not in self.leases:
            self.leases[key] = Request("update", "leases", ns, name, "coordination.k8s.io")
        return self.leases[key]

    def run(self, path: Path) -> None:
        minutes = HOURS * 60
        # The target counts lines. Leases, mints and lifecycle are fixed by the cluster; ordinary
        # requests fill the rest, following a mild daily swing. A request is 1-3 lines (watches
        # and Secret reads log several stages), so the count per minute is steered by what the
        # log holds so far rather than computed once.
        swing = [0.8 + 0.4 * math.sin(math.pi * m / minutes) for m in range(minutes)]
        total_swing = sum(swing)
        lines_per_request = 1.15
        carry: list = []
        with open(path, "w", buffering=1 << 22) as f:
            for m in range(minutes):
                t0, t1 = m * 60_000_000, (m + 1) * 60_000_000
                out, carry = carry, []
                self.periodic(out, t0)
                due = self.target * sum(swing[:m + 1]) / total_swing
                n = max(0, int((due - self.lines - len(out)) / lines_per_request))
                before = len(out)
                self.background(out, t0, n)
                if n:
                    lines_per_request = 0.9 * lines_per_request + 0.1 * (len(out) - before) / n
                while self.heap and self.heap[0][0] < t1:
                    t, _, kind, payload = heapq.heappop(self.heap)
                    self.handle(out, t, kind, payload)
                # Lines are written in stage-time order, as the apiserver writes them; the few
                # whose stage ends after this minute (a request started at 59.998 s) wait for
                # the next batch.
                out.sort(key=lambda e: e[0])
                cut = bisect.bisect_left(out, t1, key=lambda e: e[0]) if m + 1 < minutes else len(out)
                carry = out[cut:]
                f.write("".join(line for _, line in out[:cut]))
                self.lines += cut


# ------------------------------------------------------------------------------------------
# Inventory
# ------------------------------------------------------------------------------------------


def write_inventory(gen: Generator, out_dir: Path) -> None:
    cl = gen.cluster

    def dump(name: str, items: list) -> None:
        (out_dir / name).write_text(json.dumps({"apiVersion": "v1", "items": items, "kind": "List",
                                                "metadata": {"resourceVersion": ""}}, indent=4, sort_keys=True) + "\n")

    dump("nodes.json", [{"apiVersion": "v1", "kind": "Node",
                         "metadata": {"name": n.name, "uid": n.uid, "creationTimestamp": "2026-01-12T09:00:00Z",
                                      "labels": {"kubernetes.io/hostname": n.name}},
                         "spec": {"podCIDR": n.cidr, "podCIDRs": [n.cidr]},
                         "status": {"addresses": [{"address": n.ip, "type": "InternalIP"},
                                                  {"address": n.name, "type": "Hostname"}],
                                    "nodeInfo": {"kubeletVersion": K8S}}} for n in cl.nodes])
    pods = []
    for p in cl.alive:
        if p.app.legacy_secret:
            vol = {"name": "token", "secret": {"secretName": p.app.legacy_secret, "defaultMode": 420}}
        else:
            vol = {"name": "kube-api-access-" + p.app.rs_hash[:5], "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": KUBELET_TTL, "path": "token"}}]}}
        start = us_to_seconds(p.created) if p.created >= 0 else "2026-03-01T00:00:00Z"
        pods.append({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": p.name, "namespace": p.app.ns, "uid": p.uid, "creationTimestamp": start,
                                  "labels": {"app": p.app.name}},
                     "spec": {"nodeName": p.node.name, "serviceAccountName": p.app.sa, "hostNetwork": p.app.host_network,
                              "volumes": [vol], "containers": [{"name": p.app.name, "image": "registry.example/app"}]},
                     "status": {"phase": "Running", "hostIP": p.node.ip, "podIP": p.ip, "podIPs": [{"ip": p.ip}],
                                "startTime": start}})
    dump("pods.json", pods)
    legacy = cl.legacy
    fake_jwt = ".".join(base64.urlsafe_b64encode(s).rstrip(b"=").decode() for s in (
        b'{"alg":"RS256","kid":"bench"}',
        json.dumps({"iss": "kubernetes/serviceaccount", "sub": legacy.username,
                    "kubernetes.io/serviceaccount/secret.name": legacy.legacy_secret}).encode(),
        hashlib.sha512(b"not a signature").digest() * 4))
    dump("sa_secrets.json", [{"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
                              "metadata": {"name": legacy.legacy_secret, "namespace": legacy.ns,
                                           "uid": stable_uuid("secret/" + legacy.legacy_secret),
                                           "creationTimestamp": "2022-05-17T14:31:10Z",
                                           "annotations": {"kubernetes.io/service-account.name": legacy.sa,
                                                           "kubernetes.io/service-account.uid": legacy.sa_uid}},
                              "data": {"token": base64.b64encode(fake_jwt.encode()).decode(),
                                       "namespace": base64.b64encode(legacy.ns.encode()).decode()}}])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="bench-out", type=Path, help="output directory (default bench-out)")
    ap.add_argument("--events", default=1_000_000, type=int, help="approximate number of audit lines")
    ap.add_argument("--name", default="audit.log", help="file name of the audit log")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    gen = Generator(args.events)
    path = args.out / args.name
    tmp = path.with_name(path.name + ".tmp")  # a crashed run never leaves a half log behind
    gen.run(tmp)
    tmp.replace(path)
    write_inventory(gen, args.out)
    (args.out / (args.name + ".planted.txt")).write_text("\n".join(gen.planted) + "\n")
    size = path.stat().st_size
    print(f"{path}: {gen.lines:,} lines, {size / 1e9:.2f} GB, {len(gen.cluster.pods):,} pods "
          f"({len(gen.cluster.alive):,} alive at the end), {time.monotonic() - started:.1f} s",
          file=sys.stderr)


if __name__ == "__main__":
    main()
