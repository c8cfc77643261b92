"""KERNTRACE_BACKEND and KERNTRACE_BTF: the defaults of --backend and --btf on
every tracing command, and of a Run made from Python (how make vmtest moves
the unchanged kernel tests onto a backend); bad values are one line, exit 2."""
from __future__ import annotations

import importlib
import shutil

import pytest

from kerntrace.tracers.cli import iotrace_main, nstrace_main
from kerntrace.tracers.engine import backend as backend_mod
from kerntrace.tracers.engine import backend_env
from kerntrace.tracers.engine.backend import LIBBPF, Backend, BackendRequest, Facts
from kerntrace.tracers.engine.environment import EnvironmentProblem, UsageProblem
from kerntrace.tracers.engine.run import Run
from kerntrace.tracers.engine.target import Target
from kerntrace.tracers.engine.tool import Tool


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """Neither variable from the environment the tests run in; no resolution
    remembered from another test."""
    monkeypatch.delenv("KERNTRACE_BACKEND", raising=False)
    monkeypatch.delenv("KERNTRACE_BTF", raising=False)
    backend_env._resolved.cache_clear()
    yield
    backend_env._resolved.cache_clear()


@pytest.fixture
def btf_file(tmp_path) -> str:
    """A file libbpf parses as BTF: a shipped object (ELF with .BTF)."""
    from kerntrace.tracers.engine import object_path

    try:
        path = object_path("selftest")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    copy = tmp_path / "guest.btf"
    shutil.copy(path, copy)
    return str(copy)


def stop_before_attaching(monkeypatch, module_name: str) -> list:
    """The requests a command hands to the engine; the command stops there."""
    module = importlib.import_module(f"kerntrace.tracers.{module_name}")
    seen: list = []

    def stop(request):
        seen.append(request)
        raise UsageProblem("stopped before attaching")

    monkeypatch.setattr(module, "require_bpf_environment", stop)
    return seen


def one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# -- the command line -----------------------------------------------------------


@pytest.mark.parametrize("prog, name, args", [
    ("iotrace", "odirect", ["-c", "true"]),
    ("nstrace", "ip6mr", []),
    ("iotrace", "dstate", []),
])
def test_the_variables_are_the_defaults_of_backend_and_btf(prog, name, args, btf_file, monkeypatch, capsys):
    seen = stop_before_attaching(monkeypatch, name)
    main = iotrace_main if prog == "iotrace" else nstrace_main
    monkeypatch.setenv("KERNTRACE_BACKEND", "libbpf")
    monkeypatch.setenv("KERNTRACE_BTF", btf_file)
    assert main([name, *args, "-d", "0"]) == 2
    # the command line still wins over the environment
    assert main([name, *args, "-d", "0", "--backend", "auto", "--btf", "/k.btf"]) == 2
    monkeypatch.setenv("KERNTRACE_BACKEND", "bcc")
    monkeypatch.setenv("KERNTRACE_BTF", "")      # empty: unset, as click takes it
    assert main([name, *args, "-d", "0"]) == 2
    assert seen == [BackendRequest("libbpf", btf_file), BackendRequest("auto", "/k.btf"), BackendRequest("bcc", None)]


def test_a_bad_backend_variable_is_one_line_exit_2(monkeypatch, capsys):
    seen = stop_before_attaching(monkeypatch, "ip6mr")
    monkeypatch.setenv("KERNTRACE_BACKEND", "ebpf")
    assert nstrace_main(["ip6mr", "-d", "0"]) == 2
    line = one_error_line(capsys)
    assert line.startswith("nstrace ip6mr: error: Invalid value for '--backend' (env var: 'KERNTRACE_BACKEND'): "
                           "'ebpf' is not one of"), line
    assert seen == []   # refused while parsing: nothing resolved, nothing opened


