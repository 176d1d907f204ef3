"""What a release signs is pinned, and the release does what docs/images.md tells an operator to
verify: actions pinned by commit with their version named, no persisted credentials, least
privilege per job, SBOM, provenance, cosign keyless signature and attestations by digest, the
base image by digest (in a form Renovate can follow), and Python packages installed from hashed
locks that agree with the pins `make venv` installs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
DOCKERFILE = REPO / "docker" / "Dockerfile"
DOCS = REPO / "docs" / "images.md"
USES = re.compile(r"^\s*-?\s*uses:\s*(?P<ref>\S+)(?P<comment>.*)$")
ISSUER = "https://token.actions.githubusercontent.com"
RELEASE_IDENTITY = (
    "https://github.com/warmstart-dqn/warmstart-dqn/.github/workflows/release.yml@refs/tags/v"
)


def _workflow(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _release() -> dict[str, Any]:
    return _workflow(REPO / ".github" / "workflows" / "release.yml")


def _steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def _pins(path: Path) -> dict[str, str]:
    """name -> version of every `name==version` line (names as pip compares them)."""
    pins = {}
    for line in path.read_text().splitlines():
        if m := re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line):
            pins[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return pins


def _lock(name: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, sha256 hashes) of a docker/requirements-NAME.lock."""
    entries: dict[str, tuple[str, list[str]]] = {}
    current = None
    for line in (REPO / "docker" / f"requirements-{name}.lock").read_text().splitlines():
        if m := re.match(r"^([a-z0-9-]+)==(\S+) \\$", line):
            current = m.group(1)
            entries[current] = (m.group(2), [])
        elif m := re.match(r"^\s+--hash=sha256:([0-9a-f]{64})", line):
            assert current, line
            entries[current][1].append(m.group(1))
    return entries


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_by_commit_with_its_version_named(workflow: Path) -> None:
    lines = [line for line in workflow.read_text().splitlines() if USES.match(line)]
    assert lines, f"{workflow.name} uses no action?"
    for line in lines:
        m = USES.match(line)
        assert m
        ref = m.group("ref")
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), \
            f"not pinned by commit: {line.strip()}"
        assert re.fullmatch(r"\s+# v\d+\.\d+\.\d+", m.group("comment")), \
            f"no '# vX.Y.Z' beside {ref}: {line.strip()}"


def test_one_action_one_commit_across_workflows() -> None:
    """The same action at two commits would be two versions to keep current."""
    seen: dict[str, set[str]] = {}
    for workflow in WORKFLOWS:
        for line in workflow.read_text().splitlines():
            if m := USES.match(line):
                action, _, sha = m.group("ref").partition("@")
                seen.setdefault(action, set()).add(sha + m.group("comment").strip())
    assert {action: shas for action, shas in seen.items() if len(shas) > 1} == {}


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_checkouts_keep_no_credentials_and_every_job_states_its_permissions(workflow: Path) -> None:
    wf = _workflow(workflow)
    assert wf["permissions"] == {}, "nothing granted workflow-wide"
    for name, job in wf["jobs"].items():
        permissions = job.get("permissions")
        assert isinstance(permissions, dict) and permissions, f"{name}: no permissions"
        assert set(job["permissions"].values()) <= {"read", "write"}
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False, name


def test_only_the_release_image_job_can_sign_and_push() -> None:
    grants = {(wf.name, name, scope): level
              for wf in WORKFLOWS for name, job in _workflow(wf)["jobs"].items()
              for scope, level in job["permissions"].items() if level == "write"}
    assert grants == {
        ("release.yml", "images", "packages"): "write",
        ("release.yml", "images", "id-token"): "write",
        ("release.yml", "notes", "contents"): "write",
    }


