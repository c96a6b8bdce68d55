#!/usr/bin/env python3
"""The image's SBOM (CycloneDX 1.5 JSON): the Rust crates compiled into `tokentrail`, as
cargo-cyclonedx lists them, plus what that tool cannot see:

* librdkafka, compiled from the sources vendored in rdkafka-sys and linked statically (its
  version is rdkafka-sys's build metadata: 4.10.0+2.12.1 carries librdkafka 2.12.1);
* the Debian packages of the image's root filesystem, read from its dpkg database
  (/var/lib/dpkg/status, or distroless's /var/lib/dpkg/status.d/), with the distribution from
  /etc/os-release, as `pkg:deb` purls;
* which of those packages the binary links dynamically (tokentrail's entry in `dependencies`).

    sbom.py --crates tokentrail.cdx.json --rootfs ROOTFS --version "$(tokentrail --version)" \
        [--linked libc6,libgcc-s1,libssl3] > sbom.cdx.json

Only the standard library: it runs wherever the image is built.
"""

import argparse
import json
import os
import sys
import urllib.parse
import uuid


def fail(message):
    sys.exit(f"sbom.py: {message}")


def dpkg_stanzas(rootfs):
    """Each installed package's control fields, from the status file and status.d/."""
    texts = []
    status = os.path.join(rootfs, "var/lib/dpkg/status")
    if os.path.isfile(status):
        with open(status, encoding="utf-8") as f:
            texts.append(f.read())
    status_d = os.path.join(rootfs, "var/lib/dpkg/status.d")
    if os.path.isdir(status_d):
        for name in sorted(os.listdir(status_d)):
            if not name.endswith(".md5sums"):
                with open(os.path.join(status_d, name), encoding="utf-8") as f:
                    texts.append(f.read())
    packages = []
    for text in texts:
        for stanza in text.split("\n\n"):
            fields, key = {}, None
            for line in stanza.splitlines():
                if line[:1] in (" ", "\t") and key:
                    fields[key] += "\n" + line.strip()
                elif ":" in line:
                    key, _, value = line.partition(":")
                    fields[key] = value.strip()
            if "Package" in fields and fields.get("Status", "install ok installed").endswith(" installed"):
                packages.append(fields)
    if not packages:
        fail(f"no dpkg database in {rootfs} (var/lib/dpkg/status or status.d/)")
    return sorted(packages, key=lambda p: p["Package"])


def os_release(rootfs):
    for path in ("etc/os-release", "usr/lib/os-release"):
        full = os.path.join(rootfs, path)
        # /etc/os-release is usually a relative symlink into /usr/lib: read through the rootfs.
        if os.path.islink(full) and os.path.isabs(os.readlink(full)):
            full = os.path.join(rootfs, os.readlink(full).lstrip("/"))
        if os.path.exists(full):
            with open(full, encoding="utf-8") as f:
                pairs = (line.rstrip("\n").split("=", 1) for line in f if "=" in line)
                return {k: v.strip('"') for k, v in pairs}
    fail(f"no os-release in {rootfs}")


def deb_purl(pkg, distro):
    name, version, arch = pkg["Package"], pkg["Version"], pkg.get("Architecture", "all")
    quoted = urllib.parse.quote(version, safe="")
    return f"pkg:deb/debian/{name}@{quoted}?arch={arch}&distro={distro}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crates", required=True, help="cargo-cyclonedx's BOM of the tokentrail package")
    parser.add_argument("--rootfs", required=True, help="the image's root filesystem (a directory)")
    parser.add_argument("--version", required=True, help="`tokentrail --version` of the binary in the image")
    parser.add_argument("--linked", default="libc6,libgcc-s1,libssl3", help="Debian packages the binary links")
    args = parser.parse_args()

    with open(args.crates, encoding="utf-8") as f:
        bom = json.load(f)
    app = bom["metadata"]["component"]
    if app.get("name") != "tokentrail":
        fail(f"{args.crates} describes {app.get('name')!r}, not tokentrail")
    components = bom.setdefault("components", [])
    dependencies = bom.setdefault("dependencies", [])

    def depends(ref, *on):
        entry = next((d for d in dependencies if d["ref"] == ref), None)
        if entry is None:
            entry = {"ref": ref, "dependsOn": []}
            dependencies.append(entry)
        entry.setdefault("dependsOn", []).extend(o for o in on if o not in entry["dependsOn"])

    # `tokentrail 0.1.0 (abc123def456)`: the commit the binary was built from.
    words = args.version.split()
    commit = args.version.partition("(")[2].rstrip(")").strip()
    if len(words) < 3 or words[0] != "tokentrail" or not commit:
        fail(f"unexpected --version {args.version!r}")
    app.setdefault("properties", []).append({"name": "tokentrail:commit", "value": commit})

    # librdkafka, statically linked from rdkafka-sys's vendored sources.
    rdkafka_sys = [c for c in components if c.get("name") == "rdkafka-sys"]
    if len(rdkafka_sys) != 1 or "+" not in rdkafka_sys[0]["version"]:
        fail(f"expected one rdkafka-sys with librdkafka's version as build metadata, got {rdkafka_sys}")
    librdkafka_version = rdkafka_sys[0]["version"].split("+", 1)[1]
    librdkafka_ref = f"pkg:github/confluentinc/librdkafka@v{librdkafka_version}"
    components.append(
        {
            "type": "library",
            "bom-ref": librdkafka_ref,
            "name": "librdkafka",
            "version": librdkafka_version,
            "description": f"Apache Kafka C client, compiled from the sources in rdkafka-sys "
            f"{rdkafka_sys[0]['version']} and linked statically",
            "licenses": [{"expression": "BSD-2-Clause"}],
            "purl": librdkafka_ref,
        }
    )
    depends(rdkafka_sys[0]["bom-ref"], librdkafka_ref)

    # The root filesystem's Debian packages.
    release = os_release(args.rootfs)
    distro = f"{release.get('ID', 'debian')}-{release.get('VERSION_ID', 'unknown')}"
    os_ref = f"os:{distro}"
    packages = dpkg_stanzas(args.rootfs)
    by_name = {}
    for pkg in packages:
        purl = deb_purl(pkg, distro)
        by_name[pkg["Package"]] = purl
        component = {
            "type": "library",
            "bom-ref": purl,
            "name": pkg["Package"],
            "version": pkg["Version"],
            "purl": purl,
            "properties": [{"name": "debian:source", "value": pkg.get("Source", pkg["Package"]).split()[0]}],
        }
        if pkg.get("Description"):
            component["description"] = pkg["Description"].split("\n")[0]
        components.append(component)
    components.append(
        {
            "type": "operating-system",
            "bom-ref": os_ref,
            "name": release.get("ID", "debian"),
            "version": release.get("VERSION_ID", ""),
            "description": release.get("PRETTY_NAME", ""),
        }
    )
    depends(os_ref, *by_name.values())
    linked = [n for n in args.linked.split(",") if n]
    missing = [n for n in linked if n not in by_name]
    if missing:
        fail(f"the binary links {missing}, which the root filesystem's dpkg database does not list")
    depends(app["bom-ref"], *(by_name[n] for n in linked))

    bom["specVersion"] = "1.5"
    bom["$schema"] = "http://cyclonedx.org/schema/bom-1.5.schema.json"
    bom["serialNumber"] = f"urn:uuid:{uuid.uuid4()}"
    tools = bom["metadata"].setdefault("tools", [])
    if isinstance(tools, list):
        tools.append({"vendor": "tokentrail", "name": "deploy/image/sbom.py"})
    json.dump(bom, sys.stdout, indent=1, sort_keys=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
