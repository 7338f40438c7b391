"""Upstream credentials from a docker credential helper (`exec`): a real helper script, run
as docker runs one, against fake upstreams on 127.0.0.1 checking what they were sent.

The helper runs once, for every request or again after its lifetime, as configured; callers
at once share one run; a helper that fails, answers nonsense, floods or hangs is cut within
its bounds and is `UpstreamUnavailable`, its secret in no message and no log record; an
upstream refusing what the helper gave has it asked once more, and only once.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from registry_proxy.app import create_app
from registry_proxy.config import Config
from registry_proxy.upstreams import exec_credentials
from registry_proxy.upstreams.client import UpstreamClient, UpstreamDenied, UpstreamUnavailable
from registry_proxy.upstreams.credentials import Credentials
from registry_proxy.upstreams.exec_credentials import ExecCredentials
from tests.conftest import LeakGuard
from tests.registry.conftest import Mint, token_auth
from tests.registry.test_pull_through_hostile import MANIFEST, MANIFEST_DIGEST, OCI
from tests.support.exec_helper import HelperScript
from tests.support.fake_upstream import Answer, FakeUpstream, Seen

pytestmark = pytest.mark.anyio

NAME = "library/app"
USER, SECRET, ROTATED = "puller", "helper-secret-4d1f", "helper-rotated-9a2c"
OCI_MANIFEST = OCI


def basic(secret: str, user: str = USER) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def guard(leak_guard: LeakGuard) -> LeakGuard:
    for secret in (SECRET, ROTATED, basic(SECRET).split()[1], basic(ROTATED).split()[1]):
        leak_guard.add(secret)
    return leak_guard


@pytest.fixture
def helper(tmp_path: Path) -> HelperScript:
    script = HelperScript(tmp_path / "helper")
    script.behave(secret=SECRET)
    return script


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


def manifest(seen: Seen) -> Answer:
    headers = {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": MANIFEST_DIGEST}
    return Answer(200, headers, MANIFEST)


def accepting(*secrets: str) -> Callable[[Seen], Answer]:
    """A Basic-protected upstream taking the helper's user with any of `secrets`."""
    accepted = {basic(secret) for secret in secrets}

    def answer(seen: Seen) -> Answer:
        if seen.headers.get("authorization") not in accepted:
            return Answer(401, {"WWW-Authenticate": 'Basic realm="upstream"'})
        return manifest(seen)

    return answer


def client_of(
    upstream: FakeUpstream, helper: HelperScript, lifetime: float | None
) -> UpstreamClient:
    command = helper.command("--registry", "an upstream")
    source = ExecCredentials(command, upstream.origin, lifetime=lifetime)
    return UpstreamClient(upstream.origin, credentials=source, timeout=15)


@pytest.fixture
async def pulls(upstream: FakeUpstream) -> AsyncIterator[list[UpstreamClient]]:
    """The clients a test made, closed after it."""
    made: list[UpstreamClient] = []
    yield made
    for client in made:
        await client.aclose()


async def pull(client: UpstreamClient) -> bytes:
    return (await client.get_manifest(NAME, "v1", [OCI_MANIFEST])).body


# -- how often the helper runs ------------------------------------------------------


async def test_without_a_lifetime_the_helper_runs_once_as_docker_runs_it(
    upstream: FakeUpstream, helper: HelperScript, pulls: list[UpstreamClient], guard: LeakGuard
) -> None:
    upstream.answer = accepting(SECRET)
    pulls.append(client := client_of(upstream, helper, None))
    for _ in range(3):
        assert await pull(client) == MANIFEST
    runs = helper.runs()
    assert len(runs) == 1
    # `<command> get`, the command's words kept as a shell would split them, the URL on stdin.
    assert runs[0]["argv"] == ["--registry", "an upstream", "get"]
    assert runs[0]["server"] == upstream.origin
    # Anonymous first, then the helper's credentials, sent up front after.
    sent = [seen.headers.get("authorization") for seen in upstream.seen]
    assert sent == [None, basic(SECRET), basic(SECRET), basic(SECRET)]


