#!/usr/bin/env python3
"""Writes an audit log in which every event is a new credential: N pods, each using its own
pod-bound token once, from its own address. What an attacker who wants analyze to run out of
memory sends, and the measure of the engine's state per credential.

    python3 bench/credential_flood.py --events 200000 > flood.log
    python3 bench/credential_flood.py --events 200000 --outside > spray.log

With --outside every credential is used from a routable address (198.18.0.0/15): a finding per
credential, the measure of how reports fold a flood of findings.

Deterministic: the same arguments give the same bytes.
"""
import argparse
import sys

LINE = (
    '{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a%08d-0000-4000-8000-000000000000",'
    '"stage":"ResponseComplete","requestURI":"/api/v1/namespaces/ns%d/configmaps","verb":"list",'
    '"user":{"username":"system:serviceaccount:ns%d:sa%d","uid":"u%08d-0000-4000-8000-000000000000",'
    '"groups":["system:serviceaccounts","system:authenticated"],'
    '"extra":{"authentication.kubernetes.io/credential-id":["JTI=j%08d-0000-4000-8000-000000000000"],'
    '"authentication.kubernetes.io/node-name":["node-%d"],"authentication.kubernetes.io/node-uid":["n%08d"],'
    '"authentication.kubernetes.io/pod-name":["pod-%d"],"authentication.kubernetes.io/pod-uid":["p%08d-0000-4000-8000-000000000000"]}},'
    '"sourceIPs":["%d.%d.%d.%d"],"userAgent":"app/1.0 (linux/amd64) kubernetes/$Format",'
    '"objectRef":{"resource":"configmaps","namespace":"ns%d","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},'
    '"requestReceivedTimestamp":"2026-03-10T%02d:%02d:%02d.000000Z","stageTimestamp":"2026-03-10T%02d:%02d:%02d.001000Z"}\n'
)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--outside", action="store_true", help="use every token from a routable address")
    args = ap.parse_args()
    n, first = args.events, 198 if args.outside else 10
    out = sys.stdout
    for i in range(n):
        ns, node = i % 500, i % 200
        s = i * 3600 // max(n, 1)  # spread over an hour
        h, m, sec = 8, s // 60 % 60, s % 60
        ip = (first, (18 if args.outside else 64) + (i >> 16) % 2, (i >> 8) & 255, i & 255)
        out.write(LINE % (i, ns, ns, i, i, i, node, node, i, i, *ip, ns, h, m, sec, h, m, sec))


if __name__ == "__main__":
    main()
