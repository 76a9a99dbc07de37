"""infra/kubernetes, rendered (tests/kustomize_lite.py) and checked offline: every manifest of
every overlay against the Kubernetes API schemas (kubernetes-validate, strict: unknown fields
fail), KEDA's objects by their required fields, and everything a manifest says about callstream
against callstream itself: commands, ports, settings, consumer groups, topics, partitions."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from callstream import cli, topics
from callstream.alerts.settings import AlertSettings
from callstream.producers.settings import ProducerSettings
from callstream.sinks.settings import SinkSettings
from callstream.streams.settings import StreamSettings
from tests.kustomize_lite import Doc, pod_spec, render
from tests.unit.test_infra_compose import settings_fields

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "infra" / "kubernetes"
OVERLAYS = sorted(p.name for p in (KUBERNETES / "overlays").iterdir() if p.is_dir())
K8S_VERSION = "1.30.0"  # the oldest Kubernetes the manifests are for (docs/kubernetes.md)
# Secrets the operators create (copied into callstream's namespace, docs/kubernetes.md).
OPERATOR_SECRETS = {"callstream-cluster-ca-cert", "callstream-es-http-certs-public"}
# Metrics port each worker serves by default (its settings), and so the one the manifests use.
METRICS_PORTS = {
    "stream": StreamSettings().metrics_port,
    "sink": SinkSettings().metrics_port,
    "alert": AlertSettings().metrics_port,
    "ingest": ProducerSettings().metrics_port,
    "otlp": 9465,  # `callstream otlp` (being built): the port its docs will name
}
PENDING_COMMANDS = {"otlp"}  # in a manifest ahead of the command: allowed until it exists
GROUPS = {
    "callstream-stream": (StreamSettings().app_id, topics.RAW, "CALLSTREAM_STREAM_PARTITIONS"),
    "callstream-sink": (SinkSettings().group_id, topics.ENRICHED, "CALLSTREAM_STREAM_PARTITIONS"),
    "callstream-alert": (AlertSettings().app_id, topics.AGGREGATES, "CALLSTREAM_ALERT_PARTITIONS"),
}


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> list[Doc]:
    return render(KUBERNETES / "overlays" / request.param)


def by_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def config(docs: list[Doc]) -> dict[str, str]:
    data: dict[str, str] = by_kind(docs, "ConfigMap")["callstream-config"]["data"]
    return data


def containers(docs: list[Doc]) -> list[tuple[Doc, dict[str, Any]]]:
    return [(d, c) for d in docs for c in pod_spec(d).get("containers", [])]


def test_there_are_overlays_and_workers() -> None:
    assert {"local", "strimzi-eck"} <= set(OVERLAYS)
    names = set(by_kind(render(KUBERNETES / "overlays" / "strimzi-eck"), "Deployment"))
    assert names == {f"callstream-{w}" for w in ("stream", "sink", "alert", "ingest", "otlp")}


def test_every_manifest_is_valid_against_the_kubernetes_schemas(rendered: list[Doc]) -> None:
    for doc in rendered:
        if doc["apiVersion"].startswith("keda.sh/"):
            continue  # a CRD kubernetes-validate has no schema for: see the KEDA test below
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_validator_rejects_what_kubernetes_would(rendered: list[Doc]) -> None:
    deployment = copy.deepcopy(by_kind(rendered, "Deployment")["callstream-stream"])
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    del deployment["spec"]["selector"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=False)


def test_workers_run_callstream_commands_with_probes_metrics_and_requests(rendered: list[Doc]) -> None:
    commands = {name for _, _, name in cli.COMMANDS} | {name for _, _, name in cli.GROUPS}
    for doc, container in containers(rendered):
        command = container["args"][0]
        assert command in commands or command in PENDING_COMMANDS, f"callstream has no command {command}"
        assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        if doc["kind"] != "Deployment":
            continue
        port = METRICS_PORTS[command]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["metrics"] == port, doc["metadata"]["name"]
        annotations = doc["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert (
            annotations["prometheus.io/port"] == str(port) and annotations["prometheus.io/path"] == "/metrics"
        )
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}, probe
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/var/lib/callstream" in mounts, "the working directory must be writable"
        assert pod_spec(doc)["securityContext"]["runAsUser"] == 10001  # the image's user


def test_every_reference_resolves(rendered: list[Doc]) -> None:
    secrets = {
        name: set(d.get("stringData", {})) | set(d.get("data", {}))
        for name, d in by_kind(rendered, "Secret").items()
    }
    config_maps = by_kind(rendered, "ConfigMap")
    claims = set(by_kind(rendered, "PersistentVolumeClaim"))
    for doc, container in containers(rendered):
        for source in container.get("envFrom", []):
            assert source["configMapRef"]["name"] in config_maps
        for env in container.get("env", []):
            ref = env.get("valueFrom", {})
            if "secretKeyRef" in ref:
                assert ref["secretKeyRef"]["key"] in secrets[ref["secretKeyRef"]["name"]], env["name"]
            if "configMapKeyRef" in ref:
                assert ref["configMapKeyRef"]["key"] in config_maps[ref["configMapKeyRef"]["name"]]["data"]
        volumes = {v["name"]: v for v in pod_spec(doc).get("volumes", [])}
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in volumes, f"{doc['metadata']['name']}: no volume {mount['name']}"
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
            if "secret" in volume:
                assert volume["secret"]["secretName"] in set(secrets) | OPERATOR_SECRETS


def test_every_variable_is_a_callstream_setting(rendered: list[Doc]) -> None:
    known = {f"{prefix}{field}".upper() for prefix, fields in settings_fields().items() for field in fields}
    named = set(config(rendered))
    named |= {env["name"] for _, c in containers(rendered) for env in c.get("env", [])}
    callstream = {n for n in named if n.startswith("CALLSTREAM_")}
    assert callstream - known == set(), "variables no callstream settings object reads"
    for doc, container in containers(rendered):
        env = {e["name"] for e in container.get("env", [])}
        assert env - known <= {"PARTITIONS"}, doc["metadata"]["name"]  # PARTITIONS: the setup Job's argument


def test_keda_scales_each_consumer_group_on_its_lag_up_to_the_partitions(rendered: list[Doc]) -> None:
    """KEDA's CRDs are not in the Kubernetes schemas: their required fields, checked here."""
    data = config(rendered)
    deployments = by_kind(rendered, "Deployment")
    auths = by_kind(rendered, "TriggerAuthentication")
    secrets = by_kind(rendered, "Secret")
    scaled = by_kind(rendered, "ScaledObject")
    assert set(scaled) == set(GROUPS)
    protocol = data["CALLSTREAM_KAFKA_SECURITY_PROTOCOL"]
    for name, doc in scaled.items():
        assert doc["apiVersion"] == "keda.sh/v1alpha1"
        spec = doc["spec"]
        assert spec["scaleTargetRef"]["name"] in deployments
        group, topic, partitions_key = GROUPS[name]
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= int(data[partitions_key])
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "kafka"
        meta = trigger["metadata"]
        assert meta["bootstrapServers"] == data["CALLSTREAM_KAFKA_BOOTSTRAP_SERVERS"]
        assert meta["consumerGroup"] == group
        assert meta["topic"] == f"{data['CALLSTREAM_KAFKA_TOPIC_PREFIX']}.{topic}"
        assert int(meta["lagThreshold"]) > 0 and meta["allowIdleConsumers"] == "false"
        assert meta["offsetResetPolicy"] in {"earliest", "latest"}
        assert (meta["sasl"] != "none") == protocol.startswith("SASL")
        assert meta["sasl"] in {"none", "plaintext", "scram_sha256", "scram_sha512"}
        if meta["sasl"].startswith("scram"):
            assert meta["sasl"] == "scram_sha" + data["CALLSTREAM_KAFKA_SASL_MECHANISM"].rsplit("-", 1)[1]
        assert (meta["tls"] == "enable") == protocol.endswith("SSL")
        auth = auths[trigger["authenticationRef"]["name"]]
        assert auth["apiVersion"] == "keda.sh/v1alpha1"
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["parameter"] in {"username", "password", "ca", "cert", "key", "sasl", "tls"}
            if ref["name"] not in OPERATOR_SECRETS:
                assert ref["key"] in secrets[ref["name"]]["stringData"]


def test_tls_settings_point_at_mounted_files(rendered: list[Doc]) -> None:
    data = config(rendered)
    for key in ("CALLSTREAM_KAFKA_SSL_CA_LOCATION", "CALLSTREAM_ES_CA_CERTS"):
        if key not in data:
            continue
        for doc, container in containers(rendered):
            mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
            assert any(data[key].startswith(m + "/") for m in mounts), f"{doc['metadata']['name']}: {key}"
