"""The deployment files agree with the code: the Kubernetes manifests (settings, queue, GPUs) and
the monitoring configuration (the series the server exports)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from tests.helpers import PROJECT
from webui.distributed.broker import model_key, queue_for
from webui.settings import env_name, setting_names

MANIFESTS = PROJECT / "deploy" / "kubernetes"


def documents() -> dict[tuple[str, str], dict]:
    """Every object of every manifest, by (kind, name)."""
    found = {}
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            found[document["kind"], document["metadata"]["name"]] = document
    return found


def containers(document: dict) -> list[dict]:
    return document["spec"]["template"]["spec"]["containers"]


def env_of(document: dict) -> dict[str, str | None]:
    return {e["name"]: e.get("value") for c in containers(document) for e in c.get("env", [])}


def test_every_zimage_variable_the_manifests_set_is_a_setting() -> None:
    known = {env_name(name) for name in setting_names()}
    used = {
        name
        for document in documents().values()
        if document["kind"] == "Deployment"
        for name in env_of(document)
        if name.startswith("ZIMAGE_")
    }
    assert used, "no ZIMAGE_ variable found: the test reads the manifests wrongly"
    assert used <= known, f"not settings: {sorted(used - known)}"


def test_one_web_replica_gpu_workers_and_scaling_on_their_models_queue() -> None:
    found = documents()
    web, worker = found["Deployment", "zimage-web"], found["Deployment", "zimage-worker"]
    assert web["spec"]["replicas"] == 1 and web["spec"]["strategy"]["type"] == "Recreate"
    assert all(c["resources"]["limits"]["nvidia.com/gpu"] == 1 for c in containers(worker))
    web_env, worker_env = env_of(web), env_of(worker)
    for name in ("ZIMAGE_MODEL", "ZIMAGE_DTYPE"):
        assert web_env[name] == worker_env[name], f"web and workers disagree on {name}"
    queue = queue_for(model_key(worker_env["ZIMAGE_MODEL"], worker_env["ZIMAGE_DTYPE"]))
    [trigger] = found["ScaledObject", "zimage-worker"]["spec"]["triggers"]
    assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == queue
    assert found["ScaledObject", "zimage-worker"]["spec"]["scaleTargetRef"]["name"] == "zimage-worker"
    assert found["Service", "zimage-redis"]["spec"]["type"] == "ClusterIP"


def test_the_example_secret_holds_every_key_the_manifests_read() -> None:
    found = documents()
    secret = found["Secret", "zimage"]["stringData"]
    text = "\n".join(path.read_text() for path in MANIFESTS.glob("*.yaml"))
    wanted = {line.split("key:")[1].strip(" }") for line in text.splitlines() if "key:" in line}
    assert wanted and wanted <= set(secret), sorted(wanted - set(secret))
    assert Path(MANIFESTS / "secret.example.yaml").is_file()


def test_the_monitoring_config_and_dashboard_name_series_the_server_exports() -> None:
    folder = PROJECT / "deploy" / "monitoring"
    scrape = yaml.safe_load((folder / "prometheus.yml").read_text())
    assert {job["metrics_path"] for job in scrape["scrape_configs"]} == {"/metrics"}
    dashboard = json.loads((folder / "grafana-dashboard.json").read_text())
    used = {
        re.sub(r"_(bucket|sum|count|total)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"zimage_[a-z_]+", target["expr"])
    }
    exported = set(re.findall(r'"(zimage_[a-z_]+)"', (PROJECT / "webui" / "metrics.py").read_text()))
    assert len(used) >= 10 and used <= exported, sorted(used - exported)
