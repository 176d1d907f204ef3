#!/usr/bin/env bash
# Static checks for everything that is not Python: the Dockerfile (hadolint), the shell
# scripts (shellcheck), the GitHub workflows (actionlint, and zizmor for their security: any
# finding of low severity or above fails) and the Kubernetes manifests (kubernetes-validate,
# strict, against a named Kubernetes version; no Job may restart Always). The tools are pinned
# in docker/requirements-lint.txt and installed here on first use or when that file changes.
set -euo pipefail
cd "$(dirname "$0")/.."
K8S_VERSION="${K8S_VERSION:-1.30.0}"
tools=build/lint-venv
if ! cmp -s docker/requirements-lint.txt "$tools/installed.txt"; then
  rm -rf "$tools"
  python3 -m venv "$tools"
  "$tools/bin/pip" install --quiet --disable-pip-version-check -r docker/requirements-lint.txt
  cp docker/requirements-lint.txt "$tools/installed.txt"
fi
if ! command -v shellcheck >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null
fi
export PATH="$PWD/$tools/bin:$PATH"

echo "== hadolint docker/Dockerfile"
hadolint docker/Dockerfile
echo "== shellcheck"
shellcheck -x docker/*.sh bench/*.sh .ci/run
echo "== actionlint"
actionlint .github/workflows/*.yml
# Offline: the audits that ask GitHub's API (impostor commits, known-vulnerable actions) stay
# off, so the result does not depend on the network. Pedantic: every audit runs.
echo "== zizmor --offline"
zizmor --offline --persona pedantic --min-severity low .github/workflows/
echo "== kubernetes-validate --strict -k $K8S_VERSION"
manifests=()  # kustomization.yaml is kustomize's, not a Kubernetes object
for manifest in k8s/*.yaml k8s/volumes/*.yaml; do
  [ "${manifest##*/}" = kustomization.yaml ] || manifests+=("$manifest")
done
kubernetes-validate --strict -k "$K8S_VERSION" "${manifests[@]}"
if grep -n "restartPolicy: *Always" k8s/*.yaml k8s/volumes/*.yaml; then
  echo "a Job must not use restartPolicy: Always" >&2
  exit 1
fi
echo "lint passed"
