"""deploy/: the DaemonSet validated offline against the Kubernetes schemas
(kubernetes-validate bundles them), with what it must grant and mount; the
alert rules checked by Debian's promtool and run against series with
`promtool test rules`."""
from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install -e '.[test]' installs kubernetes-validate")

ROOT = Path(__file__).resolve().parents[2]
DAEMONSET = ROOT / "deploy" / "kerntrace.yaml"
ALERTS = ROOT / "deploy" / "alerts.yaml"
COST = ROOT / "docs" / "cost.md"
# The oldest and the newest schemas the package bundles.
K8S_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())
TRACERS = {"ip6mr": ["nstrace", "ip6mr"], "diagnose": ["iotrace", "diagnose"]}
METRICS_PORTS = {"ip6mr": 9435, "diagnose": 9436}   # --prometheus :PORT, one per tracer (one netns)
CAPS = {"BPF", "PERFMON", "SYSLOG"}
MIB = 1 << 20


def docs() -> list[dict]:
    return [d for d in yaml.safe_load_all(DAEMONSET.read_text()) if d]


def daemonset() -> dict:
    (ds,) = [d for d in docs() if d["kind"] == "DaemonSet"]
    return ds


def containers() -> dict[str, dict]:
    return {c["name"]: c for c in daemonset()["spec"]["template"]["spec"]["containers"]}


def quantity_bytes(q: str) -> int:
    m = re.fullmatch(r"(\d+)(Mi|Gi)", q)
    assert m, q
    return int(m.group(1)) * {"Mi": MIB, "Gi": 1 << 30}[m.group(2)]


def peak_rss_mb(way: str) -> int:
    """The peak RSS column of docs/cost.md's per-command table for `way`."""
    for line in COST.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == f"`{way}`":
            m = re.fullmatch(r"(\d+) MB", cells[-1])
            assert m, line
            return int(m.group(1))
    raise AssertionError(f"docs/cost.md has no peak RSS for {way}")


# -- the DaemonSet ----------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_validates_strictly(version):
    kinds = []
    for doc in docs():
        kubernetes_validate.validate(doc, version, strict=True)
        kinds.append(doc["kind"])
    assert kinds == ["Namespace", "ServiceAccount", "DaemonSet"]


