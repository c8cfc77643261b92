"""--backend and --btf without root and without loading BPF: the choice as a
pure function of the host's facts, the options reaching every tracing
command, a bad --btf FILE, the bcc backend's refusals, the custom-BTF path
in the libbpf binding and the hook probes."""
from __future__ import annotations

import ctypes
import errno
import shutil

import pytest

from kerntrace.tracers.cli import iotrace_main, nstrace_main
from kerntrace.tracers.engine import backend as backend_mod
from kerntrace.tracers.engine import probe
from kerntrace.tracers.engine.backend import (
    Backend,
    BackendRequest,
    Facts,
    bcc_refusal,
    check_btf_file,
    choose,
    gather_facts,
    resolve,
)
from kerntrace.tracers.engine.environment import EnvironmentProblem, UsageProblem
from kerntrace.tracers.engine.run import Run, ready_line
from kerntrace.tracers.engine.target import Target
from kerntrace.tracers.engine.tool import Tool


def facts(has_btf=False, btf_file=None, bcc=False, headers=False):
    return Facts(has_btf=has_btf, btf_file=btf_file, bcc_importable=bcc, headers_present=headers,
                 release="4.9.0-old", bcc_problem="" if bcc else "python3-bpfcc is not installed")


def one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text and text
    return text


# -- the choice: a pure function of the facts ------------------------------------


@pytest.mark.parametrize("has_btf, btf_file, bcc, headers, expected", [
    (True, None, False, False, Backend("libbpf")),
    (True, None, True, True, Backend("libbpf")),           # CO-RE first, where it can run
    (False, "/x.btf", False, False, Backend("libbpf", "/x.btf")),
    (True, "/x.btf", True, True, Backend("libbpf", "/x.btf")),
    (False, None, True, True, Backend("bcc")),
])
def test_auto_picks_libbpf_with_btf_else_bcc(has_btf, btf_file, bcc, headers, expected):
    assert choose("auto", facts(has_btf, btf_file, bcc, headers)) == expected


@pytest.mark.parametrize("bcc, headers", [(False, False), (True, False), (False, True)])
def test_auto_without_btf_or_bcc_names_both_ways_out(bcc, headers):
    with pytest.raises(EnvironmentProblem) as info:
        choose("auto", facts(bcc=bcc, headers=headers))
    line = one_line(info)
    assert "no BTF" in line and "--btf FILE" in line and "BTFHub" in line
    assert "python3-bpfcc" in line and "linux-headers-4.9.0-old" in line
    assert ("no kernel headers in /lib/modules/4.9.0-old/build" in line) is not headers
    assert ("python3-bpfcc is not installed" in line) is not bcc


def test_libbpf_without_any_btf_says_where_to_get_one():
    with pytest.raises(EnvironmentProblem) as info:
        choose("libbpf", facts(bcc=True, headers=True))
    line = one_line(info)
    assert "--btf FILE" in line and "--backend bcc" in line
    assert choose("libbpf", facts(btf_file="/x.btf")) == Backend("libbpf", "/x.btf")


def test_bcc_when_it_cannot_run_says_why():
    with pytest.raises(EnvironmentProblem) as info:
        choose("bcc", facts(has_btf=True))
    line = one_line(info)
    assert line.startswith("the bcc backend cannot run here (python3-bpfcc is not installed; "
                           "no kernel headers in /lib/modules/4.9.0-old/build)")
    assert line.endswith("or use --backend libbpf")
    with pytest.raises(EnvironmentProblem) as info:
        choose("bcc", facts(bcc=True))                      # headers alone missing, and no BTF
    line = one_line(info)
    assert "python3-bpfcc is not installed" not in line and "--btf FILE" in line
    assert choose("bcc", facts(has_btf=True, bcc=True, headers=True)) == Backend("bcc")


def test_btf_file_with_bcc_is_a_contradiction():
    with pytest.raises(UsageProblem) as info:
        choose("bcc", facts(btf_file="/x.btf", bcc=True, headers=True))
    assert "--btf is for the libbpf backend" in one_line(info)
    with pytest.raises(UsageProblem):
        resolve(BackendRequest("bcc", "/x.btf"))            # before the file is even looked at