async def test_a_lifetime_of_zero_runs_the_helper_for_every_request(
    upstream: FakeUpstream, helper: HelperScript, pulls: list[UpstreamClient], guard: LeakGuard
) -> None:
    upstream.answer = accepting(SECRET, ROTATED)
    pulls.append(client := client_of(upstream, helper, 0))
    assert await pull(client) == MANIFEST
    helper.behave(secret=ROTATED)
    assert await pull(client) == MANIFEST
    assert await pull(client) == MANIFEST
    assert len(helper.runs()) == 3
    assert [s.headers.get("authorization") for s in upstream.seen][-2:] == [basic(ROTATED)] * 2


async def test_a_lifetime_keeps_the_answer_that_long_then_runs_the_helper_again(
    upstream: FakeUpstream, helper: HelperScript, pulls: list[UpstreamClient], guard: LeakGuard
) -> None:
    upstream.answer = accepting(SECRET, ROTATED)
    pulls.append(client := client_of(upstream, helper, 2))
    started = time.monotonic()
    assert await pull(client) == MANIFEST
    helper.behave(secret=ROTATED)
    assert await pull(client) == MANIFEST
    if time.monotonic() - started < 2:
        assert len(helper.runs()) == 1
        assert upstream.seen[-1].headers["authorization"] == basic(SECRET)
    await asyncio.sleep(max(0.0, 2.2 - (time.monotonic() - started)))
    assert await pull(client) == MANIFEST
    assert len(helper.runs()) == 2
    assert upstream.seen[-1].headers["authorization"] == basic(ROTATED)


async def test_callers_at_once_share_one_run(
    upstream: FakeUpstream, helper: HelperScript, pulls: list[UpstreamClient], guard: LeakGuard
) -> None:
    helper.behave(secret=SECRET, delay=0.5)
    upstream.answer = accepting(SECRET)
    pulls.append(client := client_of(upstream, helper, None))
    bodies = await asyncio.gather(*(pull(client) for _ in range(12)))
    assert bodies == [MANIFEST] * 12
    assert len(helper.runs()) == 1


async def test_with_a_lifetime_of_zero_callers_at_once_still_share_the_run_under_way(
    helper: HelperScript, guard: LeakGuard
) -> None:
    helper.behave(secret=SECRET, delay=0.5)
    source = ExecCredentials(helper.command(), "http://127.0.0.1:1", lifetime=0)
    got = await asyncio.gather(*(source() for _ in range(8)))
    assert got == [Credentials(USER, SECRET)] * 8
    assert len(helper.runs()) == 1
    assert await source() == Credentials(USER, SECRET)
    assert len(helper.runs()) == 2  # nothing kept once it ended


# -- a refused secret ---------------------------------------------------------------


async def test_credentials_refused_are_asked_for_once_more(
    upstream: FakeUpstream, helper: HelperScript, pulls: list[UpstreamClient], guard: LeakGuard
) -> None:
    upstream.answer = accepting(SECRET)
    pulls.append(client := client_of(upstream, helper, 3600))
    assert await pull(client) == MANIFEST
    # The secret rotates at the upstream and in the helper's store within the lifetime.
    upstream.answer = accepting(ROTATED)
    helper.behave(secret=ROTATED)
    assert await pull(client) == MANIFEST
    assert len(helper.runs()) == 2
    # The one held sent up front and refused, then the helper's new one.
    sent = [seen.headers.get("authorization") for seen in upstream.seen]
    assert sent[-2:] == [basic(SECRET), basic(ROTATED)]


