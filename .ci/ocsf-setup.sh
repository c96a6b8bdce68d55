#!/usr/bin/env bash
# The OCSF 1.3.0 schema that correlator/tests/ocsf_schema.rs validates every OCSF finding against.
#
# Source: the ocsf-json-schema wheel on PyPI, which bundles the compiled schema of each OCSF
# release exactly as the OCSF schema server exports it (`/1.3.0/export/schema`: every class with
# its `extends` chain resolved, every object, the dictionary's types, and which profile brings
# each attribute). The Go module proxy does not serve github.com/ocsf/ocsf-schema, and the
# compiled form is what a validator needs anyway. The file is checked against a pinned SHA-256.
#
# It lands in $TOKENTRAIL_OCSF_SCHEMA_DIR (default ~/.cache/tokentrail/ocsf-schema) and is reused:
# a second run does nothing and needs no network. Idempotent; safe to run by hand.
set -euo pipefail

WHEEL_VERSION=1.2.0
OCSF_VERSION=1.3.0
SHA256=161ae7ed5afd5cb942afe4175d9c05a17fe8af1645ef763a0c5ed4201ccc9e64

dir=${TOKENTRAIL_OCSF_SCHEMA_DIR:-$HOME/.cache/tokentrail/ocsf-schema}
stamp="$dir/.complete-$WHEEL_VERSION-$OCSF_VERSION"
if [ -e "$stamp" ]; then
    echo "ocsf-setup: OCSF $OCSF_VERSION schema ready in $dir"
    exit 0
fi
command -v python3 >/dev/null || { echo "ocsf-setup: python3 is needed" >&2; exit 1; }
mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "ocsf-setup: OCSF $OCSF_VERSION schema from ocsf-json-schema $WHEEL_VERSION"
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$work" "ocsf-json-schema==$WHEEL_VERSION"
python3 - "$work"/*.whl "$dir" "$OCSF_VERSION" <<'PY'
import sys, zipfile
wheel, out, version = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for name, target in [(f"ocsf_json_schema/ocsf/{version}.json", f"{version}.json"),
                         ("ocsf_json_schema/ocsf/LICENSE.txt", "LICENSE.txt")]:
        with open(f"{out}/{target}", "wb") as f:
            f.write(z.read(name))
PY
echo "$SHA256  $dir/$OCSF_VERSION.json" | sha256sum --check --quiet
touch "$stamp"
echo "ocsf-setup: OCSF $OCSF_VERSION schema ready in $dir"
