"""Renders infra/kubernetes the way `kubectl apply -k` does, for the parts of kustomize those files
use (so the tests need no kustomize binary): `resources` (files and folders), `components`,
`patches` (strategic-merge documents or JSON 6902 lists, by path or inline, with an optional
`target`), `images`, `namespace` and `labels`. Anything else in a kustomization is refused, so a
new feature cannot be silently ignored here.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

KNOWN = {"apiVersion", "kind", "resources", "components", "patches", "images", "namespace", "labels"}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
}
# Strategic merge: lists of objects merged by these keys (the Kubernetes API's patchMergeKey).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "volumes": "name",
    "env": "name",
    "ports": "containerPort",
    "volumeMounts": "mountPath",
}

Doc = dict[str, Any]


class KustomizeError(ValueError):
    pass


def load_docs(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def render(folder: Path) -> list[Doc]:
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(spec) - KNOWN
    if unknown:
        raise KustomizeError(
            f"{folder}: kustomization fields this renderer does not apply: {sorted(unknown)}"
        )
    docs: list[Doc] = []
    for entry in spec.get("resources", []):
        target = folder / entry
        docs += render(target) if target.is_dir() else load_docs(target)
    for entry in spec.get("components", []):
        docs = apply_component(folder / entry, docs)
    for patch in spec.get("patches", []):
        docs = apply_patch(folder, patch, docs)
    for image in spec.get("images", []):
        set_image(docs, image)
    if "namespace" in spec:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc.setdefault("metadata", {})["namespace"] = spec["namespace"]
    for label in spec.get("labels", []):
        for doc in docs:
            doc.setdefault("metadata", {}).setdefault("labels", {}).update(label["pairs"])
    return docs


def apply_component(folder: Path, docs: list[Doc]) -> list[Doc]:
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
    if spec.get("kind") != "Component":
        raise KustomizeError(f"{folder} is not a kustomize Component")
    docs = docs + [d for entry in spec.get("resources", []) for d in load_docs(folder / entry)]
    for patch in spec.get("patches", []):
        docs = apply_patch(folder, patch, docs)
    return docs


def matches(doc: Doc, target: dict[str, Any]) -> bool:
    group = doc["apiVersion"].rpartition("/")[0]
    checks = {
        "group": group,
        "version": doc["apiVersion"].rpartition("/")[2],
        "kind": doc["kind"],
        "name": doc["metadata"]["name"],
    }
    return all(re.fullmatch(str(target[k]), v) for k, v in checks.items() if k in target)


def apply_patch(folder: Path, entry: dict[str, Any], docs: list[Doc]) -> list[Doc]:
    body = yaml.safe_load((folder / entry["path"]).read_text() if "path" in entry else entry["patch"])
    target = entry.get("target")
    if isinstance(body, list):  # JSON 6902
        if not target:
            raise KustomizeError("a JSON 6902 patch needs a target")
        hit = [d for d in docs if matches(d, target)]
        if not hit:
            raise KustomizeError(f"patch target {target} matches nothing")
        for doc in hit:
            for op in body:
                json_patch(doc, op)
        return docs
    target = target or {"kind": body["kind"], "name": body["metadata"]["name"]}
    hit = [d for d in docs if matches(d, target)]
    if not hit:
        raise KustomizeError(f"patch {entry} matches nothing")
    for doc in hit:
        merged = strategic_merge(doc, {k: v for k, v in body.items() if k != "metadata"} | {"metadata": {}})
        doc.clear()
        doc.update(merged)
    return docs


def strategic_merge(base: Any, patch: Any, field: str = "") -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = strategic_merge(base[key], value, key) if key in base else copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(patch, list) and field in MERGE_KEYS:
        key = MERGE_KEYS[field]
        out = [copy.deepcopy(item) for item in base]
        for item in patch:
            same = [i for i, existing in enumerate(out) if existing.get(key) == item.get(key)]
            if same:
                out[same[0]] = strategic_merge(out[same[0]], item)
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(patch)


def json_patch(doc: Doc, op: dict[str, Any]) -> None:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
    parent: Any = doc
    for part in parts[:-1]:
        parent = parent[int(part)] if isinstance(parent, list) else parent[part]
    last = parts[-1]
    if op["op"] == "add":
        if isinstance(parent, list):
            parent.insert(len(parent) if last == "-" else int(last), copy.deepcopy(op["value"]))
        else:
            parent[last] = copy.deepcopy(op["value"])
    elif op["op"] == "replace":
        if isinstance(parent, list):
            parent[int(last)] = copy.deepcopy(op["value"])
        else:
            if last not in parent:
                raise KustomizeError(f"replace {op['path']}: nothing there")
            parent[last] = copy.deepcopy(op["value"])
    elif op["op"] == "remove":
        del parent[int(last) if isinstance(parent, list) else last]
    else:
        raise KustomizeError(f"JSON patch op {op['op']} is not applied here")


def set_image(docs: list[Doc], image: dict[str, str]) -> None:
    for doc in docs:
        for container in pod_spec(doc).get("containers", []):
            if container["image"].split(":")[0] == image["name"]:
                container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"


def pod_spec(doc: Doc) -> dict[str, Any]:
    """The pod template's spec of a workload, or {} for other kinds."""
    if doc["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
        spec: dict[str, Any] = doc["spec"]["template"]["spec"]
        return spec
    return {}
