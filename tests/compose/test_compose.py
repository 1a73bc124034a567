"""The local stack, read without Docker: the compose file against the sidecar's own command line, settings and
routes, and the image against the project's pins."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from sidecar.cli import build_parser, settings_from
from sidecar.settings import Settings
from tests.support.node import NodeProcess

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose/docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
SIDECARS = sorted(name for name, service in SERVICES.items() if "build" in service)
DOCKERFILE = (ROOT / "compose/Dockerfile").read_text()
DASHBOARD = json.loads((ROOT / "compose/grafana/dashboards/sidecar.json").read_text())
SERIES_NAME = re.compile(r"\b((?:sidecar|process)_[a-z_]+)\b")
NOT_CHARTED = {"sidecar_deployment"}  # deployment id to model id, for joins in ad-hoc queries
_SUFFIXES = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""], "info": ["_info"]}


def env_example() -> dict[str, str]:
    lines = (ROOT / "compose/.env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def exposed_series(page: str) -> dict[str, set[str]]:
    """Each family's series names a scrape can hold: a family is named on the page (HELP, TYPE) before it has
    samples."""
    families = text_string_to_metric_families(page)
    return {family.name: {family.name + suffix for suffix in _SUFFIXES.get(family.type, [""])} for family in families}


def dashboard_queries() -> list[str]:
    return [target["expr"] for panel in DASHBOARD["panels"] for target in panel["targets"]]


def serve_args(service: str) -> Any:
    command = SERVICES[service]["command"]
    assert command[0] == "serve"
    return build_parser().parse_args(command)


def environment(service: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in SERVICES[service]["environment"])


def published(service: str) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) for each published port, with the example's values."""
    values = env_example()
    ports = []
    for entry in SERVICES[service].get("ports", []):
        address, host_port, container_port = re.sub(r"\$\{(\w+)[^}]*\}", lambda m: values[m[1]], entry).split(":")
        ports.append((address, int(host_port), int(container_port)))
    return ports


def test_every_variable_the_stack_reads_has_a_value_in_the_example() -> None:
    text = (ROOT / "compose/docker-compose.yml").read_text().replace("$$", "")
    used = set(re.findall(r"\$\{(\w+)", text))
    assert used and used <= env_example().keys()
    assert "$" not in re.sub(r"\$\{\w+(:[-?][^}]*)?\}", "", text), "a bare $ is an interpolation error"


def test_there_are_two_sidecar_nodes_on_one_image() -> None:
    assert SIDECARS == ["sidecar-1", "sidecar-2"]
    assert {SERVICES[name]["image"] for name in SIDECARS} == {"sidecar:local"}
    assert {SERVICES[name]["build"]["dockerfile"] for name in SIDECARS} == {"compose/Dockerfile"}


