#!/usr/bin/env python3
"""Writes schema.txt, the table minik's protobuf decoder reads (crates/minik-api/src/protobuf/).

Kubernetes' protobuf encoding is generated from Go types by go-to-protobuf: the wire facts (field
numbers, wire types, repeated, maps) are in each package's generated.proto, and what a field means
in JSON (its name, whether it is a pointer, `omitempty`, embedded `,inline` structs) is in the Go
struct tags of types.go. This script joins both for every message reachable from the kinds minik
accepts and prints one line per field.

Usage (checkouts of k8s.io/api and k8s.io/apimachinery at the release k8s-openapi's feature names,
v0.33.x for `v1_33`):

    python3 generate.py API_DIR APIMACHINERY_DIR > schema.txt
"""

import re
import sys

api, machinery = sys.argv[1], sys.argv[2]

PACKAGES = {
    # proto package -> (short name used in schema.txt, directory, types.go or None)
    "k8s.io.api.core.v1": ("core.v1", f"{api}/core/v1", "types.go"),
    "k8s.io.api.apps.v1": ("apps.v1", f"{api}/apps/v1", "types.go"),
    "k8s.io.api.autoscaling.v1": ("autoscaling.v1", f"{api}/autoscaling/v1", "types.go"),
    "k8s.io.apimachinery.pkg.apis.meta.v1": ("meta.v1", f"{machinery}/pkg/apis/meta/v1", "types.go"),
    "k8s.io.apimachinery.pkg.api.resource": ("resource", f"{machinery}/pkg/api/resource", None),
    "k8s.io.apimachinery.pkg.util.intstr": ("intstr", f"{machinery}/pkg/util/intstr", None),
    "k8s.io.apimachinery.pkg.runtime": ("runtime", f"{machinery}/pkg/runtime", None),
    "k8s.io.apimachinery.pkg.runtime.schema": ("schema", None, None),
}

# Messages whose JSON form is not an object of their fields; the decoder converts them itself.
SPECIAL = {
    "meta.v1.Time", "meta.v1.MicroTime", "meta.v1.Duration", "meta.v1.FieldsV1",
    "resource.Quantity", "intstr.IntOrString", "runtime.RawExtension",
}

ROOTS = [
    "core.v1.Pod", "core.v1.ReplicationController", "core.v1.Service", "core.v1.Endpoints",
    "core.v1.Namespace", "core.v1.Node", "core.v1.Event", "core.v1.ResourceQuota",
    "core.v1.Binding", "apps.v1.Deployment", "apps.v1.ReplicaSet", "autoscaling.v1.Scale",
    "meta.v1.DeleteOptions",
]

SCALARS = {"string", "bytes", "int32", "int64", "bool", "double", "float", "uint32", "uint64"}

FIELD = re.compile(r"^\s*(optional|repeated|required)\s+([\w.]+)\s+(\w+)\s*=\s*(\d+)\s*;")
MAP = re.compile(r"^\s*map<\s*(\w+)\s*,\s*([\w.]+)\s*>\s+(\w+)\s*=\s*(\d+)\s*;")


def qualify(package, name):
    """A proto type name as a short schema name."""
    if name in SCALARS:
        return name
    name = name.lstrip(".")
    if "." in name:
        pkg, _, msg = name.rpartition(".")
        return f"{PACKAGES[pkg][0]}.{msg}" if pkg in PACKAGES else name
    return f"{PACKAGES[package][0]}.{name}"


messages = {}  # short name -> list of (number, proto name, type, label, map key)
for package, (short, directory, _) in PACKAGES.items():
    if directory is None:
        continue
    current = None
    for line in open(f"{directory}/generated.proto"):
        line = line.split("//")[0]
        m = re.match(r"^message (\w+) \{", line)
        if m:
            current = f"{short}.{m.group(1)}"
            messages[current] = []
            continue
        if line.startswith("}"):
            current = None
            continue
        if current is None:
            continue
        m = MAP.match(line)
        if m:
            key, value, name, number = m.groups()
            messages[current].append((int(number), name, qualify(package, value), "map", key))
            continue
        m = FIELD.match(line)
        if m:
            label, typ, name, number = m.groups()
            messages[current].append((int(number), name, qualify(package, typ), label, None))

# Go struct tags: (message, number) -> (json name, pointer, omitempty, inline)
TAGGED = re.compile(r"^\s*(\w+)?\s*([^`\s]+)\s+`([^`]*)`")
go = {}
for package, (short, directory, types) in PACKAGES.items():
    if types is None:
        continue
    struct = None
    for line in open(f"{directory}/{types}"):
        m = re.match(r"^type (\w+) struct \{", line)
        if m:
            struct = f"{short}.{m.group(1)}"
            continue
        if line.startswith("}"):
            struct = None
            continue
        if struct is None or "protobuf:\"" not in line:
            continue
        tags = re.search(r"`([^`]*)`", line).group(1)
        code = line[: line.index("`")].split()
        embedded = len(code) == 1
        gotype = code[-1]
        proto = re.search(r'protobuf:"(\w+),(\d+),', tags)
        js = re.search(r'json:"([^"]*)"', tags)
        json_name, _, options = (js.group(1) if js else "").partition(",")
        inline = embedded and "inline" in options.split(",")
        go[(struct, int(proto.group(2)))] = (
            json_name,
            gotype.startswith("*"),
            "omitempty" in options.split(",") or "omitzero" in options.split(","),
            inline,
        )

reachable, todo = [], list(ROOTS)
while todo:
    name = todo.pop()
    if name in reachable or name in SPECIAL or name in SCALARS:
        continue
    if name not in messages:
        sys.exit(f"message {name} is not defined")
    reachable.append(name)
    todo.extend(f[2] for f in messages[name])

print("# Generated by generate.py from k8s.io/api and k8s.io/apimachinery v0.33.9 (generated.proto")
print("# for field numbers and wire types, types.go struct tags for JSON names and omission).")
print("# message NAME, then: NUMBER JSON-NAME TYPE [repeated] [map] [pointer] [omitempty] [inline]")
for name in sorted(reachable):
    print(f"message {name}")
    for number, proto_name, typ, label, key in sorted(messages[name]):
        json_name, pointer, omitempty, inline = go.get((name, number), (proto_name, False, True, False))
        if (name, number) not in go and not name.startswith(("meta.v1.", "autoscaling.v1.")):
            sys.exit(f"{name} field {number} has no Go struct tag")
        if key is not None and key != "string":
            sys.exit(f"{name} field {number}: map key {key} is not a string")
        if not inline and json_name != proto_name:
            print(f"# note: {name} field {number} is {proto_name} in proto, {json_name} in JSON", file=sys.stderr)
        flags = []
        if label == "repeated":
            flags.append("repeated")
        if label == "map":
            flags.append("map")
        if pointer:
            flags.append("pointer")
        if omitempty:
            flags.append("omitempty")
        if inline:
            flags.append("inline")
        print(" ".join([f"  {number}", json_name if not inline else "-", typ] + flags))
