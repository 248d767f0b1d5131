"""The chart's optional vendor connectors (`nexwatt-ingest connect`): off by default; when on, one
pod that reads its sites from a mounted ConfigMap and its vendor credentials only from a Secret."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from nexwatt_telemetry_ingest.connectors.runner import VENDORS, load_sites
from tests.deploy.support import (
    CHART,
    CONNECTORS,
    KUBE_VERSION,
    SITES_FILE,
    helm_template,
    load_yaml,
    run,
)

VALUES = CHART / "ci" / "connectors-values.yaml"
SENTINEL = "sk-do-not-leak-0123456789"  # a credential value to look for in the output


def _connectors(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        d
        for d in docs
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == CONNECTORS
    ]


def _one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = [d for d in _connectors(docs) if d["kind"] == kind]
    return doc


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def _sites_configmap(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (configmap,) = [
        d for d in _connectors(docs) if d["kind"] == "ConfigMap" and "sites.json" in d["data"]
    ]
    return configmap


def _validate(docs: list[dict[str, Any]]) -> None:
    errors = []
    for doc in docs:
        if doc["kind"] in {"ServiceMonitor", "PrometheusRule"}:
            continue
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {path}: {e.message}")
    assert not errors, "\n".join(errors)


def test_values_off_by_default_with_one_replica() -> None:
    values = load_yaml(CHART / "values.yaml")
    block = values[CONNECTORS]
    assert block["enabled"] is False
    assert block["replicas"] == 1
    assert block["sites"] == []
    assert block["secrets"] == {}
    assert block["existingSecret"] == ""


def test_renders_only_when_enabled(rendered) -> None:
    for name, docs in rendered.items():
        assert bool(_connectors(docs)) == (name == VALUES.name), name
    kinds = sorted(d["kind"] for d in _connectors(rendered[VALUES.name]))
    # No Service, HPA, PDB or ServiceMonitor: it serves no HTTP and must stay one pod.
    expected = ["ConfigMap", "ConfigMap", "Deployment", "NetworkPolicy", "Secret", "ServiceAccount"]
    assert kinds == expected


def test_no_service_or_monitor_even_with_service_monitors_on(helm: str) -> None:
    docs = helm_template(helm, "-f", str(VALUES), "--set", "serviceMonitor.enabled=true")
    kinds = {d["kind"] for d in _connectors(docs)}
    assert kinds.isdisjoint({"Service", "ServiceMonitor", "HorizontalPodAutoscaler"})
    assert "PodDisruptionBudget" not in kinds


def test_deployment_runs_the_connector_runner(rendered) -> None:
    docs = rendered[VALUES.name]
    deployment = _one(docs, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    # Never two pods at once, not even during a rollout.
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    container = _container(docs)
    assert container["command"] == [
        "nexwatt-ingest", "connect", "--sites", SITES_FILE, "--backfill-hours", "24",
    ]  # fmt: skip
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert probe not in container  # no HTTP server to probe
    assert "ports" not in container
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == _one(docs, "ServiceAccount")["metadata"]["name"]
    annotations = spec["template"]["metadata"]["annotations"]
    assert {"checksum/config", "checksum/secret"} <= annotations.keys()
    # Its cursors are in telemetry-ingest's database (it applies those migrations on start).
    env = next(
        d for d in _connectors(docs) if d["kind"] == "ConfigMap" and "sites.json" not in d["data"]
    )
    assert env["data"]["NEXWATT_POSTGRES_DATABASE"] == "nexwatt_telemetry_ingest"


def test_sites_file_is_mounted_and_the_runner_accepts_it(rendered, tmp_path: Path) -> None:
    docs = rendered[VALUES.name]
    configmap = _sites_configmap(docs)
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    (mount,) = [m for m in _container(docs)["volumeMounts"] if m["mountPath"] != "/tmp"]
    assert mount["readOnly"] is True
    assert volumes[mount["name"]]["configMap"]["name"] == configmap["metadata"]["name"]
    assert f"{mount['mountPath']}/sites.json" == SITES_FILE

    sites_file = tmp_path / "sites.json"
    sites_file.write_text(configmap["data"]["sites.json"])
    sites = load_sites(sites_file)
    given = load_yaml(VALUES)[CONNECTORS]["sites"]
    assert [(s.asset_id, s.vendor, s.site_id, s.timezone) for s in sites] == [
        (g["asset_id"], g["vendor"], str(g["site_id"]), g["timezone"]) for g in given
    ]
    assert sites[0].site_id == "1234567"  # a YAML number, not 1.234567e+06


def test_template_vendors_are_the_runners(helm: str) -> None:
    sites = [
        {"asset_id": f"A-{i}", "vendor": v, "site_id": str(i), "timezone": "Europe/Berlin"}
        for i, v in enumerate(VENDORS)
    ]
    docs = helm_template(
        helm, "-f", str(VALUES), "--set-json", f"connectors.sites={json.dumps(sites)}"
    )
    rendered_sites = json.loads(_sites_configmap(docs)["data"]["sites.json"])
    assert [s["vendor"] for s in rendered_sites] == list(VENDORS)


def test_secrets_only_in_a_secret_the_connectors_alone_read(helm: str) -> None:
    docs = helm_template(
        helm, "-f", str(VALUES), "--set", f"connectors.secrets.NEXWATT_ENPHASE_API_KEY={SENTINEL}"
    )
    for doc in docs:
        if doc["kind"] != "Secret":
            assert SENTINEL not in yaml.safe_dump(doc), f"{doc['kind']}/{doc['metadata']['name']}"
    secret = _one(docs, "Secret")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {"NEXWATT_SOLAREDGE_API_KEY": "change-me", "NEXWATT_ENPHASE_API_KEY": SENTINEL}
    name = secret["metadata"]["name"]
    refs = [r["secretRef"]["name"] for r in _container(docs)["envFrom"] if "secretRef" in r]
    assert refs == ["nexwatt", name]  # the release's credentials, then the vendors'
    assert not [e for e in _container(docs).get("env", []) if "value" in e]
    for doc in docs:
        if doc["kind"] in {"Deployment", "Job"} and doc not in _connectors(docs):
            assert name not in json.dumps(doc), doc["metadata"]["name"]


def test_existing_secret_replaces_the_vendor_secret(helm: str) -> None:
    docs = helm_template(
        helm,
        "-f", str(VALUES),
        "--set", f"connectors.secrets.NEXWATT_ENPHASE_API_KEY={SENTINEL}",
        "--set", "connectors.existingSecret=vendor-credentials",
        "--set", "global.existingSecret=nexwatt-credentials",
    )  # fmt: skip
    assert SENTINEL not in json.dumps(docs)
    assert not [d for d in docs if d["kind"] == "Secret"]  # neither the release's nor the vendors'
    refs = [r["secretRef"]["name"] for r in _container(docs)["envFrom"] if "secretRef" in r]
    assert refs == ["nexwatt-credentials", "vendor-credentials"]
    _validate(docs)


def test_without_vendor_secrets_only_the_release_secret(helm: str) -> None:
    docs = helm_template(helm, "-f", str(VALUES), "--set", "connectors.secrets=null")
    assert not [d for d in _connectors(docs) if d["kind"] == "Secret"]
    refs = [r["secretRef"]["name"] for r in _container(docs)["envFrom"] if "secretRef" in r]
    assert refs == ["nexwatt"]
    _validate(docs)


def test_checksums_roll_the_pod_on_sites_and_secrets(helm: str) -> None:
    def checksums(*extra: str) -> dict[str, str]:
        docs = helm_template(helm, "-f", str(VALUES), *extra)
        return _one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]

    base = checksums()
    sites = checksums("--set", "connectors.sites[0].site_id=7654321")
    secret = checksums("--set", "connectors.secrets.NEXWATT_SOLAREDGE_API_KEY=other")
    assert sites["checksum/config"] != base["checksum/config"]
    assert sites["checksum/secret"] == base["checksum/secret"]
    assert secret["checksum/secret"] != base["checksum/secret"]
    assert secret["checksum/config"] == base["checksum/config"]


def _sites(*sites: dict[str, str]) -> list[str]:
    return ["--set-json", f"connectors.sites={json.dumps(list(sites))}"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "connectors.sites=null"], "connectors.sites is empty"),
        (
            _sites({"asset_id": "A", "vendor": "solaredge", "site_id": "1"}),
            "connectors.sites[0].timezone is required",
        ),
        (
            _sites({"asset_id": "A", "vendor": "tesla", "site_id": "1", "timezone": "UTC"}),
            'connectors.sites[0].vendor "tesla" is not one of',
        ),
        (
            ["--set", "connectors.secrets.SOLAREDGE_API_KEY=x"],
            "keys are environment variables named NEXWATT_*",
        ),
    ],
)
def test_bad_connector_values_fail_with_a_clear_message(helm: str, args, message) -> None:
    command = [helm, "template", "nexwatt", str(CHART), "--kube-version", KUBE_VERSION]
    result = run([*command, "-f", str(VALUES), *args])
    assert result.returncode != 0
    assert message in result.stderr