@pytest.mark.parametrize("argv", [["odirect", "-c", "true", "-d", "0"], ["stat", "1", "1"], ["doctor"]])
def test_a_bad_btf_variable_is_one_line_naming_it(argv, tmp_path, monkeypatch, capsys):
    for module in ("odirect", "stat", "doctor"):
        monkeypatch.setattr(f"kerntrace.tracers.{module}.require_bpf_environment",
                            lambda *a, **k: pytest.fail("reached the engine with a bad KERNTRACE_BTF"), raising=False)
    missing = tmp_path / "missing.btf"
    monkeypatch.setenv("KERNTRACE_BTF", str(missing))
    assert iotrace_main(argv) == 2
    assert one_error_line(capsys) == f"iotrace: error: KERNTRACE_BTF={missing}: no such file"
    text = tmp_path / "vmlinux.txt"
    text.write_text("[1] INT 'long unsigned int' size=8\n")
    monkeypatch.setenv("KERNTRACE_BTF", str(text))
    assert iotrace_main(argv) == 2
    assert one_error_line(capsys).startswith(f"iotrace: error: KERNTRACE_BTF={text}: not a BTF file")


def test_help_names_the_variables(capsys):
    assert iotrace_main(["odirect", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())   # help wraps its lines
    assert "env var: KERNTRACE_BACKEND" in out and "env var: KERNTRACE_BTF" in out


# -- a Run made from Python (the kernel tests) ----------------------------------------


class NoObjects(Tool):
    name = "noop"

    def objects(self):
        raise AssertionError("opened an object")


def test_a_run_without_a_backend_is_libbpf_unless_the_variables_say(btf_file, monkeypatch):
    assert Run("test", NoObjects(), Target(), []).backend == LIBBPF
    monkeypatch.setenv("KERNTRACE_BTF", btf_file)
    assert Run("test", NoObjects(), Target(), []).backend == Backend("libbpf", btf_file)
    monkeypatch.setenv("KERNTRACE_BACKEND", "libbpf")
    assert Run("test", NoObjects(), Target(), []).backend == Backend("libbpf", btf_file)
    # a backend given is the backend used: the command line's choice
    assert Run("test", NoObjects(), Target(), [], backend=LIBBPF).backend == LIBBPF


def test_a_run_on_bcc_from_the_variable_is_resolved_like_the_flag(monkeypatch):
    able = Facts(has_btf=True, btf_file=None, bcc_importable=True, headers_present=True, release="6.1.0-test")
    monkeypatch.setattr(backend_mod, "gather_facts", lambda request: able)
    monkeypatch.setenv("KERNTRACE_BACKEND", "bcc")
    assert Run("test", NoObjects(), Target(), []).backend == Backend("bcc")
    backend_env._resolved.cache_clear()
    unable = Facts(has_btf=True, btf_file=None, bcc_importable=False, headers_present=False, release="6.1.0-test",
                   bcc_problem="python3-bpfcc is not installed")
    monkeypatch.setattr(backend_mod, "gather_facts", lambda request: unable)
    with pytest.raises(EnvironmentProblem) as info:
        Run("test", NoObjects(), Target(), [])
    assert "\n" not in str(info.value) and str(info.value).startswith("the bcc backend cannot run here (")


@pytest.mark.parametrize("env, words", [
    ({"KERNTRACE_BACKEND": "ebpf"}, "KERNTRACE_BACKEND='ebpf': must be one of auto, libbpf, bcc"),
    ({"KERNTRACE_BTF": "/nonexistent/k.btf"}, "KERNTRACE_BTF=/nonexistent/k.btf: no such file"),
    ({"KERNTRACE_BACKEND": "bcc", "KERNTRACE_BTF": "/k.btf"}, "--btf is for the libbpf backend"),
])
def test_bad_variables_stop_a_run_with_one_line(env, words, monkeypatch):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(UsageProblem) as info:
        Run("test", NoObjects(), Target(), [])
    assert str(info.value).startswith(words) and "\n" not in str(info.value)


def test_request_from_env_reads_only_the_two_variables():
    assert backend_env.request_from_env({}) is None
    assert backend_env.request_from_env({"KERNTRACE_BACKEND": "", "KERNTRACE_BTF": ""}) is None
    assert backend_env.request_from_env({"KERNTRACE_BACKEND": "bcc"}) == BackendRequest("bcc", None)
    assert backend_env.request_from_env({"KERNTRACE_BTF": "/k.btf"}) == BackendRequest("auto", "/k.btf")
