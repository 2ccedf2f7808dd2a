"""The deployment material parses and says what the local Flink tests run: a worker-pool sidecar on
each TaskManager, the EXTERNAL environment, checkpoints on, and only settings clout knows."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import yaml

from clout.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def documents() -> dict[str, dict]:
    out = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc["apiVersion"] and doc["metadata"]["name"], path
            out[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return out


def test_taskmanagers_carry_a_beam_worker_pool_sidecar() -> None:
    flink = documents()["FlinkDeployment/clout"]
    assert flink["spec"]["flinkConfiguration"]["taskmanager.numberOfTaskSlots"] == "2"
    containers = {c["name"]: c for c in flink["spec"]["taskManager"]["podTemplate"]["spec"]["containers"]}
    pool = containers["beam-worker-pool"]
    assert pool["args"] == ["--worker_pool"] and pool["ports"][0]["containerPort"] == 50000


def test_the_submission_runs_clout_on_the_external_environment_with_checkpoints() -> None:
    docs = documents()
    submit = docs["Job/clout-submit"]["spec"]["template"]["spec"]["containers"][0]
    assert submit["command"] == ["clout", "run"]
    assert "--environment_type=EXTERNAL" in submit["args"]
    assert "--environment_config=localhost:50000" in submit["args"]
    assert any(a.startswith("--checkpointing_interval=") for a in submit["args"])
    job_port = docs["Deployment/clout-job-server"]["spec"]["template"]["spec"]["containers"][0]["ports"][0]
    assert f"--job_endpoint=clout-job-server:{job_port['containerPort']}" in submit["args"]
    sources = {ref.get("configMapRef", ref.get("secretRef"))["name"] for ref in submit["envFrom"]}
    assert sources == {"clout-settings", "clout-secrets"}


def test_every_setting_named_is_a_clout_setting() -> None:
    docs = documents()
    known = {f"CLOUT_{f.name.upper()}" for f in dataclasses.fields(Settings)}
    named = set(docs["ConfigMap/clout-settings"]["data"]) | set(docs["Secret/clout-secrets"]["stringData"])
    assert named <= known, named - known


def test_the_dataflow_template_names_its_entry_point_and_parameters() -> None:
    metadata = json.loads((DEPLOY / "dataflow" / "metadata.json").read_text())
    assert metadata["streaming"] is True
    launcher = (DEPLOY / "dataflow" / "launcher.Dockerfile").read_text()
    assert "FLEX_TEMPLATE_PYTHON_PY_FILE=/template/main.py" in launcher
    entry = (DEPLOY / "dataflow" / "main.py").read_text()
    assert all(f'"{p["name"]}"' in entry for p in metadata["parameters"])
    assert "FROM apache/beam_python3.11_sdk:2.77.0" in (DEPLOY / "dataflow" / "Dockerfile").read_text()
