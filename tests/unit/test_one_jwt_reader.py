"""Every JWT and JWKS the product reads goes through the core, read from the code itself.

A second place that decodes a token is a second place to forget a check (the
key-confusion 500 of the second attack review came from one); a second JWKS
parser, a second idea of which keys are usable.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from authcore.jwk import libtrust_kid, public_jwk, read_jwks

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("authcore", "tokenserver", "registry_proxy")
# PyJWT's entry points that read a token or a key document.
READERS = {"decode", "decode_complete", "get_unverified_header", "PyJWK", "PyJWKSet", "PyJWKClient"}


def _calls_into_pyjwt(path: Path) -> list[str]:
    """`jwt.<reader>` uses and names imported from `jwt` in one module."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "jwt"
            and node.attr in READERS
        ):
            found.append(f"jwt.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "jwt":
            found.extend(f"from {node.module} import {a.name}" for a in node.names)
    return found


def test_only_the_core_reads_tokens_and_key_sets() -> None:
    uses = {
        str(path.relative_to(ROOT)): calls
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if (calls := _calls_into_pyjwt(path))
    }
    # The verifier (header, signed claims, and the unverified look that picks a trust) and
    # the one JWKS reader; nothing else.
    assert set(uses) == {"authcore/jwt_verify.py", "authcore/jwk.py"}, uses
    assert set(uses["authcore/jwt_verify.py"]) == {"jwt.get_unverified_header", "jwt.decode"}
    assert set(uses["authcore/jwk.py"]) == {"jwt.PyJWK"}


@cache
def _trees() -> dict[str, ast.Module]:
    """Every product module's syntax tree, by its path."""
    return {
        str(path.relative_to(ROOT)): ast.parse(path.read_text(), str(path))
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def _call_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        if isinstance(func.value, ast.Name) and func.value.id == "jwt":
            return f"jwt.{func.attr}"
        return func.attr
    return None


class _CallSites(ast.NodeVisitor):
    """Calls by the innermost function that makes them."""

    def __init__(self, module: str, names: set[str], found: dict[str, set[str]]) -> None:
        self.module, self.names, self.found = module, names, found
        self.scope = "<module>"

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        outer, self.scope = self.scope, node.name
        self.generic_visit(node)
        self.scope = outer

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Call(self, node: ast.Call) -> None:
        name = _call_name(node.func)
        if name in self.names:
            self.found.setdefault(f"{self.module}:{self.scope}", set()).add(name)
        self.generic_visit(node)


def _calls(names: set[str]) -> dict[str, set[str]]:
    """Where product code calls a function of these names: `module:function` -> names called.

    A call is named by its last part (`f(...)`, `m.f(...)`), so a
    module-qualified call is found as well as a plain one; `jwt.decode` names
    PyJWT's alone (a `bytes.decode` is no token read).
    """
    found: dict[str, set[str]] = {}
    for module, tree in _trees().items():
        _CallSites(module, names, found).visit(tree)
    return found


def test_one_function_decodes_a_signed_token_and_one_calls_it() -> None:
    """`jwt.decode` checks a signature in `decode_signed` alone, and `verify_jwt` alone calls
    that and `signed_header`: every product verifier is `verify_jwt` and its own policy."""
    assert _calls({"jwt.decode", "jwt.decode_complete"}) == {
        "authcore/jwt_verify.py:decode_signed": {"jwt.decode"},
        # The unverified look that picks which trusts to try; it trusts nothing.
        "authcore/jwt_verify.py:unverified_claims": {"jwt.decode"},
    }
    assert _calls({"decode_signed", "signed_header", "decode_complete"}) == {
        "authcore/jwt_verify.py:verify_jwt": {"decode_signed", "signed_header"}
    }
    callers = {where.split(":")[0] for where in _calls({"verify_jwt"})}
    assert callers == {
        "registry_proxy/auth.py",
        "tokenserver/federation/verify.py",
        "tokenserver/routes/admin/auth.py",
        # People's ID tokens from the OpenID provider they sign in through.
        "tokenserver/sso/id_tokens.py",
    }


# Every library (standard or not) a module could fetch a URL with.
HTTP_CLIENTS = {
    "httpx",
    "requests",
    "aiohttp",
    "urllib3",
    "urllib.request",
    "http.client",
    "socket",
}


def _modules_importing(names: set[str]) -> set[str]:
    found = set()
    for module, tree in _trees().items():
        for node in ast.walk(tree):
            imported = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(i == n or i.startswith(f"{n}.") for i in imported for n in names):
                found.add(module)
    return found


def _strings_mentioning(word: str) -> set[str]:
    """Modules whose code (not a docstring or comment) holds a string with `word` in it."""
    found = set()
    for module, tree in _trees().items():
        prose = {
            id(node.value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        }
        if any(
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and word in node.value
            and id(node) not in prose
            for node in ast.walk(tree)
        ):
            found.add(module)
    return found


def test_one_module_fetches_key_sets() -> None:
    """The one remote key set (`authcore.remote_keys`) is the only code that fetches a JWKS
    or a discovery document; the registry and federation each make one, and no module that
    can speak HTTP but that one reads a key set."""
    fetchers = _modules_importing(HTTP_CLIENTS)
    readers = {where.split(":")[0] for where in _calls({"read_jwks", "PyJWK", "PyJWKSet"})}
    assert fetchers & readers == {"authcore/remote_keys.py"}, (fetchers, readers)
    # The registry's JWKS file, read once at start, is the other reader; it fetches nothing.
    assert _calls({"read_jwks"}) == {
        "authcore/remote_keys.py:_load": {"read_jwks"},
        "registry_proxy/trust.py:parse_jwks": {"read_jwks"},
    }
    assert {where.split(":")[0] for where in _calls({"RemoteKeySet"})} == {
        "registry_proxy/trust.py",
        "tokenserver/federation/verify.py",
    }
    # OIDC discovery is asked for where key sets are fetched, and by the sign-in of people,
    # for the provider's authorization and token endpoints (never for its keys).
    assert _strings_mentioning("openid-configuration") == {
        "authcore/remote_keys.py",
        "tokenserver/sso/provider.py",
    }


def test_the_jwks_reader_skips_what_it_cannot_use() -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    good = public_jwk(key, "k1", "ES256")
    unnamed = {k: v for k, v in good.items() if k != "kid"}
    # EdDSA keys sign nothing here (the Go registry 2.8 refuses them).
    okp = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    document = {"keys": [good, "not an object", {"kty": "RSA"}, okp, unnamed, good]}
    read = read_jwks(document)
    assert [kid for kid, _ in read.keys] == ["k1", None, "k1"]
    assert all(libtrust_kid(k) == libtrust_kid(key) for _, k in read.keys)
    assert read.skipped == 3
    limited = read_jwks(document, limit=2)
    assert [kid for kid, _ in limited.keys] == ["k1"] and limited.skipped == 5
    for bad in ({}, {"keys": "x"}, [], "keys", None):
        with pytest.raises(ValueError, match="not a JWKS document"):
            read_jwks(bad)
