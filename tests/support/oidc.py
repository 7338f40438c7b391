"""A local OpenID Connect issuer of the same shape as GitHub's, GitLab's and Kubernetes'.

The real ones are cloud services that cannot run here; this one serves, over
HTTPS on 127.0.0.1 with a certificate of its own (the test CA), a discovery
document and a JWKS, and signs ID tokens whose claims are laid out exactly as
each platform lays them out. Keys can be rotated and the JWKS fetches are
counted, so tests can see when the token server asks for keys.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import threading
import time
import uuid
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.support.certs import write_self_signed
from tests.support.peers import LOOPBACK

__all__ = ["OIDCIssuer", "SigningKey", "forged_hs256", "forged_none"]


class SigningKey:
    def __init__(self, alg: str = "RS256") -> None:
        self.alg = alg
        self.kid = uuid.uuid4().hex[:16]
        self.private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if alg.startswith("RS")
            else ec.generate_private_key(ec.SECP256R1())
        )

    def jwk(self) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.alg)
        jwk: dict[str, Any] = json.loads(algorithm.to_jwk(self.private.public_key()))
        return jwk | {"kid": self.kid, "alg": self.alg, "use": "sig"}


class OIDCIssuer:
    """Start with `with OIDCIssuer(dir) as issuer:`; `issuer.url` is its `iss`."""

    def __init__(self, directory: Path, *, path: str = "") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.ca_file, self._key_file = write_self_signed(directory)
        self.path = path.rstrip("/")
        self.keys: list[SigningKey] = [SigningKey("RS256")]
        self.jwks_fetches = 0
        self.discovery_fetches = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((LOOPBACK, 0), self._handler())
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, self._key_file)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self.url = f"https://{LOOPBACK}:{self.port}{self.path}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- the HTTPS side ------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == f"{issuer.path}/.well-known/openid-configuration":
                    with issuer._lock:
                        issuer.discovery_fetches += 1
                    body = {
                        "issuer": issuer.url,
                        "jwks_uri": f"{issuer.url}/.well-known/jwks",
                        "response_types_supported": ["id_token"],
                        "subject_types_supported": ["public"],
                        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                    }
                elif self.path == f"{issuer.path}/.well-known/jwks":
                    with issuer._lock:
                        issuer.jwks_fetches += 1
                        body = {"keys": [k.jwk() for k in issuer.keys]}
                else:
                    self.send_error(404)
                    return
                raw = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet

        return Handler

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            return {"keys": [k.jwk() for k in self.keys]}

    def rotate(self, alg: str = "RS256") -> SigningKey:
        """A new signing key in the JWKS; the old ones are dropped, as a platform rotates."""
        key = SigningKey(alg)
        with self._lock:
            self.keys = [key]
        return key

    # -- tokens --------------------------------------------------------------------

    def sign(
        self,
        claims: Mapping[str, Any],
        *,
        key: SigningKey | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        key = key or self.keys[-1]
        return jwt.encode(
            dict(claims),
            key.private,
            algorithm=key.alg,
            headers={"kid": key.kid, **(headers or {})},
        )

    def _base(
        self, audience: str, subject: str, lifetime: int, issued: float | None
    ) -> dict[str, Any]:
        now = int(time.time() if issued is None else issued)
        return {
            "iss": self.url,
            "aud": audience,
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "jti": uuid.uuid4().hex,
        }

    def github_actions(
        self,
        audience: str,
        *,
        repository: str = "org/app",
        ref: str = "refs/heads/main",
        environment: str | None = None,
        lifetime: int = 300,
        issued: float | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """The claims of an Actions job's ID token (`ACTIONS_ID_TOKEN_REQUEST_URL`)."""
        owner = repository.split("/")[0]
        subject = (
            f"repo:{repository}:environment:{environment}"
            if environment
            else f"repo:{repository}:ref:{ref}"
        )
        claims = self._base(audience, subject, lifetime, issued) | {
            "ref": ref,
            "sha": uuid.uuid4().hex + uuid.uuid4().hex[:8],
            "repository": repository,
            "repository_owner": owner,
            "repository_id": "674324",
            "repository_owner_id": "1234",
            "run_id": "8273645",
            "run_number": "12",
            "run_attempt": "1",
            "repository_visibility": "private",
            "actor": "octocat",
            "actor_id": "583231",
            "workflow": "release",
            "workflow_ref": f"{repository}/.github/workflows/release.yml@{ref}",
            "event_name": "push",
            "ref_type": "branch",
            "ref_protected": "true",
            "job_workflow_ref": f"{repository}/.github/workflows/release.yml@{ref}",
            "runner_environment": "github-hosted",
        }
        if environment:
            claims["environment"] = environment
        return claims | extra

    def gitlab_ci(
        self,
        audience: str,
        *,
        project_path: str = "group/app",
        ref: str = "main",
        lifetime: int = 300,
        issued: float | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """The claims of a GitLab CI `id_tokens:` token."""
        namespace = project_path.rsplit("/", 1)[0]
        claims = self._base(
            audience, f"project_path:{project_path}:ref_type:branch:ref:{ref}", lifetime, issued
        ) | {
            "namespace_id": "72",
            "namespace_path": namespace,
            "project_id": "20",
            "project_path": project_path,
            "user_id": "1",
            "user_login": "sample-user",
            "user_email": "sample-user@example.com",
            "pipeline_id": "574",
            "pipeline_source": "push",
            "job_id": "302",
            "ref": ref,
            "ref_type": "branch",
            "ref_path": f"refs/heads/{ref}",
            "ref_protected": "true",
            "runner_id": "1",
            "runner_environment": "gitlab-hosted",
            "sha": uuid.uuid4().hex + uuid.uuid4().hex[:8],
            "project_visibility": "private",
            "ci_config_ref_uri": f"gitlab.example/{project_path}//.gitlab-ci.yml@refs/heads/{ref}",
        }
        return claims | extra

    def kubernetes(
        self,
        audience: str,
        *,
        namespace: str = "ci",
        service_account: str = "builder",
        lifetime: int = 600,
        issued: float | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """The claims of a projected service-account token."""
        claims = self._base(
            audience, f"system:serviceaccount:{namespace}:{service_account}", lifetime, issued
        ) | {
            "kubernetes.io": {
                "namespace": namespace,
                "pod": {"name": "builder-7d9f8", "uid": str(uuid.uuid4())},
                "serviceaccount": {"name": service_account, "uid": str(uuid.uuid4())},
            },
        }
        return claims | extra


def _part(obj: Mapping[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def forged_none(claims: Mapping[str, object]) -> str:
    """Unsigned: `alg` none."""
    return f"{_part({'alg': 'none', 'typ': 'JWT', 'kid': 'x'})}.{_part(claims)}."


def forged_hs256(claims: Mapping[str, object], secret: bytes, kid: str) -> str:
    """Signed with HMAC, the public key as the secret: the classic confusion attack."""
    signing_input = f"{_part({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{_part(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
