"""The Helm chart: lint, render with every ci/*-values.yaml, validate offline against the
Kubernetes schemas, and check what the schemas can't (hooks, checksums, fallbacks, docs)."""

from __future__ import annotations

import json
import re
from typing import Any

import kubernetes_validate
import pytest

from tests.deploy.support import (
    CHART,
    CI_VALUES,
    COMPONENTS,
    KUBE_VERSION,
    PORTS,
    ROOT,
    helm_template,
    load_yaml,
    run,
)

CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
MINIMUM = [
    "--set",
    "global.kafka.bootstrapServers=kafka:9092",
    "--set",
    "global.postgres.url=postgresql://u:p@pg:5432",
    "--set",
    "global.redis.url=redis://redis:6379/0",
]


def _of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _component(doc: dict[str, Any]) -> str | None:
    return doc["metadata"].get("labels", {}).get("app.kubernetes.io/component")


def test_ci_values_files_exist() -> None:
    names = {p.name for p in CI_VALUES}
    assert {"default-values.yaml", "ha-values.yaml", "external-secret-values.yaml"} <= names


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_helm_lint_strict(helm: str, values) -> None:
    result = run(
        [helm, "lint", "--strict", str(CHART), "-f", str(values), "--kube-version", KUBE_VERSION]
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_rendered_manifests_validate_against_kubernetes_schemas(rendered, values) -> None:
    docs = rendered[values.name]
    assert docs, "nothing rendered"
    errors = []
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue  # not in the bundled core schemas; checked in the test below
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            errors.append(f"{name}: {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            errors.append(f"{name}: {e.message}")
    assert not errors, "\n".join(errors)


def test_every_component_gets_deployment_service_account_configmap(rendered) -> None:
    docs = rendered["default-values.yaml"]
    for kind in ("Deployment", "Service", "ServiceAccount", "ConfigMap"):
        components = {_component(d) for d in docs if d["kind"] == kind}
        assert set(COMPONENTS.values()) <= components, kind


def test_deployments_probes_commands_security(rendered) -> None:
    for deployment in _of_kind(rendered["default-values.yaml"], "Deployment").values():
        service = _component(deployment)
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["command"] == [f"nexwatt-{service}", "run"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert pod["automountServiceAccountToken"] is False
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert {"checksum/config", "checksum/secret"} <= annotations.keys()


def test_checksum_annotations_change_with_config_and_secret(helm: str) -> None:
    def checksums(*extra: str) -> dict[str, str]:
        docs = helm_template(helm, *MINIMUM, *extra)
        dispatch = _of_kind(docs, "Deployment")["nexwatt-dispatch"]
        return dispatch["spec"]["template"]["metadata"]["annotations"]

    base = checksums()
    config = checksums("--set", "dispatch.env.NEXWATT_LOG_LEVEL=DEBUG")
    secret = checksums("--set", "global.postgres.url=postgresql://u:other@pg:5432")
    assert config["checksum/config"] != base["checksum/config"]
    assert config["checksum/secret"] == base["checksum/secret"]
    assert secret["checksum/secret"] != base["checksum/secret"]
    assert secret["checksum/config"] == base["checksum/config"]


def test_hpa_and_pdb_defaults(rendered) -> None:
    docs = rendered["default-values.yaml"]
    hpas = {_component(d) for d in docs if d["kind"] == "HorizontalPodAutoscaler"}
    assert hpas == {"dispatch", "telemetry-ingest"}
    for deployment in _of_kind(docs, "Deployment").values():
        # An HPA owns the replica count; a fixed one would fight it on every upgrade.
        assert ("replicas" in deployment["spec"]) == (_component(deployment) not in hpas)
    ha = rendered["ha-values.yaml"]
    assert {_component(d) for d in ha if d["kind"] == "HorizontalPodAutoscaler"} == set(
        COMPONENTS.values()
    )
    assert {_component(d) for d in ha if d["kind"] == "PodDisruptionBudget"} == set(
        COMPONENTS.values()
    )


def test_component_values_fall_back_to_global(rendered) -> None:
    deployments = _of_kind(rendered["ha-values.yaml"], "Deployment")
    ingest = deployments["nexwatt-telemetry-ingest"]["spec"]["template"]["spec"]
    onboarding = deployments["nexwatt-onboarding"]["spec"]["template"]["spec"]
    capacity = deployments["nexwatt-capacity-model"]["spec"]["template"]["spec"]
    assert ingest["containers"][0]["resources"]["limits"]["memory"] == "1Gi"  # its own
    assert onboarding["containers"][0]["resources"]["limits"]["memory"] == "768Mi"  # global
    assert onboarding["containers"][0]["image"] == "registry.example.com/nexwatt/nexwatt:0.1.0"
    assert onboarding["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert "node.kubernetes.io/instance-type" in capacity["nodeSelector"]
    assert onboarding["tolerations"][0]["key"] == "dedicated"
    assert onboarding["imagePullSecrets"] == [{"name": "registry-credentials"}]
    configmaps = _of_kind(rendered["ha-values.yaml"], "ConfigMap")
    assert configmaps["nexwatt-dispatch"]["data"]["NEXWATT_LOG_LEVEL"] == "DEBUG"
    assert configmaps["nexwatt-settlement"]["data"]["NEXWATT_LOG_LEVEL"] == "INFO"


def test_migration_hook_job_creates_topics_then_migrates_every_component(rendered) -> None:
    for values, docs in rendered.items():
        (job,) = _of_kind(docs, "Job").values()
        annotations = job["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade", values
        pod = job["spec"]["template"]["spec"]
        commands = [c["command"] for c in pod["initContainers"]]
        assert commands[0][:2] == ["nexwatt-admin", "create-topics"], values
        assert "--replication-factor" in commands[0]
        assert commands[1:] == [[f"nexwatt-{s}", "migrate"] for s in COMPONENTS.values()]
        secret_refs = {
            ref["secretRef"]["name"]
            for c in pod["initContainers"]
            for ref in c.get("envFrom", [])
            if "secretRef" in ref
        }
        if values == "external-secret-values.yaml":
            assert secret_refs == {"nexwatt-credentials"}
        else:
            # The release's Secret doesn't exist yet at pre-install: the hook has its own,
            # created before the Job (lower weight).
            (hook_secret,) = secret_refs
            secret = _of_kind(docs, "Secret")[hook_secret]
            secret_annotations = secret["metadata"]["annotations"]
            assert secret_annotations["helm.sh/hook"] == annotations["helm.sh/hook"]
            assert int(secret_annotations["helm.sh/hook-weight"]) < int(
                annotations["helm.sh/hook-weight"]
            )


def test_existing_secret_replaces_the_chart_secret(rendered) -> None:
    docs = rendered["external-secret-values.yaml"]
    assert not _of_kind(docs, "Secret")
    for deployment in _of_kind(docs, "Deployment").values():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        refs = [r["secretRef"]["name"] for r in container["envFrom"] if "secretRef" in r]
        assert refs == ["nexwatt-credentials"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "global.kafka.bootstrapServers is required"),
        (MINIMUM[:2], "global.postgres.url is required"),
        (MINIMUM[:4], "global.redis.url is required"),
    ],
)
def test_missing_external_servers_fail_with_a_clear_message(helm: str, args, message) -> None:
    result = run([helm, "template", "nexwatt", str(CHART), "--kube-version", KUBE_VERSION, *args])
    assert result.returncode != 0
    assert message in result.stderr


def test_redis_not_required_without_redis_components(helm: str) -> None:
    docs = helm_template(
        helm,
        *MINIMUM[:4],
        "--set",
        "dispatch.enabled=false",
        "--set",
        "telemetryIngest.enabled=false",
    )
    assert {_component(d) for d in docs if d["kind"] == "Deployment"} == {
        "onboarding",
        "capacity-model",
        "settlement",
    }


def test_service_monitors_and_prometheus_rule(rendered) -> None:
    docs = rendered["ha-values.yaml"]
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert {_component(m) for m in monitors} == set(COMPONENTS.values())
    services = _of_kind(docs, "Service")
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] == "http"
        assert endpoint["path"] == "/metrics"
        selector = monitor["spec"]["selector"]["matchLabels"]
        service = services[monitor["metadata"]["name"]]
        assert selector.items() <= service["metadata"]["labels"].items()
        assert any(p["name"] == "http" for p in service["spec"]["ports"])

    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    rules = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    assert all({"alert", "expr", "labels", "annotations"} <= r.keys() for r in rules)
    exprs = " ".join(r["expr"] for r in rules)
    for metric in (
        "nexwatt_consumer_lag",
        "nexwatt_dead_letters_total",
        "nexwatt_dispatch_confirm_seconds_bucket",
        "nexwatt_settlement_failures_total",
    ):
        assert metric in exprs, metric
    # Prometheus templates survive Helm's own templating.
    assert "{{ $labels.group }}" in json.dumps(rules)

    default = rendered["default-values.yaml"]
    assert not [d for d in default if d["kind"] in {"ServiceMonitor", "PrometheusRule"}]


def test_grafana_dashboard_configmap_is_the_dashboard(rendered) -> None:
    (configmap,) = [
        d
        for d in rendered["ha-values.yaml"]
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")
    ]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    chart_copy = json.loads((CHART / "dashboards" / "nexwatt.json").read_text())
    assert json.loads(configmap["data"]["nexwatt.json"]) == chart_copy


def test_dashboard_copies_are_identical() -> None:
    compose_copy = ROOT / "deploy" / "grafana" / "dashboards" / "nexwatt.json"
    chart_copy = CHART / "dashboards" / "nexwatt.json"
    assert chart_copy.read_bytes() == compose_copy.read_bytes(), (
        "helm/nexwatt/dashboards/nexwatt.json must be a copy of "
        "deploy/grafana/dashboards/nexwatt.json"
    )


# --- values.yaml shape and its documentation -----------------------------------------------------

# Free-form maps/lists: documented as one key, not key by key.
FREEFORM = {
    "resources",
    "podSecurityContext",
    "securityContext",
    "env",
    "nodeSelector",
    "tolerations",
    "affinity",
    "labels",
    "annotations",
    "podAnnotations",
    "podLabels",
    "imagePullSecrets",
}


def _paths(values: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value and key not in FREEFORM:
            out += _paths(value, path)
        else:
            out.append(path)
    return out


def test_values_global_first_and_components_share_one_shape() -> None:
    values = load_yaml(CHART / "values.yaml")
    keys = list(values)
    assert keys[0] == "global"
    assert keys[1 : 1 + len(COMPONENTS)] == list(COMPONENTS)
    shapes = {key: sorted(_paths(values[key])) for key in COMPONENTS}
    first = shapes["onboarding"]
    assert all(shape == first for shape in shapes.values()), shapes
    assert {
        "enabled",
        "replicas",
        "image.repository",
        "resources",
        "autoscaling.enabled",
        "autoscaling.minReplicas",
        "autoscaling.maxReplicas",
        "autoscaling.targetCPUUtilizationPercentage",
        "pdb.enabled",
        "pdb.minAvailable",
        "env",
        "service.type",
        "service.port",
        "metrics.enabled",
        "nodeSelector",
        "tolerations",
        "affinity",
    } <= set(first)
    for key, service in COMPONENTS.items():
        assert values[key]["enabled"] is True
        assert values[key]["autoscaling"]["enabled"] is (key in {"dispatch", "telemetryIngest"})
        assert values[key]["service"]["port"] == PORTS[service]


def test_chart_readme_documents_every_value() -> None:
    values = load_yaml(CHART / "values.yaml")
    # The first cell of each table row: | `global.image.tag` | ... |
    readme = (CHART / "README.md").read_text()
    documented = set(re.findall(r"^\|\s*`([^`]+)`", readme, flags=re.MULTILINE))
    missing = []
    for top, block in values.items():
        if top in COMPONENTS:
            paths = [f"<component>.{p}" for p in _paths(block)]
            if top not in documented:
                missing.append(top)
        elif isinstance(block, dict) and block and top not in FREEFORM:
            paths = _paths(block, top)
        else:
            paths = [top]
        missing += [p for p in paths if p not in documented]
    assert not missing, f"helm/nexwatt/README.md does not document: {sorted(set(missing))}"