def test_unknown_backend_is_refused():
    with pytest.raises(UsageProblem):
        choose("ebpf", facts(has_btf=True))


def test_describe_names_the_btf():
    assert Backend("libbpf").describe() == "libbpf (kernel BTF)"
    assert Backend("libbpf", "/var/tmp/k.btf").describe() == "libbpf (BTF /var/tmp/k.btf)"
    assert Backend("bcc").describe() == "bcc (kernel headers)"


# -- the facts ---------------------------------------------------------------------


def test_bcc_is_only_imported_when_the_choice_can_come_to_it(monkeypatch):
    calls = []
    monkeypatch.setattr(backend_mod, "bcc_module", lambda: calls.append(1) or (False, "nope"))
    monkeypatch.setattr(backend_mod, "BTF_PATH", "/")           # "the kernel has BTF"
    got = gather_facts(BackendRequest("auto"))
    assert got.has_btf and calls == [] and not got.bcc_importable
    gather_facts(BackendRequest("auto", "/x.btf"))
    assert calls == []
    gather_facts(BackendRequest("bcc"))
    assert calls == [1]
    monkeypatch.setattr(backend_mod, "BTF_PATH", "/nonexistent/vmlinux")
    got = gather_facts(BackendRequest("auto"))
    assert calls == [1, 1] and not got.has_btf and got.bcc_problem == "nope"


def test_bcc_module_says_why_it_does_not_import(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_bcc(name, *args, **kwargs):
        if name == "bcc":
            raise ModuleNotFoundError("No module named 'bcc'", name="bcc")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_bcc)
    monkeypatch.setattr(backend_mod, "_SYSTEM_BCC", ("/nonexistent/bcc",))
    assert backend_mod.bcc_module() == (False, "python3-bpfcc is not installed")
    # a directory without the package
    monkeypatch.setattr(backend_mod, "_SYSTEM_BCC", ("/",))
    assert backend_mod.bcc_module() == (False, "python3-bpfcc is not installed")


def test_a_venv_imports_the_systems_bcc_package_alone(monkeypatch, tmp_path):
    """python3-bpfcc's directory is imported as the package bcc; the rest of
    the system's site-packages stays out of the venv's path."""
    import builtins
    import sys

    system = tmp_path / "dist-packages"
    (system / "bcc").mkdir(parents=True)
    (system / "bcc" / "__init__.py").write_text("from .version import __version__\n")
    (system / "bcc" / "version.py").write_text("__version__ = '0.26.0'\n")
    (system / "other.py").write_text("raise AssertionError('not the venv')\n")
    real_import = builtins.__import__

    def venv_import(name, *args, **kwargs):
        if name == "bcc" and "bcc" not in sys.modules:
            raise ModuleNotFoundError("No module named 'bcc'", name="bcc")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", venv_import)
    monkeypatch.setattr(backend_mod, "_SYSTEM_BCC", (str(system / "bcc"),))
    monkeypatch.delitem(sys.modules, "bcc", raising=False)
    monkeypatch.delitem(sys.modules, "bcc.version", raising=False)
    path = list(sys.path)
    assert backend_mod.bcc_module() == (True, "0.26.0")
    assert sys.modules["bcc"].__file__ == str(system / "bcc" / "__init__.py")
    assert sys.path == path


# -- --btf FILE ----------------------------------------------------------------------


def test_bad_btf_files_are_one_line(tmp_path):
    text = tmp_path / "vmlinux.txt"
    # what `bpftool btf dump file /sys/kernel/btf/vmlinux format raw` prints: text, not BTF
    text.write_text("[1] INT 'long unsigned int' size=8 bits_offset=0 nr_bits=64 encoding=(none)\n")
    empty = tmp_path / "empty.btf"
    empty.write_bytes(b"")
    cases = {
        str(tmp_path / "missing.btf"): "no such file",
        str(tmp_path): "is a directory",
        str(text): "not a BTF file",
        str(empty): "not a BTF file",
    }
    for path, words in cases.items():
        with pytest.raises(UsageProblem) as info:
            check_btf_file(path)
        line = one_line(info)
        assert line.startswith(f"--btf {path}: ") and words in line, line