def test_release_builds_with_sbom_and_provenance_and_signs_and_attests_by_digest() -> None:
    wf = _release()
    steps = _steps(wf)
    build = [s for s in steps if s.get("uses", "").startswith("docker/build-push-action@")]
    assert len(build) == 1
    build = build[0]
    assert build["with"]["sbom"] is True
    assert build["with"]["provenance"] == "mode=max"
    assert build["with"]["push"] is True
    runs = "\n".join(s.get("run", "") for s in steps)
    digest_env = {s.get("env", {}).get("DIGEST") for s in steps if "cosign" in s.get("run", "")}
    assert f"${{{{ steps.{build['id']}.outputs.digest }}}}" in digest_env
    assert re.search(r'cosign sign --yes .*"\$IMAGE@\$DIGEST"', runs), "sign by digest"
    assert "--type spdxjson --predicate sbom.spdx.json" in runs
    assert '--type "$provenance_type" --predicate provenance.json' in runs
    assert "cosign attach sbom" not in runs, "deprecated: attest instead"
    assert "--new-bundle-format=false" in runs and "--use-signing-config=false" in runs
    # the notes job verifies with the identity docs/images.md gives operators
    notes = wf["jobs"]["notes"]
    assert notes["needs"] == "images"
    env = notes["steps"][-1]["env"]
    assert env["ISSUER"] == ISSUER
    assert env["IDENTITY"] == "${{ github.server_url }}/${{ github.workflow_ref }}"
    assert "cosign verify " in notes["steps"][-1]["run"]
    assert "for variant in cuda cpu" in notes["steps"][-1]["run"]
    assert wf["jobs"]["images"]["strategy"]["matrix"]["variant"] == ["cuda", "cpu"]


def test_cosign_is_pinned() -> None:
    wf = _release()
    assert re.fullmatch(r"v\d+\.\d+\.\d+", wf["env"]["COSIGN_VERSION"])
    installers = [s for s in _steps(wf)
                  if s.get("uses", "").startswith("sigstore/cosign-installer@")]
    assert installers
    for step in installers:
        assert step["with"]["cosign-release"] == "${{ env.COSIGN_VERSION }}"


def test_base_image_is_pinned_by_digest_where_renovate_finds_it() -> None:
    import json

    text = DOCKERFILE.read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base and re.fullmatch(r"docker\.io/library/debian@sha256:[0-9a-f]{64}", base.group(1))
    renovate = json.loads((REPO / ".github" / "renovate.json").read_text())
    [manager] = renovate["customManagers"]
    # Renovate's named groups are (?<name>...); Python spells them (?P<name>...)
    [pattern] = [re.compile(p.replace("(?<", "(?P<")) for p in manager["matchStrings"]]
    m = pattern.search(text)
    assert m, "Renovate's pattern does not find the base image"
    assert m.group("currentDigest") == base.group(1).split("@")[1]
    assert (m.group("depName"), m.group("currentValue")) == ("debian", "bookworm-slim")
    replaced = (manager["autoReplaceStringTemplate"]
                .replace("{{{depName}}}", m.group("depName"))
                .replace("{{{currentValue}}}", m.group("currentValue"))
                .replace("{{{newDigest}}}", m.group("currentDigest")))
    assert replaced == m.group(0), "Renovate's replacement would rewrite more than the digest"
    managers = {"github-actions", "pip_requirements", "custom.regex"}
    assert set(renovate["enabledManagers"]) == managers


@pytest.mark.parametrize("variant", ["cuda", "cpu"])
def test_image_locks_agree_with_the_pins_and_carry_hashes(variant: str) -> None:
    pins = _pins(REPO / "docker" / "requirements.txt")
    lock = _lock(variant)
    for name, version in pins.items():
        if name == "torch" and variant == "cpu":
            version += "+cpu"
        assert name in lock, f"{name} pinned but not in the {variant} lock: run make lock"
        assert lock[name][0] == version, \
            f"{name}: {version} pinned, {lock[name][0]} locked for {variant}: run make lock"
    for name, (version, hashes) in lock.items():
        assert hashes, f"{name}=={version} has no hash"
    extra = set(lock) - set(pins)
    if variant == "cpu":
        assert not {n for n in extra if n.startswith(("nvidia-", "cuda-", "triton"))}, extra
        assert extra == set(), f"the cpu lock holds what the pins do not: {extra}"
    else:
        assert extra, "no CUDA wheels in the cuda lock"
        for name in extra:
            assert name.startswith(("nvidia-", "cuda-")) or name == "triton", name