def test_the_validator_rejects_what_the_schema_does_not_know():
    """The check above has teeth: a misspelt field and a wrong type fail."""
    bad = copy.deepcopy(daemonset())
    bad["spec"]["template"]["spec"]["hostPid"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[-1], strict=True)
    bad = copy.deepcopy(daemonset())
    bad["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] = "BPF"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[-1], strict=True)


def test_every_node_host_pid_and_no_api_token():
    pod = daemonset()["spec"]["template"]["spec"]
    assert pod["hostPID"] is True
    assert pod.get("hostNetwork", False) is False
    # one toleration with no key and no effect tolerates every taint (control plane too)
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert "nodeSelector" not in pod and "affinity" not in pod
    assert pod["automountServiceAccountToken"] is False
    (ns,) = [d for d in docs() if d["kind"] == "Namespace"]
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert pod["terminationGracePeriodSeconds"] >= 30


@pytest.mark.parametrize("name", sorted(TRACERS))
def test_tracers_get_the_least_capabilities_not_privileged(name):
    sc = containers()[name]["securityContext"]
    assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
    assert sc["runAsUser"] == 0 and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert set(sc["capabilities"]["add"]) == CAPS
    assert "SYS_ADMIN" not in sc["capabilities"]["add"]
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"


def test_retention_has_no_capability():
    sc = containers()["retention"]["securityContext"]
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["privileged"] is False and sc["readOnlyRootFilesystem"] is True


@pytest.mark.parametrize("name", sorted(TRACERS))
def test_tracers_mount_what_they_read_from_the_host(name):
    pod = daemonset()["spec"]["template"]["spec"]
    volumes = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"]}
    mounts = {m["mountPath"]: (volumes[m["name"]], m.get("readOnly", False))
              for m in containers()[name]["volumeMounts"]}
    assert mounts == {
        "/var/lib/kerntrace": ("/var/lib/kerntrace", False),       # the traces
        "/sys/kernel/tracing": ("/sys/kernel/tracing", True),      # tracepoint ids
        "/sys/fs/cgroup": ("/sys/fs/cgroup", True),                # cgroup ids -> containers
        "/var/log/pods": ("/var/log/pods", True),                  # pod names
        "/var/log/containers": ("/var/log/containers", True),
    }
    retention = {m["mountPath"]: volumes[m["name"]] for m in containers()["retention"]["volumeMounts"]}
    assert retention == {"/var/lib/kerntrace": "/var/lib/kerntrace"}


@pytest.mark.parametrize("name", sorted(TRACERS))
def test_recorders_run_headless_and_the_probe_watches_their_directory(name):
    c = containers()[name]
    cmd = c["command"]
    rec_dir = f"/var/lib/kerntrace/node=$(NODE_NAME)/{name}"
    port = METRICS_PORTS[name]
    assert cmd == ["kerntrace-fleet", "record", rec_dir, "--", *TRACERS[name], "--prometheus", f":{port}"]
    assert c["ports"] == [{"name": c["ports"][0]["name"], "containerPort": port, "protocol": "TCP"}]
    assert c["env"] == [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    probe = c["livenessProbe"]
    # the probe's shell expands $NODE_NAME where the kubelet expanded $(NODE_NAME)
    assert probe["exec"]["command"] == ["sh", "-c", f"exec kerntrace-fleet alive {rec_dir.replace('$(NODE_NAME)', '$NODE_NAME')}"]
    # a tracer attaches within seconds; three misses 30 s apart restart it
    assert probe["initialDelaySeconds"] >= 10 and probe["periodSeconds"] * probe["failureThreshold"] >= 60


def test_retention_bounds_age_and_size():
    cmd = containers()["retention"]["command"]
    assert cmd[:3] == ["kerntrace-fleet", "retain", "/var/lib/kerntrace"]
    opts = dict(zip(cmd[3::2], cmd[4::2]))
    assert float(opts["--max-age-hours"]) > 1          # longer than a run (-d 3600)
    assert 0 < float(opts["--max-gb"]) <= 50


@pytest.mark.parametrize("name,way,factor", [("ip6mr", "nstrace ip6mr", 2.5), ("diagnose", "iotrace diagnose", 1.9)])
def test_memory_limits_cover_the_measured_peak(name, way, factor):
    """docs/cost.md's peak RSS, with headroom for the maps' kernel memory
    and the trace's page cache, both charged to the container's cgroup."""
    res = containers()[name]["resources"]
    peak = peak_rss_mb(way) * 1e6
    limit = quantity_bytes(res["limits"]["memory"])
    request = quantity_bytes(res["requests"]["memory"])
    assert limit >= factor * peak, (limit, peak)
    assert peak <= request <= limit
    # one core: a throttled drain of the rings loses events
    assert res["limits"]["cpu"] == "1"


# -- the alert rules ----------------------------------------------------------------


def rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    assert [g["name"] for g in groups] == ["kerntrace-ip6mr"]
    return groups[0]["rules"]


def test_alert_rules_shape_and_documented_metrics():
    documented = set(re.findall(r"^#\s+(kerntrace_[a-z0-9_]+)", ALERTS.read_text(), re.M))
    assert len(documented) == 6
    for rule in rules():
        assert set(rule) == {"alert", "expr", "labels", "annotations"}, rule["alert"]
        assert rule["alert"].startswith("Kerntrace")
        assert rule["labels"]["severity"] in ("info", "warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        used = set(re.findall(r"\bkerntrace_[a-z0-9_]+", rule["expr"]))
        assert used and used <= documented, (rule["alert"], used - documented)
        # bounded cardinality: alerts aggregate to the node, never to a pid
        assert "pid" not in rule["expr"]


def test_the_rules_use_the_series_the_exporter_serves():
    """Every name the rules document and use is one `nstrace ip6mr
    --prometheus` serves, with the labels the rules group by."""
    from kerntrace.tracers.engine.metrics import ContainerOf, Series, engine_families
    from kerntrace.tracers.ip6mr import Ip6mrTool

    families = engine_families({}, {}) + Ip6mrTool().metrics(Series(), ContainerOf())
    served = {f.name for f in families}
    documented = set(re.findall(r"^#\s+(kerntrace_[a-z0-9_]+)", ALERTS.read_text(), re.M))
    assert documented <= served, documented - served
    used = {n for r in rules() for n in re.findall(r"\bkerntrace_[a-z0-9_]+", r["expr"])}
    assert used <= served, used - served
    assert "by (node, object)" in ALERTS.read_text()   # kerntrace_lost_events_total{object}


PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is missing (Debian: apt-get install prometheus; make deps installs it)")


@needs_promtool
def test_promtool_checks_the_rules():
    r = subprocess.run([PROMTOOL, "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(rules())} rules found" in r.stdout


@needs_promtool
def test_promtool_fires_each_rule_on_its_precursor_and_only_there(tmp_path):
    """Series for three nodes over 20 minutes: n1 (kernel at risk) has ENOMEM
    failures, an OOM kill near a creation and a socket-alloc log line; n2
    (kernel fixed) has the same failures; n3 only EPERM failures and an
    "oom" line.  At 15 m every rule fires where it should and nowhere else."""
    series = [
        {"series": 'kerntrace_ip6mr_kernel_at_risk{node="n1"}', "values": "1x20"},
        {"series": 'kerntrace_ip6mr_kernel_at_risk{node="n2"}', "values": "0x20"},
        {"series": 'kerntrace_ip6mr_kernel_at_risk{node="n3"}', "values": "1x20"},
        {"series": 'kerntrace_netns_failures_total{node="n1",container="web",errno="ENOMEM"}', "values": "0x5 3x15"},
        {"series": 'kerntrace_netns_failures_total{node="n2",container="web",errno="ENOMEM"}', "values": "0x5 2x15"},
        {"series": 'kerntrace_netns_failures_total{node="n3",container="other",errno="EPERM"}', "values": "0x5 9x15"},
        {"series": 'kerntrace_netns_oom_kills_total{node="n1"}', "values": "0x8 1x12"},
        {"series": 'kerntrace_netns_oom_kills_total{node="n3"}', "values": "0x20"},
        {"series": 'kerntrace_kmsg_precursors_total{node="n1",kind="socket-alloc"}', "values": "0x10 4x10"},
        {"series": 'kerntrace_kmsg_precursors_total{node="n3",kind="oom"}', "values": "0x10 2x10"},
        {"series": 'kerntrace_lost_events_total{node="n2",object="ip6mr"}', "values": "0x10 100x10"},
        {"series": 'kerntrace_lost_events_total{node="n1",object="ip6mr"}', "values": "0x20"},
    ]
    # per alert: its severity, and the (labels, value) of its expression at 15 m:
    # the increase over the 10 minutes before (the counters move at 6, 9 and 11 m)
    expected = {
        "KerntraceNetnsCreationsFailing": ("warning", [('{node="n1"}', 3), ('{node="n2"}', 2)]),
        "KerntraceOOMKillsDuringNetnsSetup": ("warning", [('{node="n1"}', 1)]),
        "KerntraceIp6mrPrecursorLogLines": ("warning", [('{node="n1",kind="socket-alloc"}', 4)]),
        "KerntraceIp6mrCrashConditions": ("critical", [('{node="n1"}', 1)]),
        "KerntraceLostEvents": ("info", [('{node="n2",object="ip6mr"}', 100)]),
    }
    assert {r["alert"]: r["labels"]["severity"] for r in rules()} == {k: v[0] for k, v in expected.items()}
    exprs = {r["alert"]: r["expr"] for r in rules()}
    annotations = {r["alert"]: r["annotations"] for r in rules()}
    tests = {
        "rule_files": [str(ALERTS)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": series,
            "promql_expr_test": [
                *({"expr": exprs[name], "eval_time": "15m",
                   "exp_samples": [{"labels": labels, "value": value} for labels, value in samples]}
                  for name, (_sev, samples) in expected.items()),
                # before any counter moved, nothing
                *({"expr": exprs[name], "eval_time": "4m", "exp_samples": []} for name in expected),
            ],
            # and the alerts themselves: the two that fire on n1 alone, with their labels
            "alert_rule_test": [
                {"eval_time": "15m", "alertname": name, "exp_alerts": [{
                    "exp_labels": {"node": "n1", "severity": expected[name][0]},
                    "exp_annotations": {k: v.replace("{{ $labels.node }}", "n1").replace("{{ $value | humanize }}", "1")
                                        for k, v in annotations[name].items()}}]}
                for name in ("KerntraceOOMKillsDuringNetnsSetup", "KerntraceIp6mrCrashConditions")
            ],
        }],
    }
    path = tmp_path / "alerts_test.yaml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    r = subprocess.run([PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout
