"""The chart's NetworkPolicies: one per component, for the connectors and for the migrations Job,
each admitting only its listed peers on its HTTP port and reaching only DNS, Kafka, PostgreSQL,
Redis (where used) and the components it calls; and no credential outside a Secret."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.deploy.support import CHART, COMPONENTS, KUBE_VERSION, PORTS, helm_template, run

DEFAULT = ["-f", str(CHART / "ci" / "default-values.yaml")]
NARROWED = ["-f", str(CHART / "ci" / "network-policy-values.yaml")]
CONNECTORS = ["-f", str(CHART / "ci" / "connectors-values.yaml")]

COMPONENT = "app.kubernetes.io/component"
# Peers written short: "ns=<namespace name>", "ns=<namespace>/pod=<app name>",
# "pod=<component of this release>", "ip=<cidr>", "any".
INGRESS_CONTROLLER = "ns=ingress-nginx"
PROMETHEUS = "ns=monitoring/pod=prometheus"
DNS = "ns=kube-system/pod=kube-dns"

# Hand-written from the values' defaults: (peer, port) pairs admitted to each component.
# Only onboarding's API checks API keys so far: the others' read endpoints stay in-cluster.
EXPECTED_INGRESS = {
    "onboarding": {(INGRESS_CONTROLLER, 8081), (PROMETHEUS, 8081)},
    "telemetry-ingest": {(PROMETHEUS, 8082), ("pod=onboarding", 8082)},
    "capacity-model": {(PROMETHEUS, 8083)},
    "dispatch": {(PROMETHEUS, 8084)},  # no API
    "settlement": {(PROMETHEUS, 8085)},
}
BASE_EGRESS = {(DNS, "53/UDP"), (DNS, "53/TCP"), ("any", "9092/TCP"), ("any", "5432/TCP")}
EXPECTED_EGRESS = {
    "onboarding": BASE_EGRESS | {("pod=telemetry-ingest", "8082/TCP")},
    "telemetry-ingest": BASE_EGRESS,
    "capacity-model": BASE_EGRESS,
    "dispatch": BASE_EGRESS | {("any", "6379/TCP")},  # its view's snapshot in Redis
    "settlement": BASE_EGRESS,
}


def _peer(peer: dict[str, Any]) -> str:
    if "ipBlock" in peer:
        return f"ip={peer['ipBlock']['cidr']}"
    parts = []
    if "namespaceSelector" in peer:
        parts.append(
            f"ns={peer['namespaceSelector']['matchLabels']['kubernetes.io/metadata.name']}"
        )
    if "podSelector" in peer:
        labels = peer["podSelector"]["matchLabels"]
        if "app.kubernetes.io/component" in labels:
            assert labels["app.kubernetes.io/instance"] == "nexwatt"  # this release's pods only
            parts.append(f"pod={labels['app.kubernetes.io/component']}")
        else:
            parts.append(f"pod={labels.get('app.kubernetes.io/name') or labels['k8s-app']}")
    return "/".join(parts)


def _ingress(policy: dict[str, Any]) -> set[tuple[str, int]]:
    out = set()
    for rule in policy["spec"]["ingress"]:
        assert rule["from"], "a rule without `from` admits everyone"
        for peer in rule["from"]:
            for port in rule["ports"]:
                assert port["protocol"] == "TCP"
                out.add((_peer(peer), port["port"]))
    return out


def _egress(policy: dict[str, Any]) -> set[tuple[str, str]]:
    out = set()
    for rule in policy["spec"]["egress"]:
        assert rule["ports"], "an egress rule without ports opens every port"
        peers = [_peer(p) for p in rule.get("to", [])] or ["any"]
        for peer in peers:
            for port in rule["ports"]:
                out.add((peer, f"{port['port']}/{port['protocol']}"))
    return out


def _policies(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """NetworkPolicies by the component label of the pods they select."""
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    by_component = {p["spec"]["podSelector"]["matchLabels"][COMPONENT]: p for p in policies}
    assert len(by_component) == len(policies), "two policies select the same pods"
    return by_component


@pytest.fixture(scope="module")
def default(helm: str) -> list[dict[str, Any]]:
    return helm_template(helm, *DEFAULT)


def test_one_policy_per_component_and_the_migrations_job(default) -> None:
    policies = _policies(default)
    assert set(policies) == set(COMPONENTS.values()) | {"migrations"}
    pods = {
        d["metadata"]["labels"][COMPONENT]: d["spec"]["template"]["metadata"]["labels"]
        for d in default
        if d["kind"] in {"Deployment", "Job"}
    }
    for component, policy in policies.items():
        # Default deny both ways: only the listed rules pass.
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        selector = policy["spec"]["podSelector"]["matchLabels"]
        selected = {name for name, labels in pods.items() if selector.items() <= labels.items()}
        assert selected == {component}


@pytest.mark.parametrize("component", sorted(EXPECTED_INGRESS))
def test_each_component_admits_its_peers_on_its_port_only(default, component) -> None:
    policy = _policies(default)[component]
    assert _ingress(policy) == EXPECTED_INGRESS[component]
    assert {port for _, port in EXPECTED_INGRESS[component]} == {PORTS[component]}
    assert _egress(policy) == EXPECTED_EGRESS[component]


def test_the_migrations_job_policy_is_a_hook_before_the_job(default) -> None:
    policy = _policies(default)["migrations"]
    assert policy["spec"]["ingress"] == []
    assert _egress(policy) == BASE_EGRESS
    (job,) = [d for d in default if d["kind"] == "Job"]
    hook, job_hook = policy["metadata"]["annotations"], job["metadata"]["annotations"]
    assert hook["helm.sh/hook"] == job_hook["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(hook["helm.sh/hook-weight"]) < int(job_hook["helm.sh/hook-weight"])
    assert "hook-succeeded" in hook["helm.sh/hook-delete-policy"].split(",")


def test_connectors_accept_nothing_and_reach_the_vendors(helm: str) -> None:
    policy = _policies(helm_template(helm, *CONNECTORS))["connectors"]
    assert policy["spec"]["ingress"] == []
    assert _egress(policy) == BASE_EGRESS | {("any", "443/TCP"), ("any", "502/TCP")}


def test_disabled_renders_no_policy(helm: str) -> None:
    for values in (DEFAULT, CONNECTORS):
        docs = helm_template(helm, *values, "--set", "networkPolicy.enabled=false")
        assert not [d for d in docs if d["kind"] == "NetworkPolicy"]
        assert [d for d in docs if d["kind"] == "Deployment"]


def test_narrowed_peers_from_values(helm: str) -> None:
    policies = _policies(helm_template(helm, *NARROWED))
    ingest = policies["telemetry-ingest"]
    assert ("ns=traefik", 8081) in _ingress(policies["onboarding"])
    assert _ingress(ingest) == {
        ("ns=der-gateways", 8082),  # gateways.components: [telemetryIngest]
        ("ns=observability", 8082),
        ("pod=onboarding", 8082),
    }
    assert ("ns=der-gateways", 8081) not in _ingress(policies["onboarding"])
    servers = {("ns=kafka", "9093/TCP"), ("ip=10.20.0.0/16", "5432/TCP")}
    assert _egress(ingest) == {(DNS, "53/UDP"), (DNS, "53/TCP")} | servers
    assert ("ip=10.30.0.0/16", "6379/TCP") in _egress(policies["dispatch"])
    assert _egress(policies["migrations"]) == {(DNS, "53/UDP"), (DNS, "53/TCP")} | servers


def test_an_empty_peer_list_admits_nobody(helm: str) -> None:
    docs = helm_template(
        helm,
        *DEFAULT,
        "--set", "networkPolicy.apiClients.from=null",
        "--set", "dispatch.metrics.enabled=false",
        "--set", "networkPolicy.internal=null",
    )  # fmt: skip
    policies = _policies(docs)
    assert _ingress(policies["onboarding"]) == {(PROMETHEUS, 8081)}
    assert policies["dispatch"]["spec"]["ingress"] == []  # deny all, not allow all
    assert _egress(policies["onboarding"]) == BASE_EGRESS


def test_internal_calls_skip_a_disabled_component(helm: str) -> None:
    docs = helm_template(helm, *DEFAULT, "--set", "telemetryIngest.enabled=false")
    assert _egress(_policies(docs)["onboarding"]) == BASE_EGRESS


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ('networkPolicy.gateways.components=["telemetry-ingest"]', "gateways.components"),
        ('networkPolicy.internal=[{"from": "onboarding", "to": "ingest"}]', "internal[0].to"),
    ],
)
def test_unknown_component_keys_fail_rendering(helm: str, setting, message) -> None:
    command = [helm, "template", "nexwatt", str(CHART), "--kube-version", KUBE_VERSION]
    result = run([*command, *DEFAULT, "--set-json", setting])
    assert result.returncode != 0
    assert message in result.stderr and "is not one of" in result.stderr


# --- credentials stay in Secrets ------------------------------------------------------------------

# values key -> (value, the secret part of it)
CREDENTIALS = {
    "global.postgres.url": ("postgresql://nexwatt:Pg-s3cret-7q@pg.db:5432", "Pg-s3cret-7q"),
    "global.redis.url": ("redis://:Rd-s3cret-8w@redis.cache:6379/0", "Rd-s3cret-8w"),
    "global.kafka.sasl.password": ("Kf-s3cret-9e", "Kf-s3cret-9e"),
    "connectors.secrets.NEXWATT_SOLAREDGE_API_KEY": ("Se-s3cret-0r", "Se-s3cret-0r"),
}


def test_no_credential_outside_a_secret(helm: str) -> None:
    args = [*CONNECTORS, "--set", "global.kafka.sasl.enabled=true"]
    args += ["--set", "global.kafka.sasl.username=svc-nexwatt"]
    for key, (value, _) in CREDENTIALS.items():
        args += ["--set", f"{key}={value}"]
    docs = helm_template(helm, *args)
    secrets = [d for d in docs if d["kind"] == "Secret"]
    in_secrets = " ".join(base64.b64decode(v).decode() for s in secrets for v in s["data"].values())
    # ConfigMaps, annotations, env values, the Job: everything but the Secrets.
    others = json.dumps([d for d in docs if d["kind"] != "Secret"])
    for value, secret in CREDENTIALS.values():
        assert value in in_secrets
        for form in (secret, base64.b64encode(value.encode()).decode()):
            assert form not in others, f"{form} outside a Secret"
    # The Secret the hook Job reads is a hook too, deleted once the hooks are done.
    (hook_secret,) = [s for s in secrets if "helm.sh/hook" in s["metadata"].get("annotations", {})]
    policy = hook_secret["metadata"]["annotations"]["helm.sh/hook-delete-policy"].split(",")
    assert {"before-hook-creation", "hook-succeeded"} <= set(policy)
    (job,) = [d for d in docs if d["kind"] == "Job"]
    assert job["spec"]["ttlSecondsAfterFinished"] > 0  # a failed Job does not stay for ever
    for container in job["spec"]["template"]["spec"]["initContainers"]:
        assert not [e for e in container.get("env", []) if "valueFrom" in e]
        assert [r["secretRef"]["name"] for r in container["envFrom"]] == [
            hook_secret["metadata"]["name"]
        ]
