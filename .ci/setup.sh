#!/usr/bin/env bash
# Installs what the test suite needs beyond Rust, each step idempotent and cached (a second run
# takes seconds and needs no network): the Apache Kafka broker's jars (Maven), kube-apiserver,
# kube-controller-manager and etcd (Go module proxy), Chromium (Debian) for the HTML report's
# rendering test, helm, kubeconform and the schemas for the deploy/ test, the OCSF schema
# the OCSF findings are validated against (PyPI), promtool (Debian) for the alert rules' tests,
# and buildah, mmdebstrap, cargo-cyclonedx (crates.io) and the image's local base for the image's.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

bash kafka-setup.sh
bash kube-setup.sh
bash chromium-setup.sh
bash deploy-setup.sh
bash ocsf-setup.sh
bash promtool-setup.sh
bash image-setup.sh