async def test_a_helper_giving_what_was_refused_is_run_again_once_per_request_not_more(
    upstream: FakeUpstream, helper: HelperScript, pulls: list[UpstreamClient], guard: LeakGuard
) -> None:
    upstream.answer = accepting(ROTATED)  # the helper's secret is not (any more) good
    pulls.append(client := client_of(upstream, helper, 3600))
    with pytest.raises(UpstreamDenied) as caught:
        await pull(client)
    assert guard.found_in(f"{caught.value} {caught.value!r}") == []
    assert len(helper.runs()) == 2  # the first run, and one more for the refusal
    # Its second answer was the one refused: not sent again.
    assert [s.headers.get("authorization") for s in upstream.seen] == [None, basic(SECRET)]


async def test_a_helper_that_runs_once_is_not_run_again_when_refused(
    upstream: FakeUpstream, helper: HelperScript, pulls: list[UpstreamClient], guard: LeakGuard
) -> None:
    upstream.answer = accepting(ROTATED)
    pulls.append(client := client_of(upstream, helper, None))
    for _ in range(2):
        with pytest.raises(UpstreamDenied):
            await pull(client)
    assert len(helper.runs()) == 1


async def test_the_token_realm_gets_the_helper_s_credentials_and_a_refusal_there_renews_them(
    upstream: FakeUpstream, helper: HelperScript, pulls: list[UpstreamClient], guard: LeakGuard
) -> None:
    token = guard.add("realm-token-77e1")
    with FakeUpstream() as realm:
        challenge = f'Bearer realm="{realm.origin}/token",service="upstream.test"'
        upstream.answer = lambda seen: (
            manifest(seen)
            if seen.headers.get("authorization") == f"Bearer {token}"
            else Answer(401, {"WWW-Authenticate": challenge})
        )
        realm.answer = lambda seen: (
            Answer(200, {"Content-Type": "application/json"}, b'{"token":"%s"}' % token.encode())
            if seen.headers.get("authorization") == basic(ROTATED)
            else Answer(401, {"WWW-Authenticate": 'Basic realm="tokens"'})
        )
        # The realm refuses the first run's secret; run again, the helper has the rotated one.
        helper.behave(secret=SECRET, then=ROTATED)
        pulls.append(client := client_of(upstream, helper, 3600))
        assert await pull(client) == MANIFEST
        assert await pull(client) == MANIFEST  # the token held: neither realm nor helper asked
        assert [s.headers.get("authorization") for s in realm.seen] == [
            basic(SECRET),
            basic(ROTATED),
        ]
        assert len(helper.runs()) == 2
        assert all(
            "authorization" not in s.headers or "Basic" not in s.headers["authorization"]
            for s in upstream.seen
        )


# -- hostile helpers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("fail", "exited with status 1"),
        ("garbage", "answered no JSON object"),
        ("list", "answered no JSON object"),
        ("deep", "answered no JSON object"),
        ("no-secret", "answered no Username and Secret"),
        ("flood", f"more than {exec_credentials.MAX_OUTPUT} bytes of output"),
    ],
)
async def test_a_helper_failing_or_answering_nonsense_is_unavailable_naming_no_secret(
    upstream: FakeUpstream,
    helper: HelperScript,
    pulls: list[UpstreamClient],
    guard: LeakGuard,
    caplog: pytest.LogCaptureFixture,
    mode: str,
    reason: str,
) -> None:
    argument = guard.add("--token=argument-secret-5")  # a command's arguments may hold one
    helper.behave(mode, secret=SECRET)
    upstream.answer = accepting(SECRET)
    source = ExecCredentials(helper.command(argument), upstream.origin, lifetime=None)
    pulls.append(client := UpstreamClient(upstream.origin, credentials=source, timeout=15))
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable) as caught:
        await pull(client)
    assert time.monotonic() - started < 8  # a flood is cut at its cap, not read to its end
    text = f"{caught.value} {caught.value!r}"
    assert text.startswith(f"credential helper '{helper.path.name}': {reason}"), text
    assert guard.found_in(text) == []
    # Logged: what failed, with stderr's size alone (it held the secret).
    failures = [r for r in caplog.records if r.getMessage() == "credential helper failed"]
    assert len(failures) == 1 and failures[0].reason == reason  # type: ignore[attr-defined]
    if mode == "fail":
        assert failures[0].stderr_bytes == len(f"vault refused the token {SECRET}\n")  # type: ignore[attr-defined]
    # Nothing went to the upstream but the anonymous first try.
    assert [s.headers.get("authorization") for s in upstream.seen] == [None]
    # A failed run keeps nothing: the next request runs the helper again.
    helper.behave(secret=SECRET)
    assert await pull(client) == MANIFEST
    assert len(helper.runs()) == 2


