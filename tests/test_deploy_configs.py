"""deploy/ and every config file of the repo: each deployment's entrypoint is a flow, its schedules parse, its
parameters validate, its pool is defined; ``prefect deploy`` accepts the file; compose holds together; every
YAML/JSON file parses."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect import Flow
from prefect.cli.deploy._models import PrefectYamlModel
from prefect.client.schemas.schedules import CronSchedule
from prefect.utilities.callables import parameter_schema

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
PREFECT_YAML = yaml.safe_load((DEPLOY / "prefect.yaml").read_text())
COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
DEPLOYMENTS = PREFECT_YAML["deployments"]
POOLS = {pool["name"] for pool in PREFECT_YAML["definitions"]["work_pools"].values()}
CONFIG_ROOTS = ("configs", "deploy", "seed_story", "bench", ".ci", ".github")
SKIP_DIRS = {"__pycache__", "node_modules"}


def _flow(entrypoint: str) -> Flow:
    """Import ``path/to/file.py:function`` as the module the repo root makes of it; skip a file not written yet."""
    path, _, name = entrypoint.partition(":")
    if not (REPO / path).is_file():
        pytest.skip(f"{path} does not exist yet")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, name)


def test_prefect_yaml_is_what_prefect_deploy_reads():
    model = PrefectYamlModel.model_validate(PREFECT_YAML)
    assert len(model.deployments) == len(DEPLOYMENTS) >= 7
    names = [(d["entrypoint"], d["name"]) for d in DEPLOYMENTS]
    assert len(set(names)) == len(names)
    assert PREFECT_YAML["pull"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $SEED_STORY_HOME }}"}}
    ]  # the worker's clone or the image's copy, never a path fixed here
    text = (DEPLOY / "prefect.yaml").read_text()
    assert not re.search(r"AWS_(SECRET|ACCESS_KEY|SESSION)|PASSWORD", text), "credentials never go in prefect.yaml"
    assert "AWS_ENDPOINT_URL" not in text  # a MinIO endpoint belongs to the workers that use MinIO
    assert re.search(r"^ENV SEED_STORY_HOME=/opt/seed-story", (DEPLOY / "Dockerfile").read_text(), re.MULTILINE)


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_deployment_entrypoint_schedule_parameters_and_pool(deployment: dict[str, Any]):
    flow = _flow(deployment["entrypoint"])
    assert isinstance(flow, Flow), f"{deployment['entrypoint']} is not a Prefect flow"
    for schedule in deployment.get("schedules", []):
        cron = CronSchedule(cron=schedule["cron"], timezone=schedule.get("timezone"))
        assert cron.timezone == schedule["timezone"]  # every cron names its timezone
    parameters = deployment["parameters"]
    assert set(parameters) <= set(parameter_schema(flow).properties)
    validated = flow.validate_parameters(parameters)  # the pydantic settings, built as a run would build them
    assert validated.keys() == parameters.keys()
    assert deployment["work_pool"]["name"] in POOLS


def test_flow_names_match_the_deployments_the_scale_out_targets():
    """``nightly-scale-out`` submits to ``nightly-generation/gpu-shard``: that flow/deployment pair must exist."""
    flow_names = {d["name"]: _flow(d["entrypoint"]).name for d in DEPLOYMENTS}
    scale_out = next(d for d in DEPLOYMENTS if d["name"] == "nightly-scale-out")
    target = scale_out["parameters"]["settings"]["deployment"]
    assert target in {f"{flow_names[d['name']]}/{d['name']}" for d in DEPLOYMENTS}
    from flows.scale_out import ScaleOutSettings

    assert ScaleOutSettings.model_fields["deployment"].default == target
    assert {"train-stage1", "train-stage2", "train-stage3", "ingest-storystream"} <= set(flow_names.values())


@pytest.mark.parametrize("stage", ["stage1", "stage2", "stage3"])
def test_training_deployments_name_configs_that_load(stage: str):
    from seed_story.training.store_sync import training_prefix
    from tasks.training import TrainFlowSettings, load_config_task

    deployment = next(d for d in DEPLOYMENTS if d["entrypoint"].endswith(f":train_{stage}"))
    settings = TrainFlowSettings.model_validate(deployment["parameters"]["settings"])
    cfg = load_config_task.fn(settings, stage, training_prefix(stage, settings.resolved_run_name()))
    assert cfg.stage == stage and cfg.resume
    if settings.shards_from:
        assert cfg.data.kind == "storystream" and cfg.data.shards.endswith(settings.shards_from)


def test_compose_services_pools_and_gpu():
    services = COMPOSE["services"]
    assert {"prefect-server", "minio", "minio-init", "gpu-worker", "cpu-worker"} <= set(services)
    for name, service in services.items():
        assert set(service.get("depends_on", {})) <= set(services), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith(("$", ".", "/")) or source in COMPOSE["volumes"], (name, volume)
    workers = {name: s for name, s in services.items() if "worker" in s.get("command", [])}
    assert {s["command"][s["command"].index("--pool") + 1] for s in workers.values()} == POOLS
    gpu = services["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert gpu[0]["driver"] == "nvidia" and "gpu" in gpu[0]["capabilities"]
    for service in workers.values():
        assert (REPO / service["build"]["dockerfile"]).is_file()
        assert service["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"
        keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        assert all(service["environment"][k].startswith("${") for k in keys)  # from deploy/.env, never inline


def test_dockerfile_installs_the_repo_torch_pin():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    pin = re.search(r'"torch==([^"]+)"', (REPO / "pyproject.toml").read_text()).group(1)
    assert f"ARG TORCH_VERSION={pin}" in dockerfile
    for package in ("libpango-1.0-0", "fonts-dejavu-core", "fonts-wqy-microhei", "fonts-noto-color-emoji"):
        assert package in dockerfile
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.MULTILINE)


def test_prefect_deploy_registers_every_deployment(prefect_api: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    with get_client(sync_client=True) as client:
        for pool in sorted(POOLS):
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"), overwrite=True)
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    command = [
        sys.executable,
        "-m",
        "prefect",
        "--no-prompt",
        "deploy",
        "--all",
        "--prefect-file",
        "deploy/prefect.yaml",
    ]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0 and "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    with get_client(sync_client=True) as client:
        for deployment in DEPLOYMENTS:
            flow_name = _flow(deployment["entrypoint"]).name
            stored = client.read_deployment_by_name(f"{flow_name}/{deployment['name']}")
            assert stored.work_pool_name == deployment["work_pool"]["name"]
            assert stored.parameters == deployment["parameters"]
            assert [s.schedule.cron for s in stored.schedules] == [s["cron"] for s in deployment.get("schedules", [])]
            assert stored.job_variables["env"]["HF_HUB_OFFLINE"] == "1"


def _config_files() -> list[Path]:
    """YAML/JSON files of the repo's own folders (not outputs: runs/, work/, bench/results/ are left out)."""
    found = [p for p in REPO.iterdir() if p.is_file()]
    for root in CONFIG_ROOTS:
        for folder, dirs, files in os.walk(REPO / root):
            dirs[:] = [d for d in dirs if d not in SKIP_DIRS and Path(folder, d) != REPO / "bench" / "results"]
            found += [Path(folder, f) for f in files]
    return sorted(p for p in found if p.suffix in (".yaml", ".yml", ".json"))


@pytest.mark.parametrize("path", _config_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_config_file_parses(path: Path):
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    assert isinstance(data, dict) and data, f"{path} holds no mapping"


def test_the_config_walk_sees_deploy_and_configs():
    seen = {str(p.relative_to(REPO)) for p in _config_files()}
    assert {"deploy/prefect.yaml", "deploy/compose.yaml", "configs/train/tiny_stage2.yaml"} <= seen
    assert not any(s.startswith(("bench/results", ".venv")) for s in seen)
