"""Issue 24: nothing the chart renders is public unless the values say so on purpose, and then only
for the source ranges given and, for the gateway, behind its API keys (docs/SECURITY.md)."""

from __future__ import annotations

import helm_python as helm
import pytest
import yaml

from finsent.access import KEY_FILE_ENV
from k8s import render
from tests.k8s.test_chart import PROFILES, RANGES, find

INTERNAL = {"networking.gke.io/load-balancer-type": "Internal"}


def public(service: dict) -> bool:
    """Reachable from outside the VPC: an external load balancer (or a port on every node)."""
    kind = service["spec"].get("type", "ClusterIP")
    internal = INTERNAL.items() <= service["metadata"].get("annotations", {}).items()
    return kind == "NodePort" or (kind == "LoadBalancer" and not internal)


def services(objects):
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}


def test_default_values_expose_nothing_publicly():
    rendered = services(render.objects(render.render()))
    assert rendered["finsent-triton"]["spec"]["type"] == "ClusterIP"
    assert not [name for name, service in rendered.items() if public(service)]
    # the committed manifests are that render (test_chart holds them fresh)
    committed = yaml.safe_load((render.MANIFESTS / "service.yaml").read_text())
    assert committed["spec"]["type"] == "ClusterIP"


@pytest.mark.parametrize("name", list(PROFILES))
def test_only_the_public_gateway_profile_is_public_and_only_its_gateway(name):
    objects = render.objects(render.render(PROFILES[name]))
    opened = {n: s for n, s in services(objects).items() if public(s)}
    if name != "public-gateway":
        assert opened == {}
        return
    (gateway,) = opened.values()
    assert gateway["metadata"]["name"].endswith("-gateway") and gateway["spec"]["loadBalancerSourceRanges"] == RANGES


def test_a_load_balancer_is_internal_unless_public_is_asked_for():
    triton = services(render.objects(render.render(values={"service": {"type": "LoadBalancer"}})))["finsent-triton"]
    assert triton["spec"]["type"] == "LoadBalancer" and not public(triton)
    # an annotation in values cannot make it public behind the operator's back: public: true does
    external = {"networking.gke.io/load-balancer-type": "External", "cloud.google.com/l4-rbs": "enabled"}
    values = {"service": {"type": "LoadBalancer", "annotations": external}}
    triton = services(render.objects(render.render(values=values)))["finsent-triton"]
    assert not public(triton) and triton["metadata"]["annotations"]["cloud.google.com/l4-rbs"] == "enabled"
    values = {"service": {"type": "LoadBalancer", "public": True, "loadBalancerSourceRanges": RANGES}}
    triton = services(render.objects(render.render(values=values)))["finsent-triton"]
    assert public(triton) and triton["spec"]["loadBalancerSourceRanges"] == RANGES


@pytest.mark.parametrize(
    "profiles, values, message",
    [
        # the public-gateway profile without the operator's source ranges
        (
            ["public-gateway"],
            {},
            "gateway.service.public: true opens the gateway to the internet: set "
            "gateway.service.loadBalancerSourceRanges",
        ),
        # ... or without its key Secret
        (PROFILES["public-gateway"], {"gateway": {"auth": {"secretName": ""}}}, "gateway.auth.secretName is empty"),
        # Triton public without source ranges
        ([], {"service": {"type": "LoadBalancer", "public": True}}, "set service.loadBalancerSourceRanges"),
        ([], {"service": {"public": True}}, "service.public: true needs service.type LoadBalancer"),
        ([], {"service": {"type": "NodePort"}}, 'service.type "NodePort": ClusterIP or LoadBalancer'),
    ],
)
def test_a_public_service_without_source_ranges_or_keys_fails_to_render_saying_what_to_set(profiles, values, message):
    with pytest.raises(helm.HelmRenderError) as raised:
        render.render(profiles, values)
    assert message in " ".join(str(raised.value).split()), str(raised.value)


@pytest.mark.parametrize("name", [n for n in PROFILES if "gateway" in n])
def test_the_gateway_reads_its_keys_from_a_mounted_secret_that_can_rotate(name):
    objects = render.objects(render.render(PROFILES[name]))
    (deployment,) = find(objects, "Deployment", "gateway")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    secret = next(v["secret"] for v in pod["volumes"] if "secret" in v)
    assert secret["secretName"] == "finsent-gateway-keys" and secret.get("optional") is not True
    (mount,) = [
        m for m in container["volumeMounts"] if m["name"] == next(v["name"] for v in pod["volumes"] if "secret" in v)
    ]
    # no subPath: Kubernetes updates a mounted Secret in place only when the whole volume is mounted
    assert mount["readOnly"] and "subPath" not in mount
    assert env[KEY_FILE_ENV]["value"] == f"{mount['mountPath']}/api-keys"
    # never a key in the pod spec itself
    assert not any("API_KEY" in n and n != KEY_FILE_ENV for n in env)
    # the probes' paths stay open without a key (tests/client/test_gateway.py)
    assert {container["livenessProbe"]["httpGet"]["path"], container["readinessProbe"]["httpGet"]["path"]} == {
        "/healthz",
        "/readyz",
    }