async def test_a_helper_that_hangs_is_killed_at_the_deadline_with_what_it_started(
    helper: HelperScript, guard: LeakGuard
) -> None:
    helper.behave("hang")
    source = ExecCredentials(helper.command(), "http://127.0.0.1:1", lifetime=None, deadline=1.5)
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable, match=r"no answer within 1\.5 s"):
        await source()
    elapsed = time.monotonic() - started
    assert 1.5 <= elapsed < 4, elapsed
    # The `sleep` it started held its output open: killed with it, not left behind.
    deadline = time.monotonic() + 3
    while helper.child_alive() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not helper.child_alive()


def test_the_default_deadline_is_ten_seconds_and_output_64_kib() -> None:
    assert exec_credentials.DEADLINE == 10.0
    assert exec_credentials.MAX_OUTPUT == 64 * 1024


async def test_a_helper_that_cannot_be_started_is_unavailable(tmp_path: Path) -> None:
    source = ExecCredentials(str(tmp_path / "missing"), "http://127.0.0.1:1", lifetime=None)
    with pytest.raises(UpstreamUnavailable, match="cannot be started"):
        await source()


async def test_closing_ends_a_run_under_way(helper: HelperScript) -> None:
    helper.behave("hang")
    source = ExecCredentials(helper.command(), "http://127.0.0.1:1", lifetime=None)
    waiting = asyncio.ensure_future(source())
    while not helper.runs():
        await asyncio.sleep(0.05)
    started = time.monotonic()
    await source.aclose()
    assert time.monotonic() - started < 2
    with pytest.raises(asyncio.CancelledError):
        await waiting
    deadline = time.monotonic() + 3
    while helper.child_alive() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not helper.child_alive()


# -- what the helper gets -------------------------------------------------------------


async def test_the_helper_gets_our_environment_without_our_own_configuration(
    helper: HelperScript,
) -> None:
    environ = {
        "PATH": os.environ["PATH"],
        "HOME": "/nonexistent",
        "AWS_PROFILE": "ecr-puller",
        "DOCKER_CONFIG": "/etc/docker-helper",
        "REGISTRY_PROXY_STORAGE_S3_SECRETKEY": "ours-1",
        "TOKENSERVER_DATABASE_URL": "ours-2",
    }
    source = ExecCredentials(helper.command(), "http://127.0.0.1:1", lifetime=None, environ=environ)
    assert await source() == Credentials(USER, SECRET)
    got = set(helper.runs()[0]["env"])
    assert {"PATH", "HOME", "AWS_PROFILE", "DOCKER_CONFIG"} <= got
    assert not {name for name in got if name.startswith(("REGISTRY_PROXY_", "TOKENSERVER_"))}


def test_credentials_and_the_source_show_no_secret(helper: HelperScript) -> None:
    source = ExecCredentials(helper.command("--token=x"), "http://127.0.0.1:1", lifetime=None)
    assert SECRET not in repr(Credentials(USER, SECRET))
    assert "--token" not in repr(source) and helper.path.name in repr(source)


@pytest.mark.parametrize("command", ["", "   ", "'unclosed", "a\x00b"])
def test_a_command_naming_no_program_is_refused(command: str) -> None:
    with pytest.raises(ValueError):
        ExecCredentials(command, "http://127.0.0.1:1", lifetime=None)


