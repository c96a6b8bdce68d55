#!/usr/bin/env python3
"""A small generated incident for the order-independence tests (integration-tests/tests/order.rs).

    python3 bench/generate_incident.py --out DIR

Runs bench/generate_audit_log.py (the benchmark's cluster: 40 nodes, ~2,900 pods, six hours,
every planted replay: off-cluster, another workload's address, after a rotation, after an exec,
after the pod's deletion, a legacy token, a forged mint) and keeps only what the planted stories
are made of: every request by, from or about their service accounts, pods and addresses, the
TokenRequests for those accounts, and the pods of those accounts in pods.json (nodes.json and
sa_secrets.json whole). About 3,000 audit lines instead of 150,000, and `tokentrail analyze`
gives the same findings on both (checked when this was written: 22 of 22, by rule, service
account, credential and client address). Deterministic: the generator is seeded.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, type=Path, help="output directory")
    ap.add_argument("--events", default=20_000, type=int, help="the generator's --events")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        full = Path(tmp)
        subprocess.run(
            [sys.executable, str(HERE / "generate_audit_log.py"), "--out", str(full), "--events", str(args.events)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        planted = (full / "audit.log.planted.txt").read_text()
        ips = set(re.findall(r"\b(?:\d+\.){3}\d+\b", planted))
        pods = set(re.findall(r"(team-\d+/[a-z0-9-]+)", planted))
        accounts = {("monitoring", "legacy-metrics")}
        for p in pods:
            ns, name = p.split("/")
            accounts.add((ns, name.rsplit("-", 2)[0]))
        users = {f"system:serviceaccount:{ns}:{sa}" for ns, sa in accounts}
        pod_names = {p.split("/")[1] for p in pods}
        with open(full / "audit.log") as src, open(args.out / "audit.log", "w") as dst:
            for line in src:
                e = json.loads(line)
                ref = e.get("objectRef") or {}
                keep = (
                    e.get("user", {}).get("username", "") in users
                    or any(ip in ips for ip in e.get("sourceIPs", []))
                    or ref.get("name", "") in pod_names
                    or any(p in e.get("requestURI", "") for p in pod_names)
                    or (
                        ref.get("resource") == "serviceaccounts"
                        and ref.get("subresource") == "token"
                        and (ref.get("namespace"), ref.get("name")) in accounts
                    )
                )
                if keep:
                    dst.write(line)
        inventory = json.loads((full / "pods.json").read_text())
        inventory["items"] = [
            p for p in inventory["items"]
            if (p["metadata"]["namespace"], p["spec"].get("serviceAccountName")) in accounts
        ]
        (args.out / "pods.json").write_text(json.dumps(inventory, indent=1))
        for name in ("nodes.json", "sa_secrets.json"):
            (args.out / name).write_bytes((full / name).read_bytes())
    return 0


if __name__ == "__main__":
    sys.exit(main())
