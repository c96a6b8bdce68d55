#!/usr/bin/env bash
# The repository stands alone: no tracked file may cite documents a clone does not have. The
# design contract is docs/design.md and the Kubernetes facts are docs/kubernetes.md; this fails,
# listing every offending line, when a tracked file cites the design or the facts by the names
# they had outside the repository, or a path into a sibling `shared` directory.
# integration-tests/tests/docs_stand_alone.rs checks the same under `cargo test`, and also that
# every section of the two documents a file cites exists.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Built from pieces so that this script does not match itself.
d=DESIGN
k=k8s-token
pattern="\.\./shared|${d} §|${d}\.md|${k}-facts"

set +e
offenders=$(git grep -n -I -E -e "$pattern" -- .)
rc=$?
set -e
case $rc in
    0)
        printf '%s\n' "$offenders" >&2
        echo "standalone-docs: the lines above cite documents outside the repository; cite docs/design.md or docs/kubernetes.md instead" >&2
        exit 1
        ;;
    1)
        echo "standalone-docs: no tracked file cites documents outside the repository"
        ;;
    *)
        echo "standalone-docs: git grep failed (status $rc)" >&2
        exit "$rc"
        ;;
esac
