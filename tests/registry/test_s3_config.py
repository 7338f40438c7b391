"""storage.s3: the Go registry's keys, their checks, environment overrides, the driver they make."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from registry_proxy.config import ConfigError, load_config
from registry_proxy.storage import make_driver
from registry_proxy.storage.s3 import S3Driver
from tests.support.peers import free_port

ROOT = Path(__file__).resolve().parents[2]

AUTH = {
    "token": {
        "realm": "http://127.0.0.1:1/token",
        "service": "registry",
        "issuer": "test",
        "jwks": "jwks.json",
    }
}
GO_STYLE = {
    "regionendpoint": "http://127.0.0.1:8080",
    "region": "us-east-1",
    "bucket": "registry",
    "accesskey": "test:tester",
    "secretkey": "testing",
    "secure": False,
    "v4auth": True,
    "rootdirectory": "/prefix",
    "chunksize": 16777216,
    "forcepathstyle": True,
}


def write(tmp_path: Path, storage: dict[str, Any]) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump({"version": 0.1, "storage": storage, "auth": AUTH}))
    return path


def test_a_go_registry_s3_section_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, {"s3": GO_STYLE}), {})
    assert config.storage.driver == "s3"
    options = config.storage.driver_options()
    assert options == GO_STYLE
    driver = make_driver("s3", **options)
    assert isinstance(driver, S3Driver)
    assert driver.part_size == 16777216
    assert driver.key("docker/registry/v2/blobs") == "prefix/docker/registry/v2/blobs"
    assert driver.settings.path_style


def test_defaults_and_the_secret_is_not_shown(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, {"s3": {"bucket": "bkt", "accesskey": "me", "secretkey": "hush"}}), {}
    )
    s3 = config.storage.s3
    assert s3 is not None
    assert (s3.region, s3.secure, s3.v4auth, s3.chunksize) == ("us-east-1", True, True, 10485760)
    assert s3.rootdirectory == ""
    assert "hush" not in repr(config)
    assert config.storage.driver_options()["secretkey"] == "hush"
    # No endpoint of its own: AWS's virtual-hosted URLs; with one, path style.
    assert make_driver("s3", **config.storage.driver_options()).key("a") == "a"
    assert not make_driver("s3", bucket="bkt").settings.path_style
    assert make_driver("s3", bucket="bkt", regionendpoint="127.0.0.1:1").settings.path_style


def test_environment_overrides(tmp_path: Path) -> None:
    env = {
        "REGISTRY_PROXY_STORAGE_S3_BUCKET": "other",
        "REGISTRY_PROXY_STORAGE_S3_CHUNKSIZE": "5242880",
        "REGISTRY_PROXY_STORAGE_S3_SECURE": "false",
        "REGISTRY_PROXY_STORAGE_S3_SECRETKEY": "from-env",
    }
    config = load_config(write(tmp_path, {"s3": GO_STYLE}), env)
    s3 = config.storage.s3
    assert s3 is not None and s3.secretkey is not None
    assert (s3.bucket, s3.chunksize, s3.secure) == ("other", 5242880, False)
    assert s3.secretkey.get_secret_value() == "from-env"


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"bucket": ""}, "bucket"),
        ({"chunksize": 1024}, "chunksize"),
        ({"chunksize": 6 * 1024**3}, "chunksize"),
        ({"secure": "maybe"}, "secure"),
        ({"regionendpoint": "ftp://host"}, "regionendpoint"),
        ({"rootdirectory": "/a/../b"}, "rootdirectory"),
        ({"encrypted": True}, "encrypted"),
        ({"accesskey": None}, "accesskey"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, change: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, {"s3": GO_STYLE | change}), {})
    assert "storage.s3" in str(refused.value)
    assert key in str(refused.value)


def test_one_driver_only(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="one storage driver"):
        load_config(write(tmp_path, {"s3": GO_STYLE, "filesystem": {"rootdirectory": "x"}}), {})


# Loaded first by a Python whose PYTHONPATH starts at its directory: `import boto3`
# then fails as it does where the `s3` extra was never installed.
WITHOUT_BOTO3 = """
import sys


class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "boto3":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NotInstalled())
"""


@pytest.mark.parametrize("command", ["serve", "gc"])
def test_without_the_s3_extra_the_command_names_it(tmp_path: Path, command: str) -> None:
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(WITHOUT_BOTO3)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_PROXY_")}
    env["PYTHONPATH"] = os.pathsep.join([str(shim), str(ROOT)])
    # Were the refusal gone, `serve` must not take the default port 5000 from anyone.
    env["REGISTRY_PROXY_HTTP_ADDR"] = f"127.0.0.1:{free_port()}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "registry_proxy",
            command,
            "--config",
            str(write(tmp_path, {"s3": GO_STYLE})),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "registry-proxy: storage.s3 needs the 's3' extra, which is not installed "
        "(No module named 'boto3'): pip install 'registry-auth[s3]'"
    ]
    assert "Traceback" not in result.stderr and result.stdout == ""