def btf_bearing_file(tmp_path) -> str:
    """A file libbpf parses as BTF, without reading the kernel's: a shipped
    object (an ELF file with .BTF, as BTFHub's files are)."""
    from kerntrace.tracers.engine import object_path

    try:
        path = object_path("selftest")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    copy = tmp_path / "some.btf"
    shutil.copy(path, copy)
    return str(copy)


def test_a_btf_file_passes_and_is_the_choice(tmp_path, monkeypatch):
    path = btf_bearing_file(tmp_path)
    check_btf_file(path)
    monkeypatch.setattr(backend_mod, "BTF_PATH", "/nonexistent/vmlinux")   # a kernel without BTF
    assert resolve(BackendRequest("auto", path)) == Backend("libbpf", path)
    assert resolve(BackendRequest("libbpf", path)) == Backend("libbpf", path)


def test_open_opts_match_libbpf_1_1():
    from kerntrace.tracers.engine.libbpf import _BpfObjectOpenOpts

    # struct bpf_object_open_opts in /usr/include/bpf/libbpf.h (1.1), x86_64
    assert ctypes.sizeof(_BpfObjectOpenOpts) == 80
    assert _BpfObjectOpenOpts.btf_custom_path.offset == 48
    assert _BpfObjectOpenOpts.kconfig.offset == 40
    assert _BpfObjectOpenOpts.kernel_log_level.offset == 72


def test_object_opens_with_a_custom_btf_path(tmp_path):
    from kerntrace.tracers.engine.libbpf import Object

    path = btf_bearing_file(tmp_path)
    with Object(path, btf_custom_path=path) as obj:       # read at load, not at open
        assert obj.btf_custom_path == path and obj.programs()


def test_btf_file_parse_errors_carry_errno(tmp_path):
    from kerntrace.tracers.engine.libbpf import BtfFile, LibbpfError

    with pytest.raises(LibbpfError) as info:
        BtfFile(str(tmp_path / "missing"))
    assert info.value.errno == errno.ENOENT
    path = btf_bearing_file(tmp_path)
    with BtfFile(path) as btf:
        assert btf.find("kt_no_such_type_anywhere", 4) < 0


def test_probes_read_the_btf_file_and_forget_what_they_knew(tmp_path, monkeypatch):
    path = btf_bearing_file(tmp_path)
    try:
        probe.set_kernel_btf(path)
        assert probe.kernel_btf_file() == path
        # facts come from FILE: a BPF object's BTF has no btf_trace_sched_switch
        assert probe.tracepoint_arg_count("sched_switch") is None
        assert probe.kernel_facts() == {"kt_switch_has_prev_state": False}
        # fentry and tp_btf attach by the kernel's own ids: FILE cannot stand in
        monkeypatch.setattr(probe, "KERNEL_BTF_PATH", str(tmp_path / "no-vmlinux"))
        verdict = probe.can_attach("fentry", "copy_net_ns")
        assert not verdict and verdict.kind_refused and "--btf serves CO-RE only" in verdict.reason
        with pytest.raises(OSError):
            probe.set_kernel_btf(str(tmp_path / "missing.btf"))
        assert probe.kernel_btf_file() == path               # a failed switch changes nothing
    finally:
        probe.set_kernel_btf(None)
    assert probe.kernel_btf_file() is None and not probe._cache


# -- the command lines ---------------------------------------------------------------


COMMANDS = [
    ("iotrace", "odirect", ["-c", "true"]),
    ("iotrace", "dstate", []),
    ("iotrace", "zombies", []),
    ("iotrace", "diagnose", []),
    ("nstrace", "ip6mr", []),
]


