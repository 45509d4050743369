"""The Kubernetes manifests: both overlays rendered with a real kustomize (built from
its Go module by ``deploy/local/devstack.py``), every manifest validated with
kubernetes-validate against a pinned Kubernetes version, then the deployment's rules
checked on the rendered objects."""

from __future__ import annotations

import fnmatch
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.support.stack import ROOT, devstack

K8S_VERSION = "1.33.0"
K8S = ROOT / "deploy/k8s"
OVERLAYS = ("dev", "prod")
APPS = {"control-center": 9080, "orchestrator": 9090}
PREFIXES = {"control-center": "/api/control-center", "orchestrator": "/api/orchestrator"}
POD_KINDS = {"Deployment", "StatefulSet", "Job"}

Manifest = dict[str, Any]


def render(overlay: str) -> list[Manifest]:
    kustomize = devstack.ensure_kustomize()
    out = subprocess.run(
        [str(kustomize), "build", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Manifest]]:
    return {overlay: render(overlay) for overlay in OVERLAYS}


def templates() -> list[Manifest]:
    text = (K8S / "base/secrets.template.yaml").read_text()
    return [doc for doc in yaml.safe_load_all(text) if doc]


def by_kind(docs: list[Manifest], kind: str) -> list[Manifest]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[Manifest], kind: str, name: str) -> Manifest:
    (found,) = [d for d in by_kind(docs, kind) if d["metadata"]["name"] == name]
    return found


def pod_specs(docs: list[Manifest]) -> Iterator[tuple[Manifest, Manifest]]:
    for doc in docs:
        if doc["kind"] in POD_KINDS:
            yield doc, doc["spec"]["template"]["spec"]


