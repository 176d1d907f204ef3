"""The Kubernetes manifests mean what the docs say, beyond what a schema check can see:
failure policies built from the trainer's own exit codes, CPU limits, the restricted Pod
Security Standard, RUN_NAME wiring, the sweep's index mapping, claims and the kustomization."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO
from warmstart import config, errors, sweep

K8S = REPO / "k8s"
KUSTOMIZATION = "kustomization.yaml"
JOB_NAME_LABEL = "metadata.labels['batch.kubernetes.io/job-name']"


def _load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _objects() -> dict[str, dict[str, Any]]:
    """Every object of the kustomization's resources, by file name (one object per file)."""
    kustomization = yaml.safe_load((K8S / KUSTOMIZATION).read_text())
    out = {}
    for name in kustomization["resources"]:
        docs = _load(K8S / name)
        assert len(docs) == 1, f"{name}: one object per file"
        out[name] = docs[0]
    return out


def _jobs() -> list[tuple[str, dict[str, Any]]]:
    return [(name, obj) for name, obj in _objects().items() if obj["kind"] == "Job"]


JOBS = [name for name, _ in _jobs()]


def _job(name: str) -> dict[str, Any]:
    return _objects()[name]


def _container(job: dict[str, Any]) -> dict[str, Any]:
    containers = job["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["train"]
    return containers[0]


def _env(job: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in _container(job)["env"]}


def test_kustomization_lists_every_manifest_and_sets_every_image() -> None:
    kustomization = yaml.safe_load((K8S / KUSTOMIZATION).read_text())
    on_disk = sorted(p.name for p in K8S.glob("*.yaml") if p.name != KUSTOMIZATION)
    assert sorted(kustomization["resources"]) == on_disk
    images = {i["name"]: i for i in kustomization["images"]}
    for image in images.values():
        assert image["newName"] and re.fullmatch(r"sha256:[0-9a-f]{64}", image["digest"])
    used = {_container(job)["image"].split()[0] for _, job in _jobs()}
    assert used == set(images), "every Job's image is a placeholder that images: replaces"


@pytest.mark.parametrize("name", JOBS)
def test_failure_policy_comes_from_the_trainers_exit_codes(name: str) -> None:
    spec = _job(name)["spec"]
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert spec["ttlSecondsAfterFinished"] > 0
    rules = spec["podFailurePolicy"]["rules"]
    fail = [r for r in rules if r["action"] == "FailJob"]
    assert len(fail) == 1
    on_codes = fail[0]["onExitCodes"]
    assert on_codes["operator"] == "In" and on_codes["containerName"] == "train"
    permanent = sorted(cls.exit_code for cls in errors.RETRY_CANNOT_HELP)
    assert sorted(on_codes["values"]) == permanent
    assert set(permanent) <= set(errors.EXIT_CODES)
    # exit 5 (another trainer holds the run folder) and 1 (a bug) are retried like crashes
    assert errors.RunLockedError.exit_code not in on_codes["values"]
    assert 1 not in on_codes["values"]
    # a volume that failed or stalled mid-run (10, 11) had an outage: the next try waits it out
    assert errors.VolumeUnavailableError.exit_code not in on_codes["values"]
    assert errors.VolumeStalledError.exit_code not in on_codes["values"]
    ignore = [r for r in rules if r["action"] == "Ignore"]
    disruption = {"type": "DisruptionTarget", "status": "True"}
    assert ignore == [{"action": "Ignore", "onPodConditions": [disruption]}]
    if spec.get("completionMode") == "Indexed":
        assert spec["backoffLimitPerIndex"] > 0 and spec["maxFailedIndexes"] >= 0
        assert "backoffLimit" not in spec
    else:
        assert 0 < spec["backoffLimit"] <= 6


@pytest.mark.parametrize("name", JOBS)
def test_cpu_and_memory_limits(name: str) -> None:
    job = _job(name)
    resources = _container(job)["resources"]
    assert resources["limits"]["cpu"] == resources["requests"]["cpu"]
    assert resources["limits"]["memory"]
    assert "TORCH_THREADS" not in _env(job), "threads follow the CPU quota"
    wants_gpu = _env(job).get("DEVICE") == "cuda"
    assert ("nvidia.com/gpu" in resources["limits"]) == wants_gpu
    grace = job["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= 30, "time for the final snapshot after SIGTERM"


@pytest.mark.parametrize("name", JOBS)
def test_restricted_pod_security_and_a_read_only_root(name: str) -> None:
    pod = _job(name)["spec"]["template"]["spec"]
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security.get("runAsUser", 1000) != 0
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security["fsGroupChangePolicy"] == "OnRootMismatch"
    container = _container(_job(name))["securityContext"]
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"] == {"drop": ["ALL"]}
    assert container["readOnlyRootFilesystem"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in _container(_job(name))["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert "persistentVolumeClaim" in volumes[mounts["/ckpt"]]


def _run_name(job: dict[str, Any]) -> str:
    """RUN_NAME as the pod sees it: the Job's name through the downward API, or a literal."""
    value = _env(job)["RUN_NAME"]
    if isinstance(value, dict):
        assert value == {"fieldRef": {"fieldPath": JOB_NAME_LABEL}}
        return job["metadata"]["name"]
    assert value == job["metadata"]["name"]
    return value


def _pod_settings(job: dict[str, Any], index: int | None = None) -> config.Config:
    """The config a pod of ``job`` (with completion index ``index``) trains with."""
    env = {k: v for k, v in _env(job).items() if isinstance(v, str)}
    env["RUN_NAME"] = _run_name(job)
    if index is not None:
        env[sweep.INDEX] = str(index)
    sweep.apply(env)
    return config.load(env)


@pytest.mark.parametrize("name", JOBS)
def test_every_variable_is_a_setting_and_the_run_is_named_after_the_job(name: str) -> None:
    job = _job(name)
    known = {f.metadata["env"] for f in config.settings()} | {sweep.GAMES, sweep.SEEDS}
    assert set(_env(job)) <= known
    if job["spec"].get("completionMode") != "Indexed":
        assert _pod_settings(job).run_name == job["metadata"]["name"]


def test_sweep_indexes_map_to_distinct_games_seeds_and_runs() -> None:
    job = _job("sweep.yaml")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    env = _env(job)
    pairs = sweep.grid(env)
    assert spec["completions"] == len(pairs)
    assert 1 < spec["parallelism"] <= spec["completions"]
    pods = [_pod_settings(job, i) for i in range(spec["completions"])]
    assert [(p.game, p.seed) for p in pods] == pairs
    assert len({p.run_name for p in pods}) == len(pods)
    assert all(p.run_name.startswith(job["metadata"]["name"] + "-") for p in pods)


def test_claims_exist_and_parallel_pods_share_a_read_write_many_claim() -> None:
    claims = {obj["metadata"]["name"]: obj for obj in _objects().values()
              if obj["kind"] == "PersistentVolumeClaim"}
    for name, job in _jobs():
        volumes = job["spec"]["template"]["spec"]["volumes"]
        (claim,) = [v["persistentVolumeClaim"]["claimName"] for v in volumes
                    if "persistentVolumeClaim" in v]
        assert claim in claims, f"{name}: claim {claim} is not in the kustomization"
        if job["spec"].get("parallelism", 1) > 1:
            assert claims[claim]["spec"]["accessModes"] == ["ReadWriteMany"], name


def test_documented_failure_policy_is_the_manifests() -> None:
    """docs/kubernetes.md shows the FailJob rule: its codes are the trainer's too."""
    page = (REPO / "docs" / "kubernetes.md").read_text()
    (shown,) = re.findall(r"onExitCodes: \{containerName: train, operator: In, values: \[([^]]*)\]",
                          page)
    assert sorted(int(code) for code in shown.split(",")) == sorted(
        cls.exit_code for cls in errors.RETRY_CANNOT_HELP)


def _documented_exit_codes() -> set[int]:
    page = (REPO / "docs" / "exit-codes.md").read_text()
    section = page.split("\n| code |", 1)[1].split("\n\n", 1)[0]
    codes: set[int] = set()
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| code"):
            codes.update(int(code) for code in line.split("|")[1].split("/"))
    return codes


def test_documented_exit_code_table_is_the_trainers() -> None:
    assert _documented_exit_codes() == set(errors.EXIT_CODES)


def _gib(quantity: str) -> float:
    """A Kubernetes memory quantity (``12Gi``, ``512Mi``) in GiB."""
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)(Gi|Mi)", quantity).groups()
    return float(number) / (1024 if unit == "Mi" else 1)


@pytest.mark.parametrize("name", JOBS)
def test_memory_request_matches_the_jobs_settings(name: str) -> None:
    """The memory a Job asks for is what the trainer's own plan (engine/runners/memory_plan)
    needs for the Job's settings, with the plan's headroom, and not gigabytes more; the limit
    is at least the request. On a GPU the plan counts the replay in pinned host memory, where
    it goes when the device has no room for it."""
    from warmstart.checkpoint.counters import Budget
    from warmstart.checkpoint.start import Plan
    from warmstart.config import SamplerShape
    from warmstart.engine.runners import memory_plan

    job = _job(name)
    env = {k: v for k, v in _env(job).items() if isinstance(v, str) and k in {
        f.metadata["env"] for f in config.settings()}}
    resources = _container(job)["resources"]
    cpus = int(resources["limits"]["cpu"])
    settings = config.load(env | {"RUN_NAME": ""})
    shape = SamplerShape(settings.batch_t or 4, settings.batch_b or 1)
    workers = str(settings.env_workers or min(shape.batch_B, cpus))
    settings = config.load(env | {"ENV_WORKERS": workers})
    budget = Budget(0, settings.iterations(shape) - 1, 0, shape)
    need = memory_plan.need(Plan(settings, budget, 0, restores_replay=False), engine="native",
                            device_type="cuda" if settings.device == "cuda" else "cpu",
                            n_actions=18, device_free=0)
    wanted = need.host_bytes / memory_plan.FILL / 2**30
    request = _gib(resources["requests"]["memory"])
    assert wanted <= request <= wanted + 2, (name, f"the plan needs {wanted:.1f} GiB")
    assert _gib(resources["limits"]["memory"]) >= request


VOLUME_EXAMPLES = sorted(p.name for p in (K8S / "volumes").glob("*.yaml"))


@pytest.mark.parametrize("name", VOLUME_EXAMPLES)
def test_volume_examples_bind_the_jobs_claim_for_the_images_user(name: str) -> None:
    """Each bucket example is a static PersistentVolume and a claim of the name the single
    Jobs mount, bound to each other, mounted for the image's uid and gid (the Jobs' runAsUser),
    shareable by the pods of a Job that overlap in a preemption (ReadWriteMany)."""
    pv, claim = _load(K8S / "volumes" / name)
    assert (pv["kind"], claim["kind"]) == ("PersistentVolume", "PersistentVolumeClaim")
    jobs = [job for job_name, job in _jobs() if job_name != "sweep.yaml"]
    claimed = {v["persistentVolumeClaim"]["claimName"] for job in jobs
               for v in job["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v}
    assert claimed == {claim["metadata"]["name"]} == {pv["spec"]["claimRef"]["name"]}
    assert claim["spec"]["volumeName"] == pv["metadata"]["name"]
    assert claim["spec"]["storageClassName"] == pv["spec"]["storageClassName"] == ""
    assert pv["spec"]["accessModes"] == claim["spec"]["accessModes"] == ["ReadWriteMany"]
    users = {str(job["spec"]["template"]["spec"]["securityContext"][key])
             for job in jobs for key in ("runAsUser", "runAsGroup")}
    options = set(pv["spec"]["mountOptions"])
    assert {f"uid={u}" for u in users} | {f"gid={u}" for u in users} <= options


def test_mountpoint_example_allows_what_the_object_write_mode_does() -> None:
    """Mountpoint refuses overwrites and deletes unless mounted to allow them: the object
    write mode replaces params.pkl and its records through O_TRUNC, and prunes."""
    pv, _ = _load(K8S / "volumes" / "mountpoint-s3.yaml")
    assert pv["spec"]["csi"]["driver"] == "s3.csi.aws.com"
    assert {"allow-overwrite", "allow-delete"} <= set(pv["spec"]["mountOptions"])


def test_gcsfuse_example_caches_attributes_for_less_than_the_lease() -> None:
    """A lease must outlast the mount's attribute cache, or a second trainer can read an
    expired lease that its holder has renewed since (docs/volumes.md)."""
    from warmstart.checkpoint import lease

    pv, _ = _load(K8S / "volumes" / "gcsfuse.yaml")
    assert pv["spec"]["csi"]["driver"] == "gcsfuse.csi.storage.gke.io"
    (ttl,) = [int(o.rsplit(":", 1)[1]) for o in pv["spec"]["mountOptions"]
              if o.startswith("metadata-cache:ttl-secs:")]
    lease_s = lease.lease_seconds(config.load({}).lock_wait)  # settings, not a measured time
    assert 0 <= ttl < lease_s