@pytest.mark.parametrize("prog, name, args", COMMANDS)
def test_every_tracing_command_hands_backend_and_btf_to_the_engine(prog, name, args, monkeypatch, capsys):
    import importlib

    module = importlib.import_module(f"kerntrace.tracers.{name}")
    seen = []

    def stop(request):
        seen.append(request)
        raise UsageProblem("stopped before attaching")

    monkeypatch.setattr(module, "require_bpf_environment", stop)
    main = iotrace_main if prog == "iotrace" else nstrace_main
    assert main([name, *args, "-d", "0", "--backend", "libbpf", "--btf", "/k.btf"]) == 2
    assert main([name, *args, "-d", "0"]) == 2
    assert seen == [BackendRequest("libbpf", "/k.btf"), BackendRequest("auto", None)]
    assert capsys.readouterr().err.strip().splitlines() == [f"{prog}: error: stopped before attaching"] * 2


def test_unknown_backend_is_a_usage_error(capsys):
    assert iotrace_main(["odirect", "-c", "true", "--backend", "ebpf"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--backend" in err


def test_bcc_that_cannot_run_is_one_line_before_root_or_bpf(monkeypatch, capsys):
    monkeypatch.setattr(backend_mod, "gather_facts", lambda request: facts(has_btf=True))
    monkeypatch.setattr("kerntrace.tracers.engine.environment.require_root",
                        lambda: pytest.fail("the backend is refused before root is asked for"))
    assert nstrace_main(["ip6mr", "--backend", "bcc", "-d", "1"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("nstrace: error: the bcc backend cannot run here (")
    assert iotrace_main(["dstate", "--btf", "/nonexistent/k.btf"]) == 2
    assert capsys.readouterr().err.strip() == "iotrace: error: --btf /nonexistent/k.btf: no such file"


# -- the run: the bcc backend's refusals, the ready line ------------------------------


class NoObjects(Tool):
    name = "noop"

    def objects(self):
        raise AssertionError("opened an object on a backend that cannot run it")


def test_bcc_refuses_a_tool_without_a_bcc_program_before_opening_anything():
    run = Run("iotrace", NoObjects(), Target(), [], backend=Backend("bcc"))
    with pytest.raises(UsageProblem) as info:
        run.execute()
    line = one_line(info)
    assert line.startswith("the bcc backend runs only nstrace ip6mr and iotrace odirect; iotrace noop needs BTF")
    assert "--btf FILE" in line


def test_a_tool_with_a_bcc_program_is_no_refusal():
    with pytest.raises(ValueError):
        bcc_refusal("nstrace ip6mr", "ip6mr")


def test_the_tools_that_are_to_have_bcc_programs():
    from kerntrace.tracers.dstate import DStateTool
    from kerntrace.tracers.ip6mr import Ip6mrTool
    from kerntrace.tracers.odirect import ODirectTool

    assert ODirectTool.bcc_program == "odirect" and Ip6mrTool.bcc_program == "ip6mr"
    assert DStateTool.bcc_program is None


def test_ready_line_ends_the_hooks_with_the_backend():
    line = ready_line("iotrace", "odirect", Target(argv=["true"]), "tp_btf sys_enter", Backend("libbpf", "/k.btf"))
    assert line == ("iotrace odirect: tracing command 'true'; Ctrl-C to end\n"
                    "hooks: tp_btf sys_enter; backend libbpf (BTF /k.btf)")
    assert ready_line("iotrace", "stat", Target(), "x").endswith("hooks: x")


def test_stat_takes_btf_and_refuses_a_bad_file_before_anything(tmp_path, monkeypatch, capsys):
    import kerntrace.tracers.stat as stat

    monkeypatch.setattr(stat, "_run", lambda *a, **k: pytest.fail("stat ran with a bad --btf FILE"))
    bad = tmp_path / "k.btf"
    bad.write_text("not BTF\n")
    assert iotrace_main(["stat", "--btf", str(bad), "1", "1"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == f"iotrace: error: --btf {bad}: not a BTF file (libbpf reads raw BTF, as " \
                   "/sys/kernel/btf/vmlinux, or an ELF file with a .BTF section)"