def label(doc: Manifest) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_manifest_is_valid_for_the_pinned_kubernetes(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    docs = rendered[overlay]
    assert len(docs) > 15
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{overlay} {label(doc)}: {exc.message} at {list(exc.path)}")


def test_secret_templates_are_valid_and_hold_no_secret() -> None:
    for doc in templates():
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        assert doc["kind"] == "Secret"
        for key, value in doc["stringData"].items():
            if key != "config.toml":
                assert value == "", f"{doc['metadata']['name']}.{key} must stay a placeholder"


def test_the_validator_is_live() -> None:
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replicas": "two", "selector": {}, "template": {}},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_base_objects_are_all_there(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    docs = rendered[overlay]
    kinds = {d["kind"] for d in docs}
    assert {
        "Namespace",
        "Deployment",
        "Service",
        "ConfigMap",
        "ServiceAccount",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Ingress",
    } <= kinds
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "provisioning", label(doc)
    namespace = one(docs, "Namespace", "provisioning")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for app in APPS:
        one(docs, "Deployment", app)
        one(docs, "Service", app)
        one(docs, "ServiceAccount", app)
        one(docs, "PodDisruptionBudget", app)
    hpa = one(docs, "HorizontalPodAutoscaler", "orchestrator")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "orchestrator",
    }
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_non_root_read_only_and_bounded(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    """Every pod passes the "restricted" Pod Security Standard the namespace enforces."""
    for doc, spec in pod_specs(rendered[overlay]):
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True, label(doc)
        assert pod_sc["runAsUser"] > 0, label(doc)
        assert pod_sc["seccompProfile"]["type"] == "RuntimeDefault", label(doc)
        assert spec["automountServiceAccountToken"] is False, label(doc)
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, label(doc)
            assert sc["readOnlyRootFilesystem"] is True, label(doc)
            assert sc["capabilities"]["drop"] == ["ALL"], label(doc)
            resources = container["resources"]
            assert set(resources["requests"]) == {"cpu", "memory"}, label(doc)
            assert set(resources["limits"]) == {"cpu", "memory"}, label(doc)
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{label(doc)}: a writable /tmp on a read-only root"  # noqa: S108


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_use_the_prefixed_health_and_readiness_endpoints(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    docs = rendered[overlay]
    for app, port in APPS.items():
        config = one(docs, "ConfigMap", f"{app}-config")["data"]
        prefix = config["PATH_PREFIX"]
        assert prefix == PREFIXES[app]
        assert int(config["PORT"]) == port
        container = one(docs, "Deployment", app)["spec"]["template"]["spec"]["containers"][0]
        assert container["livenessProbe"]["httpGet"]["path"] == f"{prefix}/health"
        assert container["readinessProbe"]["httpGet"]["path"] == f"{prefix}/ready"
        assert container["startupProbe"]["httpGet"]["path"] == f"{prefix}/health"
        assert container["ports"][0]["containerPort"] == port


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_sigterm_drain_fits_the_grace_period(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    docs = rendered[overlay]
    for app in APPS:
        spec = one(docs, "Deployment", app)["spec"]["template"]["spec"]
        config = one(docs, "ConfigMap", f"{app}-config")["data"]
        # The HTTP drain, then (orchestrator) running tasks' grace and their kill grace.
        budget = sum(
            float(config.get(k, 0))
            for k in (
                "SHUTDOWN_GRACE_SECONDS",
                "ENGINE_SHUTDOWN_GRACE_SECONDS",
                "TASK_KILL_GRACE_SECONDS",
            )
        )
        assert "SHUTDOWN_GRACE_SECONDS" in config
        if app == "orchestrator":
            assert "ENGINE_SHUTDOWN_GRACE_SECONDS" in config
            assert "TASK_KILL_GRACE_SECONDS" in config
        pause = spec["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pause + budget < spec["terminationGracePeriodSeconds"], app


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_referenced_secret_and_config_exists(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    """A reference resolves to a rendered object, or to a template the operator fills in."""
    docs = rendered[overlay]
    rendered_secrets = {d["metadata"]["name"]: d for d in by_kind(docs, "Secret")}
    template_keys = {d["metadata"]["name"]: set(d["stringData"]) for d in templates()}
    configmaps = {d["metadata"]["name"] for d in by_kind(docs, "ConfigMap")}

    def has_secret(name: str, key: str | None) -> bool:
        if name in rendered_secrets:
            secret = rendered_secrets[name]
            keys = set(secret.get("data", {})) | set(secret.get("stringData", {}))
            return key is None or key in keys
        return name in template_keys and (key is None or key in template_keys[name])

    for doc, spec in pod_specs(docs):
        for container in spec["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert has_secret(ref["name"], ref["key"]), f"{label(doc)} {ref}"
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in configmaps
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                assert has_secret(volume["secret"]["secretName"], None), label(doc)


def test_generated_secrets_are_dev_only_and_harmless(
    rendered: dict[str, list[Manifest]],
) -> None:
    assert by_kind(rendered["prod"], "Secret") == [], "prod takes every Secret from outside"
    names = {d["metadata"]["name"].rsplit("-", 1)[0] for d in by_kind(rendered["dev"], "Secret")}
    assert names == {"provisioning-storage", "orchestrator-config"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_routes_the_gateway_prefixes(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    ingress = one(rendered[overlay], "Ingress", "provisioning")
    (rule,) = ingress["spec"]["rules"]
    routes = {
        p["path"]: (p["backend"]["service"]["name"], p["pathType"]) for p in rule["http"]["paths"]
    }
    assert routes == {
        "/api/orchestrator": ("orchestrator", "Prefix"),
        "/api/control-center": ("control-center", "Prefix"),
    }
    annotations = ingress["metadata"].get("annotations", {})
    assert not any("rewrite-target" in k for k in annotations), "paths reach the services whole"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_orchestrator_and_the_ingress_reach_the_control_center(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    policies = by_kind(rendered[overlay], "NetworkPolicy")
    deny = next(p for p in policies if p["metadata"]["name"] == "default-deny-ingress")
    assert deny["spec"]["podSelector"] == {}
    assert "ingress" not in deny["spec"]
    cc_label = {"app.kubernetes.io/name": "control-center"}
    allowing = [
        p
        for p in policies
        if "Ingress" in p["spec"]["policyTypes"]
        and p["spec"]["podSelector"].get("matchLabels") == cc_label
    ]
    peers = [peer for p in allowing for rule in p["spec"]["ingress"] for peer in rule["from"]]
    assert len(peers) == 2
    pod_only = [p for p in peers if "namespaceSelector" not in p]
    assert pod_only == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "orchestrator"}}}
    ]
    (ingress_peer,) = [p for p in peers if "namespaceSelector" in p]
    assert ingress_peer["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ingress-nginx"
    }


def test_dev_runs_mongodb_and_redis_in_cluster(rendered: dict[str, list[Manifest]]) -> None:
    docs = rendered["dev"]
    mongo = one(docs, "StatefulSet", "mongodb")
    container = mongo["spec"]["template"]["spec"]["containers"][0]
    assert re.match(r"^mongo:7\.\d+\.\d+$", container["image"])
    assert "--replSet" in container["args"]
    assert mongo["spec"]["volumeClaimTemplates"]
    redis = one(docs, "StatefulSet", "redis")
    assert re.match(
        r"^redis:7\.\d+\.\d+", redis["spec"]["template"]["spec"]["containers"][0]["image"]
    )
    init = one(docs, "Job", "mongodb-rs-init")
    assert "rs.initiate" in " ".join(init["spec"]["template"]["spec"]["containers"][0]["command"])
    storage = next(
        d
        for d in by_kind(docs, "Secret")
        if d["metadata"]["name"].startswith("provisioning-storage")
    )
    assert set(storage["data"]) == {"MONGODB_URL", "REDIS_URL"}
    orch = one(docs, "Deployment", "orchestrator")["spec"]["template"]["spec"]["containers"][0]
    assert orch["image"].endswith(":dev-simulator")
    for name in ("mongodb-ingress", "redis-ingress"):
        one(docs, "NetworkPolicy", name)


def test_prod_uses_external_storage_and_more_replicas(
    rendered: dict[str, list[Manifest]],
) -> None:
    docs = rendered["prod"]
    assert by_kind(docs, "StatefulSet") == []
    assert one(docs, "Deployment", "control-center")["spec"]["replicas"] >= 3
    hpa = one(docs, "HorizontalPodAutoscaler", "orchestrator")
    assert hpa["spec"]["minReplicas"] >= 3
    dev_hpa = one(rendered["dev"], "HorizontalPodAutoscaler", "orchestrator")
    assert hpa["spec"]["maxReplicas"] > dev_hpa["spec"]["maxReplicas"]
    for app in APPS:
        container = one(docs, "Deployment", app)["spec"]["template"]["spec"]["containers"][0]
        refs = {
            e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
            for e in container["env"]
            if "secretKeyRef" in e.get("valueFrom", {})
        }
        assert refs["MONGODB_URL"] == refs["REDIS_URL"] == "provisioning-storage"
        image = container["image"]
        assert image.startswith("registry.example.com/")
        assert not fnmatch.fnmatch(image, "*:latest")
        assert "dev" not in image.rsplit(":", 1)[1]
    ingress = one(docs, "Ingress", "provisioning")
    assert ingress["spec"]["tls"][0]["secretName"] == "provisioning-tls"
