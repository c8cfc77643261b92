"""Error paths of the ctypes binding: they need no root."""
from __future__ import annotations

import errno

import pytest

from kerntrace.tracers.engine import libbpf
from kerntrace.tracers.engine import parse_section
from kerntrace.tracers.engine.libbpf import LibbpfError, Object, _verifier_log


def test_open_missing_file_raises_with_errno():
    with pytest.raises(LibbpfError) as info:
        Object("/nonexistent/x.bpf.o")
    assert info.value.errno == errno.ENOENT
    assert "/nonexistent/x.bpf.o" in str(info.value)


def test_open_non_elf_raises(tmp_path):
    bogus = tmp_path / "bogus.bpf.o"
    bogus.write_bytes(b"not an ELF file at all")
    with pytest.raises(LibbpfError) as info:
        Object(str(bogus))
    assert info.value.errno > 0


def test_missing_program_and_map_raise_enoent():
    from kerntrace.tracers.engine import object_path

    try:
        path = object_path("selftest")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    with Object(path) as obj:
        with pytest.raises(LibbpfError) as info:
            obj.program("nope")
        assert info.value.errno == errno.ENOENT
        with pytest.raises(LibbpfError):
            obj.map("nope")
        names = {p.name for p in obj.programs()}
        assert {"selftest_getppid", "selftest_fentry", "kt_follow_fork"} <= names
    with pytest.raises(LibbpfError) as info:
        obj.programs()
    assert info.value.errno == errno.EBADF


def test_programs_and_maps_of_a_closed_object_raise_instead_of_crashing():
    from kerntrace.tracers.engine import object_path

    try:
        path = object_path("selftest")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    obj = Object(path)
    prog, ring = obj.programs()[0], obj.maps()[0]
    assert prog.name and ring.name
    obj.close()
    for use in (lambda: prog.name, lambda: prog.attach(), lambda: ring.name, lambda: ring.fd):
        with pytest.raises(LibbpfError) as info:
            use()
        assert info.value.errno == errno.EBADF


def test_verifier_log_is_cut_from_libbpf_output():
    lines = ["libbpf: prog 'x': BPF program load failed: Permission denied",
             "libbpf: prog 'x': -- BEGIN PROG LOAD LOG --\n0: R1=ctx\ninvalid access\n-- END PROG LOAD LOG --",
             "libbpf: failed to load object"]
    log = _verifier_log(lines)
    assert log.startswith("-- BEGIN PROG LOAD LOG --") and "invalid access" in log
    assert _verifier_log(["only this"]) == "only this"


def test_libbpf_messages_go_to_logging(caplog):
    caplog.set_level("DEBUG", logger="kerntrace.libbpf")
    with pytest.raises(LibbpfError):
        Object("/nonexistent/y.bpf.o")
    assert any("y.bpf.o" in r.getMessage() for r in caplog.records)


def test_load_error_carries_log_in_str():
    err = libbpf.BpfLoadError(13, "load BPF object t.bpf.o", "-- BEGIN PROG LOAD LOG --\nR0 !read_ok")
    assert err.errno == 13 and "R0 !read_ok" in str(err)


@pytest.mark.parametrize(
    "section, expected",
    [
        ("tp/syscalls/sys_enter_read", ("tracepoint", "syscalls/sys_enter_read")),
        ("tp_btf/sched_switch", ("tp_btf", "sched_switch")),
        ("fentry/copy_net_ns", ("fentry", "copy_net_ns")),
        ("kretprobe/copy_net_ns", ("kretprobe", "copy_net_ns")),
        ("raw_tp/sched_switch", ("raw_tp", "sched_switch")),
    ],
)
def test_parse_section(section, expected):
    assert parse_section(section) == expected


def test_parse_section_rejects_unknown():
    with pytest.raises(ValueError):
        parse_section("xdp")