def test_a_client_takes_a_source_or_a_username_and_password_not_both(
    helper: HelperScript,
) -> None:
    source = ExecCredentials(helper.command(), "http://127.0.0.1:1", lifetime=None)
    with pytest.raises(ValueError, match="not both"):
        UpstreamClient("http://127.0.0.1:1", username="u", password="p", credentials=source)


# -- through our registry -------------------------------------------------------------


def _registry(storage_root: Path, keys_dir: Path, **sections: object) -> TestClient:
    config = Config.model_validate(
        {
            "storage": {"filesystem": {"rootdirectory": str(storage_root)}},
            "auth": token_auth(keys_dir),
            **sections,
        }
    )
    return TestClient(create_app(config))


@pytest.mark.parametrize("section", ["proxy", "upstreams"])
def test_our_registry_pulls_with_the_helper_s_credentials(
    upstream: FakeUpstream,
    helper: HelperScript,
    storage_root: Path,
    keys_dir: Path,
    mint: Mint,
    guard: LeakGuard,
    section: str,
) -> None:
    upstream.answer = accepting(SECRET)
    exec_ = {"command": helper.command(), "lifetime": "1h"}
    if section == "proxy":
        sections: dict[str, object] = {"proxy": {"remoteurl": upstream.origin, "exec": exec_}}
        name = "team/app"
    else:
        sections = {"upstreams": [{"prefix": "up", "url": upstream.origin, "exec": exec_}]}
        name = "up/team/app"
    with _registry(storage_root, keys_dir, **sections) as ours:
        headers = mint(f"repository:{name}:pull,push")
        got = ours.get(f"/v2/{name}/manifests/{MANIFEST_DIGEST}", headers=headers)
        assert got.status_code == 200 and got.content == MANIFEST, got.text
        assert upstream.seen[-1].headers["authorization"] == basic(SECRET)
        assert helper.runs()[0]["server"] == upstream.origin
        pushed = ours.put(
            f"/v2/{name}/manifests/v2",
            content=MANIFEST,
            headers={**headers, "Content-Type": OCI_MANIFEST},
        )
        assert pushed.status_code == 405
        # The helper failing: what is cached still serves, what is not is UNAVAILABLE.
        helper.behave("fail", secret=SECRET)
        upstream.answer = accepting(ROTATED)
        again = ours.get(f"/v2/{name}/manifests/{MANIFEST_DIGEST}", headers=headers)
        assert again.status_code == 200 and again.content == MANIFEST
        other = ours.get(f"/v2/{name}/manifests/sha256:{'b' * 64}", headers=headers)
        assert other.status_code == 503 and other.json()["errors"][0]["code"] == "UNAVAILABLE"
        assert guard.found_in(other.text) == []
        assert len(helper.runs()) == 2  # refused, the helper was asked again, and failed


def test_a_tag_cached_is_served_stale_while_the_helper_fails(
    upstream: FakeUpstream,
    helper: HelperScript,
    storage_root: Path,
    keys_dir: Path,
    mint: Mint,
    guard: LeakGuard,
) -> None:
    upstream.answer = accepting(SECRET)
    exec_ = {"command": helper.command(), "lifetime": 0}
    section = {"prefix": "up", "url": upstream.origin, "exec": exec_, "ttl": "1s"}
    with _registry(storage_root, keys_dir, upstreams=[section]) as ours:
        headers = mint("repository:up/team/app:pull")
        first = ours.get("/v2/up/team/app/manifests/v1", headers=headers)
        assert first.status_code == 200 and first.content == MANIFEST, first.text
        helper.behave("fail", secret=SECRET)
        runs = len(helper.runs())
        time.sleep(1.2)  # past the tag's ttl: the upstream is asked, the helper fails
        stale = ours.get("/v2/up/team/app/manifests/v1", headers=headers)
        assert stale.status_code == 200 and stale.content == MANIFEST
        assert "110" in stale.headers.get("warning", ""), stale.headers
        assert len(helper.runs()) == runs + 1  # it was asked, and failed