def test_builder_lock_agrees_with_the_rlpyt_pins() -> None:
    pins = _pins(REPO / "docker" / "requirements-rlpyt.txt")
    wheel = re.search(r"^ARG WHEEL_VERSION=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert wheel
    pins["wheel"] = wheel.group(1)
    lock = _lock("builder")
    assert {name: version for name, (version, _) in lock.items()} == pins
    assert all(hashes for _, hashes in lock.values())


def test_dockerfile_installs_from_the_locks_with_hashes() -> None:
    text = DOCKERFILE.read_text()
    installs = re.findall(r"pip (?:install|download)[^;]*-r [^;]+", text)
    assert installs
    for command in installs:
        assert "--require-hashes" in command, command
        assert re.search(r'-r (\S+\.lock|"\$lock")', command), command
    assert 'lock="/opt/warmstart/requirements/requirements-$VARIANT.lock"' in text
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    for name in ("cuda", "cpu", "builder"):
        assert f"!docker/requirements-{name}.lock" in ignored


def test_lint_runs_pinned_zizmor_that_fails_on_low_and_nothing_is_silenced() -> None:
    lint = (REPO / "docker" / "lint.sh").read_text()
    assert "zizmor --offline --persona pedantic --min-severity low .github/workflows/" in lint
    tools = (REPO / "docker" / "requirements-lint.txt").read_text()
    assert re.search(r"^zizmor==\d+\.\d+\.\d+$", tools, re.MULTILINE)
    assert not list(REPO.glob("zizmor.y*ml")) and not list((REPO / ".github").glob("zizmor.y*ml"))
    for workflow in WORKFLOWS:
        assert "zizmor: ignore" not in workflow.read_text()


def test_docs_verify_with_the_identity_the_release_signs_with() -> None:
    docs = DOCS.read_text()
    assert f"--certificate-identity \"{RELEASE_IDENTITY}0.1.0\"" in docs
    assert f"--certificate-oidc-issuer {ISSUER}" in docs
    assert "cosign verify-attestation" in docs and "--type spdxjson" in docs
    assert "--type slsaprovenance02" in docs
    policies = [doc for block in re.findall(r"```yaml\n(.*?)```", docs, re.DOTALL)
                for doc in yaml.safe_load_all(block) if doc and doc.get("kind") == "ClusterPolicy"]
    assert len(policies) == 1
    [rule] = policies[0]["spec"]["rules"]
    [verify] = rule["verifyImages"]
    keyless = verify["attestors"][0]["entries"][0]["keyless"]
    assert keyless["subject"] == RELEASE_IDENTITY + "*"
    assert keyless["issuer"] == ISSUER
    assert verify["attestations"][0]["type"] == "https://spdx.dev/Document"
    assert verify["attestations"][0]["attestors"][0]["entries"][0]["keyless"] == keyless
    source = re.search(r'^ARG SOURCE=(\S+)$', DOCKERFILE.read_text(), re.MULTILINE).group(1)
    assert RELEASE_IDENTITY.startswith(source + "/")
    assert "docs/images.md" in (REPO / "README.md").read_text()


def test_lock_tool_reads_versions_from_file_names_and_hashes_local_files(tmp_path: Path) -> None:
    import hashlib
    import importlib.util

    spec = importlib.util.spec_from_file_location("lock", REPO / "docker" / "lock.py")
    assert spec and spec.loader
    lock = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lock)
    cpu_wheel = "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    assert lock.file_version(cpu_wheel) == "2.13.0+cpu"
    assert lock.file_version("atari-py-0.2.9.tar.gz") == "0.2.9"
    assert lock.file_version("not-a-distribution.zip") is None
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    wheel.write_bytes(b"not really a wheel")
    expected = hashlib.sha256(b"not really a wheel").hexdigest()
    assert lock.chosen_hash({"url": wheel.as_uri()}) == expected
    assert lock.chosen_hash({"url": "https://example.invalid/x.whl",
                             "archive_info": {"hashes": {"sha256": "ab" * 32}}}) == "ab" * 32
    with pytest.raises(SystemExit):
        lock.chosen_hash({"url": "https://example.invalid/x.whl", "archive_info": {}})