@pytest.mark.parametrize("service", SIDECARS)
def test_every_serve_flag_is_one_the_sidecar_accepts(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in environment(service).items():  # what the container's environment gives `sidecar serve`
        monkeypatch.setenv(name, value)
    settings = settings_from(serve_args(service))
    assert settings.host == "0.0.0.0"
    assert settings.node_name == service
    assert settings.advertise_url == f"http://{service}:{settings.port}", "other nodes and the cluster call this URL"
    assert settings.store == "elasticsearch"
    assert settings.es_user == "elastic" and settings.es_password == "${ELASTIC_PASSWORD:?set it in compose/.env}"
    assert settings.callback_secret == "${SIDECAR_CALLBACK_SECRET:?set it in compose/.env}" and not settings.insecure
    assert not [arg for arg in SERVICES[service]["command"] if "PASSWORD" in arg or "SECRET" in arg]


@pytest.mark.parametrize("service", SIDECARS)
def test_the_nodes_reach_the_cluster_by_its_service_name(service: str) -> None:
    url = urlsplit(settings_from(serve_args(service)).es_url or "")
    assert url.scheme == "http", "the local cluster serves plain HTTP"
    assert url.hostname in SERVICES and (url.port or 9200) in [port for _, _, port in published(url.hostname)]
    assert SERVICES[service]["depends_on"] == {url.hostname: {"condition": "service_healthy"}}


@pytest.mark.parametrize("service", SIDECARS)
def test_a_nodes_published_port_is_the_port_it_listens_on(service: str) -> None:
    [(address, _, container_port)] = published(service)
    assert address == "127.0.0.1"
    assert container_port == settings_from(serve_args(service)).port


def test_published_ports_stay_on_loopback_and_do_not_clash() -> None:
    ports = [entry for name in SERVICES for entry in published(name)]
    assert {address for address, _, _ in ports} == {"127.0.0.1"}
    assert len({port for _, port, _ in ports}) == len(ports)


def test_the_cluster_is_a_secured_single_node_with_a_trial_license() -> None:
    env = environment("elasticsearch")
    assert env["discovery.type"] == "single-node"
    assert env["xpack.license.self_generated.type"] == "trial", "inference endpoints need enterprise or trial"
    assert env["xpack.security.enabled"] == "true" and env["xpack.security.http.ssl.enabled"] == "false"
    assert env["ELASTIC_PASSWORD"].startswith("${ELASTIC_PASSWORD")
    version = env_example()["STACK_VERSION"]
    assert SERVICES["elasticsearch"]["image"].endswith(":${STACK_VERSION:?set it in compose/.env}")
    assert tuple(map(int, version.split("."))) >= (9, 1, 0), "the custom inference service is in 9.1 and later"


def test_every_long_running_service_has_a_healthcheck() -> None:
    for name, service in SERVICES.items():
        assert "healthcheck" in service or service.get("restart") == "no", name


def test_kibana_is_optional_and_talks_to_the_cluster_as_kibana_system() -> None:
    for name in ("kibana", "kibana-setup"):
        assert SERVICES[name]["profiles"] == ["kibana"]
    env = environment("kibana")
    assert env["ELASTICSEARCH_HOSTS"] == "http://elasticsearch:9200"
    assert env["ELASTICSEARCH_USERNAME"] == "kibana_system"
    assert SERVICES["kibana"]["depends_on"] == {"kibana-setup": {"condition": "service_completed_successfully"}}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    process = NodeProcess(tmp_path_factory.mktemp("compose-node") / "data").start()
    yield process
    process.stop()


@pytest.mark.parametrize("service", SIDECARS)
def test_the_healthcheck_passes_against_a_running_node(service: str, node: NodeProcess) -> None:
    check = SERVICES[service]["healthcheck"]["test"]
    assert check[:3] == ["CMD", "python", "-c"]
    port = settings_from(serve_args(service)).port
    code = check[3].replace(f"127.0.0.1:{port}/", f"127.0.0.1:{node.port}/")
    assert code != check[3], "the check calls the port the node listens on"
    assert "/_sidecar/health" in code and "Authorization" not in code, "health checks carry no credentials"
    env = {name: value for name, value in os.environ.items() if name != "ELASTIC_PASSWORD"}
    assert subprocess.run([sys.executable, "-c", code], env=env, timeout=30).returncode == 0


def test_prometheus_and_grafana_are_optional_and_stay_on_loopback() -> None:
    for name in ("prometheus", "grafana"):
        assert SERVICES[name]["profiles"] == ["monitoring"]
        assert [address for address, _, _ in published(name)] == ["127.0.0.1"]
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in SERVICES["prometheus"]["volumes"]
    assert environment("grafana")["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer", "anonymous visitors only read"


def test_prometheus_scrapes_every_sidecar_node_where_it_listens() -> None:
    [job] = yaml.safe_load((ROOT / "compose/prometheus.yml").read_text())["scrape_configs"]
    assert job.get("metrics_path", "/metrics") == "/metrics" and job.get("scheme", "http") == "http"
    [static] = job["static_configs"]
    expected = [f"{service}:{settings_from(serve_args(service)).port}" for service in SIDECARS]
    assert static["targets"] == expected


def test_grafana_reads_the_stacks_prometheus_and_the_dashboard_names_it() -> None:
    provisioning = ROOT / "compose/grafana/provisioning"
    [source] = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())["datasources"]
    url = urlsplit(source["url"])
    assert url.hostname == "prometheus" and url.port in [port for _, _, port in published("prometheus")]
    [provider] = yaml.safe_load((provisioning / "dashboards/sidecar.yml").read_text())["providers"]
    mounted = {volume.split(":")[1]: volume.split(":")[0] for volume in SERVICES["grafana"]["volumes"]}
    assert (ROOT / "compose" / mounted[provider["options"]["path"]] / "sidecar.json").is_file()
    for panel in DASHBOARD["panels"]:
        assert {panel["datasource"]["uid"]} | {target["datasource"]["uid"] for target in panel["targets"]} == {
            source["uid"]
        }


def test_the_dashboards_queries_read_series_a_running_node_exposes(node: NodeProcess) -> None:
    with urllib.request.urlopen(f"{node.url}/metrics", timeout=30) as response:
        families = exposed_series(response.read().decode())
    queried = {name for expr in dashboard_queries() for name in SERIES_NAME.findall(expr)}
    assert queried and sorted(queried - set().union(*families.values())) == []
    uncharted = [name for name, series in families.items() if name.startswith("sidecar_") and not series & queried]
    assert sorted(set(uncharted) - NOT_CHARTED) == [], "every family of the node's own is on the dashboard"


def test_the_images_own_healthcheck_passes_against_a_running_node(node: NodeProcess) -> None:
    [check] = re.findall(r"^HEALTHCHECK .*CMD (\[.*\])$", DOCKERFILE.replace("\\\n", " "), re.M)
    command = json.loads(check)
    assert command[:2] == ["python", "-c"] and "/_sidecar/health" in command[2]
    env = {**os.environ, "SIDECAR_PORT": str(node.port)}
    assert subprocess.run([sys.executable, "-c", command[2]], env=env, timeout=30).returncode == 0


def test_the_image_installs_the_pinned_cpu_torch_before_the_project() -> None:
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    [torch] = [pin for pin in pins if pin.startswith("torch")]
    lines = [line.strip() for line in DOCKERFILE.splitlines()]
    assert lines[[i for i, line in enumerate(lines) if line.startswith("FROM")][0]] == "FROM python:3.11-slim"
    torch_line = next(i for i, line in enumerate(lines) if f'"{torch}"' in line)
    assert "--index-url https://download.pytorch.org/whl/cpu" in lines[torch_line]
    assert torch_line < lines.index("RUN pip install .")


def test_the_image_runs_as_a_user_exposes_the_port_and_keeps_data_in_the_volumes() -> None:
    user = re.search(r"^USER (\S+)$", DOCKERFILE, re.M)
    assert user and user.group(1) not in ("root", "0")
    assert re.search(r"^EXPOSE (\d+)$", DOCKERFILE, re.M).group(1) == str(Settings().port)  # type: ignore[union-attr]
    data_dir = re.search(r"^ENV SIDECAR_DATA_DIR=(\S+)$", DOCKERFILE, re.M).group(1)  # type: ignore[union-attr]
    for name in SIDECARS:
        assert [volume.split(":")[1] for volume in SERVICES[name]["volumes"]] == [data_dir]


def test_the_demo_calls_the_sidecar_with_flags_it_accepts() -> None:
    justfile = (ROOT / "Justfile").read_text()
    demo = justfile.split("\ndemo ", 1)[1].split("\n\n", 1)[0]
    calls = [line.split(" -m sidecar ", 1)[1] for line in demo.splitlines() if " -m sidecar " in line]
    assert [call.split()[:2] for call in calls] == [
        ["import", '"${minilm}"'],
        ["import", '"${ner}"'],
        ["pipelines", "install"],
        ["pipelines", "install"],
    ]
    for call in calls:
        build_parser().parse_args([word for word in shlex.split(call) if word != "${cluster[@]}"])
