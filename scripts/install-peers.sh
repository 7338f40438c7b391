#!/usr/bin/env bash
# Install the real peers that the end-to-end tests drive. Idempotent: when
# every binary is already present it does not touch apt at all.
set -euo pipefail

# binary (absolute path or name on PATH) -> Debian package that ships it
declare -A PEERS=(
  [/usr/bin/docker-registry]=docker-registry
  [skopeo]=skopeo
  [podman]=podman
  [dockerd]=docker.io
  [ctr]=docker.io
  [buildah]=buildah
  [slapd]=slapd
  [ldapadd]=ldap-utils
  [wrk]=wrk
  [hey]=hey
  [curl]=curl
  [/usr/sbin/nginx]=nginx
  [/usr/bin/chromium]=chromium
  [/usr/bin/chromedriver]=chromium-driver
  [swift-ring-builder]=swift
  [swift-proxy-server]=swift-proxy
  [swift-account-server]=swift-account
  [swift-container-server]=swift-container
  [swift-object-server]=swift-object
  [memcached]=memcached
  [node]=nodejs
  [npm]=npm
)

has_binary() {
  local bin=$1
  if [[ $bin == /* ]]; then
    [[ -x $bin ]]
  else
    # slapd lives in /usr/sbin, which a non-login root shell may lack in PATH
    PATH="$PATH:/usr/sbin:/sbin" command -v "$bin" >/dev/null 2>&1
  fi
}

# The OpenID Provider of the SSO tests: npm's oidc-provider, at the version of the
# committed lock file, into the checkout (nothing outside it). Idempotent: skipped
# once that version is there.
OIDC_DIR=$(cd "$(dirname "$0")/.." && pwd)/tests/peers/oidc
install_oidc_provider() {
  local want have
  want=$(sed -n 's/.*"oidc-provider": "\([0-9.]*\)".*/\1/p' "$OIDC_DIR/package.json")
  have=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' \
    "$OIDC_DIR/node_modules/oidc-provider/package.json" 2>/dev/null || true)
  if [[ -n $want && $want == "$have" ]]; then
    return 0
  fi
  echo "install-peers: npm ci in $OIDC_DIR (oidc-provider $want)"
  (cd "$OIDC_DIR" && npm ci --no-audit --no-fund --loglevel=error)
}

has_initdb() {
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

# The Go registry 3 is no Debian package: the tests take $REGISTRY_V3, else the build
# beside the checkout; nothing here can install it.
v3=${REGISTRY_V3:-$(cd "$(dirname "$0")/.." && pwd)/../shared/peers/registry-v3}
if [[ ! -x $v3 ]]; then
  echo "install-peers: no Go registry 3 at $v3 (set REGISTRY_V3, or go install" \
    "github.com/distribution/distribution/v3/cmd/registry@v3.1.1); its tests will fail" >&2
fi

declare -A missing=()
for bin in "${!PEERS[@]}"; do
  has_binary "$bin" || missing[${PEERS[$bin]}]=1
done
has_initdb || missing[postgresql]=1

if ((${#missing[@]} == 0)); then
  install_oidc_provider
  echo "install-peers: all peers present"
  exit 0
fi

packages=("${!missing[@]}")
echo "install-peers: installing ${packages[*]}"

if [[ $(id -u) -ne 0 ]]; then
  echo "install-peers: must run as root to install packages" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if [[ -n ${missing[slapd]:-} ]]; then
  # Without this the slapd postinst builds a system-wide directory we never use.
  echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
fi
# Another apt run (an unattended upgrade, a parallel job) holds the locks for a
# while: wait for it rather than fail.
APT=(apt-get -o DPkg::Lock::Timeout=900 -o Acquire::Retries=3)
for attempt in 1 2 3 4 5; do
  "${APT[@]}" update </dev/null && break
  echo "install-peers: apt-get update failed (attempt $attempt), retrying" >&2
  sleep $((attempt * 10))
done
"${APT[@]}" install -y "${packages[@]}" </dev/null
install_oidc_provider
echo "install-peers: done"
