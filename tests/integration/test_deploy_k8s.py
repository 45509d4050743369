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

from control_center.settings import PRODUCTION_SECRETS as CC_SECRETS
from orchestrator.settings import PRODUCTION_SECRETS as ORCH_SECRETS
from provisioning_common.config import PRODUCTION_STORAGE
from tests.support.stack import ROOT, devstack

K8S_VERSION = "1.33.0"
K8S = ROOT / "deploy/k8s"
OVERLAYS = ("dev", "prod")
APPS = {"control-center": 9080, "orchestrator": 9090}
PREFIXES = {"control-center": "/api/control-center", "orchestrator": "/api/orchestrator"}
POD_KINDS = {"Deployment", "StatefulSet", "Job"}
# Each service's own MongoDB user (readWrite on its own database) and Redis ACL user.
USERS = {
    "control-center": ("control_center", "provisioning_control_center", "CONTROL_CENTER"),
    "orchestrator": ("orchestrator", "provisioning_orchestrator", "ORCHESTRATOR"),
}
PRODUCTION_REQUIRES = {"control-center": CC_SECRETS, "orchestrator": ORCH_SECRETS}

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
    # storage credentials are secrets in dev too: created by the operator, not generated
    assert names == {"orchestrator-config"}


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
        assert refs["MONGODB_URL"] == refs["REDIS_URL"] == f"{app}-storage"
        image = container["image"]
        assert image.startswith("registry.example.com/")
        assert not fnmatch.fnmatch(image, "*:latest")
        assert "dev" not in image.rsplit(":", 1)[1]
    ingress = one(docs, "Ingress", "provisioning")
    assert ingress["spec"]["tls"][0]["secretName"] == "provisioning-tls"


def secret_env(container: Manifest) -> dict[str, tuple[str, str]]:
    return {
        e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in container.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_has_its_own_storage_credentials(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    """MONGODB_URL / REDIS_URL (credentials included) from a Secret of the service's own,
    never a plain value and never shared with the other service."""
    text = (K8S / "base/secrets.template.yaml").read_text()
    names = {d["metadata"]["name"] for d in templates()}
    seen: set[str] = set()
    for app in APPS:
        container = one(rendered[overlay], "Deployment", app)["spec"]["template"]["spec"][
            "containers"
        ][0]
        refs = secret_env(container)
        assert refs["MONGODB_URL"] == (f"{app}-storage", "MONGODB_URL")
        assert refs["REDIS_URL"] == (f"{app}-storage", "REDIS_URL")
        seen.add(refs["MONGODB_URL"][0])
        # the template documents this service's user, in its own database
        assert f"{app}-storage" in names
        user, database, _ = USERS[app]
        assert f"mongodb://{user}:<" in text
        assert f"@mongodb-0.mongodb:27017/{database}?replicaSet=rs0" in text
        assert f"redis://{user}:<" in text
    assert len(seen) == len(APPS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_production_mode_gets_what_it_requires(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    """prod runs the images' production mode and gives each service every variable it
    requires there; dev opts out explicitly (the signing key is generated)."""
    docs = rendered[overlay]
    for app, required in PRODUCTION_REQUIRES.items():
        config = one(docs, "ConfigMap", f"{app}-config")["data"]
        if overlay == "prod":
            assert "PROVISIONING_ENV" not in config, "the image's production default applies"
        else:
            assert config["PROVISIONING_ENV"] == "development"
            continue
        container = one(docs, "Deployment", app)["spec"]["template"]["spec"]["containers"][0]
        given = set(config) | {e["name"] for e in container.get("env", [])}
        optional = {
            e["name"]
            for e in container.get("env", [])
            if e.get("valueFrom", {}).get("secretKeyRef", {}).get("optional")
        }
        for item in (*PRODUCTION_STORAGE, *required):
            names = (item,) if isinstance(item, str) else item
            present = [n for n in names if n in given and n not in optional]
            assert present, f"{app}: none of {names} (or only optional)"
            assert all(config.get(n, "x") != "" for n in present), f"{app}: {names} empty"


def test_dev_mongodb_and_redis_require_authentication(
    rendered: dict[str, list[Manifest]],
) -> None:
    docs = rendered["dev"]
    mongo = one(docs, "StatefulSet", "mongodb")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in mongo["env"]}
    assert env["MONGO_INITDB_ROOT_USERNAME"]["value"] == "root"
    assert secret_env(mongo)["MONGO_INITDB_ROOT_PASSWORD"] == (
        "mongodb-credentials",
        "MONGO_ROOT_PASSWORD",
    )
    keyfile = mongo["args"][mongo["args"].index("--keyFile") + 1]
    assert f"chmod 0400 {keyfile}" in " ".join(mongo["command"])
    init = one(docs, "Job", "mongodb-rs-init")["spec"]["template"]["spec"]["containers"][0]
    script = " ".join(init["command"])
    assert 'auth("root", process.env.MONGO_ROOT_PASSWORD)' in script
    assert script.index(".auth(") < script.index("rs.initiate")
    assert 'const roles = [{role: "readWrite", db: name}]' in script
    init_refs = secret_env(init)
    for user, database, suffix in USERS.values():
        assert f'["{user}", "{database}", "MONGO_{suffix}_PASSWORD"]' in script
        variable = f"MONGO_{suffix}_PASSWORD"
        assert init_refs[variable] == ("mongodb-credentials", variable)
    redis = one(docs, "StatefulSet", "redis")["spec"]["template"]["spec"]["containers"][0]
    assert redis["args"][:2] == ["redis-server", "-"], "ACL configuration on stdin"
    users = {
        line.split()[1]: line.split()[2:]
        for line in redis["command"][2].splitlines()
        if line.startswith("user ")
    }
    assert users["default"] == ["on", "nopass", "resetchannels", "-@all", "+ping"]
    redis_refs = secret_env(redis)
    for user, _, suffix in USERS.values():
        variable = f"REDIS_{suffix}_PASSWORD"
        assert "nopass" not in users[user]
        assert f">${{{variable}}}" in users[user]
        assert {"-@admin", "-@dangerous"} <= set(users[user])
        assert redis_refs[variable] == ("redis-credentials", variable)
    assert set(users) == {"default"} | {u for u, _, _ in USERS.values()}
