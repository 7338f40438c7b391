"""The token server's Prometheus metrics: /metrics, the request histogram, counters per app."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import prometheus_client
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tokenserver.config import Config
from tokenserver.metrics import LOGIN_OUTCOMES, TOKEN_OUTCOMES, TokenMetrics

StartClient = Callable[[Config], AbstractContextManager[TestClient]]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

DURATION_COUNT = "tokenserver_request_duration_seconds_count"


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum over samples of `name` whose labels include `labels` (0 if none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def test_token_requests_are_timed_by_route_template(
    client: TestClient, add_user: Callable[..., str]
) -> None:
    before = scrape(client)
    password = add_user("alice")
    for _ in range(3):
        client.get("/token", params={"service": "registry"})
    ok = client.get(
        "/token",
        params={"service": "registry", "scope": "repository:alice/app:pull"},
        auth=("alice", password),
    )
    assert ok.status_code == 200, ok.text
    after = scrape(client)

    delta = value(after, DURATION_COUNT, method="GET", route="/token") - value(
        before, DURATION_COUNT, method="GET", route="/token"
    )
    assert delta == 4
    assert value(after, DURATION_COUNT, method="GET", route="/token", status="200") >= 1
    # The scrape before this one was itself timed, under its own route.
    assert value(after, DURATION_COUNT, method="GET", route="/metrics", status="200") >= 1
    buckets = value(after, "tokenserver_request_duration_seconds_bucket", route="/token", le="+Inf")
    assert buckets == value(after, DURATION_COUNT, route="/token")


def test_unknown_paths_and_methods_are_bounded(client: TestClient) -> None:
    client.get("/users/alice/secret-path")
    client.request("BREW", "/token")
    text = client.get("/metrics").text
    samples = parse(text)
    assert value(samples, DURATION_COUNT, route="unmatched", status="404") == 1
    assert value(samples, DURATION_COUNT, method="OTHER", route="/token") == 1
    assert "alice" not in text and "secret-path" not in text and "BREW" not in text


def test_counters_render_with_labels(client: TestClient) -> None:
    metrics: TokenMetrics = client.app.state.services.metrics  # type: ignore[attr-defined]
    before = scrape(client)
    # Every outcome is exported from the start, at zero until counted.
    for outcome in TOKEN_OUTCOMES:
        assert ("tokenserver_token_requests_total", frozenset({("outcome", outcome)})) in before

    metrics.token_request("granted")
    metrics.token_request("granted")
    metrics.token_request("throttled")
    metrics.login("database", "success")
    metrics.login("ldap", "failure")
    metrics.login("ldap", "failure")
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("tokenserver_token_requests_total", outcome="granted") == 2
    assert delta("tokenserver_token_requests_total", outcome="throttled") == 1
    assert delta("tokenserver_token_requests_total", outcome="denied") == 0
    assert delta("tokenserver_logins_total", backend="database", outcome="success") == 1
    assert delta("tokenserver_logins_total", backend="ldap", outcome="failure") == 2
    assert delta("tokenserver_logins_total", backend="ldap", outcome="success") == 0


def test_unknown_outcomes_are_refused() -> None:
    metrics = TokenMetrics()
    with pytest.raises(ValueError):
        metrics.token_request("alice")
    with pytest.raises(ValueError):
        metrics.login("database", "maybe")
    assert set(LOGIN_OUTCOMES) == {"success", "failure"}


def test_render_is_the_text_exposition() -> None:
    metrics = TokenMetrics()
    metrics.token_request("partial")
    metrics.login("htpasswd", "success")
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    samples = parse(body.decode())
    assert value(samples, "tokenserver_token_requests_total", outcome="partial") == 1
    assert value(samples, "tokenserver_logins_total", backend="htpasswd", outcome="success") == 1


def test_apps_do_not_share_counts(config: Config, start_client: StartClient) -> None:
    with start_client(config) as first, start_client(config) as second:
        for _ in range(5):
            first.get("/healthz")
        first.app.state.services.metrics.token_request("denied")  # type: ignore[attr-defined]
        one, two = scrape(first), scrape(second)
        assert value(one, DURATION_COUNT, route="/healthz") == 5
        assert value(two, DURATION_COUNT, route="/healthz") == 0
        assert value(one, "tokenserver_token_requests_total", outcome="denied") >= 1
        assert value(two, "tokenserver_token_requests_total", outcome="denied") == 0
    # Nothing lands in the process-wide default registry.
    default = prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()
    assert "tokenserver_" not in default


def test_metrics_is_not_in_the_openapi_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/metrics" not in paths
    assert "/token" in paths
