"""`report` over several traces: where S3's endpoint and credentials come
from, finding trace directories under a root, and the one-line errors of
bad input (the kernel test tests/kernel/test_fleet_report.py reads real
traces from disk, from moto's S3 and with Spark)."""
from __future__ import annotations

import json

import pytest

from kerntrace.tracers.cli import iotrace_main
from kerntrace.tracers.engine.environment import UsageProblem
from kerntrace.tracers.engine.s3 import secret_options
from kerntrace.tracers.engine.tracedir import FORMAT
from kerntrace.tracers.fleet import find_traces, node_of


def test_secret_options_from_the_aws_variables():
    env = {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": "token",
           "AWS_DEFAULT_REGION": "eu-west-1", "AWS_ENDPOINT_URL": "http://minio:9000"}
    assert secret_options(env, None) == {"REGION": "eu-west-1", "KEY_ID": "id", "SECRET": "secret",
                                         "SESSION_TOKEN": "token", "ENDPOINT": "minio:9000", "USE_SSL": "false",
                                         "URL_STYLE": "path"}
    # --s3-endpoint over the variables; AWS_ENDPOINT_URL_S3 over AWS_ENDPOINT_URL; AWS_REGION first
    env.update(AWS_ENDPOINT_URL_S3="https://s3.example:8443", AWS_REGION="us-west-2")
    assert secret_options(env, None)["ENDPOINT"] == "s3.example:8443"
    assert secret_options(env, None)["USE_SSL"] == "true" and secret_options(env, None)["REGION"] == "us-west-2"
    assert secret_options(env, "http://127.0.0.1:5000")["ENDPOINT"] == "127.0.0.1:5000"
    # AWS itself: no endpoint, virtual-host style
    assert secret_options({}, None) == {"REGION": "us-east-1"}
    for bad in ("minio:9000", "ftp://host", "http://host/path"):
        with pytest.raises(UsageProblem, match="not an http"):
            secret_options({}, bad)


def _trace(path, tool="diagnose"):
    path.mkdir(parents=True)
    (path / "meta.json").write_text(json.dumps({"format": FORMAT, "tool": tool, "host": "h1"}))
    return str(path)


def test_traces_under_a_root_and_their_nodes(tmp_path):
    a = _trace(tmp_path / "node=a" / "diagnose" / "20261203T090000Z")
    b = _trace(tmp_path / "node=b" / "ip6mr" / "20261203T090000Z", "ip6mr")
    (tmp_path / "node=b" / "other").mkdir()
    (tmp_path / "node=b" / "other" / "meta.json").write_text('{"format": "something else"}')
    loose = _trace(tmp_path / "elsewhere")
    assert find_traces([str(tmp_path)]).paths == [loose, a, b]   # in path order
    assert find_traces([b, a, b]).paths == [b, a]
    assert [node_of(p, {"host": "h1"}) for p in (a, b, loose)] == ["a", "b", "h1"]


@pytest.mark.parametrize("args, message", [
    (["{empty}"], "no kerntrace trace directory in it"),
    (["{trace}", "{empty}"], "no kerntrace trace directory in it"),
    (["{trace}", "{trace}", "--md"], "--md, --html and --folded take one trace directory"),
    (["{empty}/missing", "{trace}"], "no such directory"),
    (["s3://bucket/x", "--s3-endpoint", "minio:9000"], "not an http(s)://host[:port] URL"),
    (["s3://", "--s3-endpoint", "http://127.0.0.1:9"], "not an S3 URL"),
    (["{trace}", "--s3-endpoint", "http://127.0.0.1:9"], "--s3-endpoint: for s3:// URLs"),
    (["{trace}", "{trace}", "--s3-endpoint", "http://127.0.0.1:9"], "--s3-endpoint: for s3:// URLs"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    trace = _trace(tmp_path / "t")
    argv = ["report", *(a.format(empty=tmp_path / "empty", trace=trace) for a in args)]
    assert iotrace_main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and message in err, err
