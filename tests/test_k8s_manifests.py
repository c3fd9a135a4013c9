"""The shipped Kubernetes worker pool (k8s/) validates against the Kubernetes schemas (strict:
no unknown field) with kubernetes-validate, which ships them (no download at test time), and
holds what a GPU pool of this sweep needs: an Indexed Job, one GPU a worker, the storage only
from a Secret, a Kueue queue label. No cluster runs it here.
"""

from __future__ import annotations

import copy
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

K8S = Path(__file__).resolve().parents[1] / "k8s"
VERSIONS = ["1.33.0", kubernetes_validate.latest_version()]  # backoffLimitPerIndex: GA in 1.33


def manifests() -> list[tuple[str, dict]]:
    return [(f"{p.name}#{i}", doc) for p in sorted(K8S.glob("*.yaml"))
            for i, doc in enumerate(yaml.safe_load_all(p.read_text())) if doc]


def job() -> dict:
    [doc] = [d for _, d in manifests() if d["kind"] == "Job"]
    return doc


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates_strictly(version):
    found = manifests()
    assert {d["kind"] for _, d in found} == {"Job", "Secret"}
    for _name, doc in found:
        kubernetes_validate.validate(doc, version, strict=True)  # raises ValidationError


def test_the_validator_rejects_a_misspelt_field():
    broken = copy.deepcopy(job())
    broken["spec"]["template"]["spec"]["containers"][0]["resource"] = {}  # not "resources"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def test_the_pool_is_an_indexed_job_of_one_gpu_workers_with_storage_from_a_secret():
    spec = job()["spec"]
    assert spec["completionMode"] == "Indexed" and spec["parallelism"] == spec["completions"]
    assert "kueue.x-k8s.io/queue-name" in job()["metadata"]["labels"]
    [container] = spec["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = {e["name"]: e for e in container["env"]}
    secret = {d["metadata"]["name"] for _, d in manifests() if d["kind"] == "Secret"}
    for name in ("SWEEP_STORAGE", "PGPASSWORD"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] in secret
    assert not any("PGPASSWORD" in a or "postgresql" in a for a in container.get("args", []))
    rules = spec["podFailurePolicy"]["rules"]
    assert {"action": "Ignore",
            "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]} in rules
