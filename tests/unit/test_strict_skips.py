"""KERNTRACE_STRICT=1 turns a kernel test's skip into a failure, except the
skip a test declares with backend_cannot on the backend it names."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parent.parent / "conftest.py"

KERNEL_TESTS = '''
import pytest

@pytest.mark.backend_cannot("bcc", reason="BCC has no tp_btf")
def test_declared():
    pass

@pytest.mark.backend_cannot("bcc", reason="BCC has no tp_btf")
def test_declared_but_skips_for_another_reason():
    pytest.skip("fio is not installed")

def test_undeclared_skip():
    pytest.skip("no kprobes here")

def test_runs():
    pass
'''


def outcomes(tmp_path: Path, **env: str) -> dict[str, str]:
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "kernel").mkdir(exist_ok=True)
    (tmp_path / "kernel" / "test_k.py").write_text(textwrap.dedent(KERNEL_TESTS))
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("KERNTRACE_")}
    run_env.update(env)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", "kernel"],
                          cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=120)
    found = {}
    for line in done.stdout.splitlines():
        word, _, rest = line.partition(" ")
        if word in ("PASSED", "FAILED", "SKIPPED") and "::" in rest:
            found[rest.split("::")[1].split(" ")[0]] = word
    return found | {"stdout": done.stdout}


def test_strict_bcc_pass_keeps_only_the_declared_skip(tmp_path):
    got = outcomes(tmp_path, KERNTRACE_STRICT="1", KERNTRACE_BACKEND="bcc")
    assert got["test_undeclared_skip"] == "FAILED", got["stdout"]
    assert got["test_runs"] == "PASSED"
    # both declared tests skip on bcc before their bodies run, saying why
    assert "SKIPPED [2] conftest.py" in got["stdout"], got["stdout"]
    assert "the bcc backend cannot run this: BCC has no tp_btf" in got["stdout"]
    assert "1 failed, 1 passed, 2 skipped" in got["stdout"]


@pytest.mark.parametrize("backend", ["", "libbpf", "auto"])
def test_a_declared_test_runs_on_the_other_backends(tmp_path, backend):
    got = outcomes(tmp_path, KERNTRACE_STRICT="1", KERNTRACE_BACKEND=backend)
    assert got["test_declared"] == "PASSED", got["stdout"]
    # the mark excuses its backend's skip only, not another one
    assert got["test_declared_but_skips_for_another_reason"] == "FAILED"
    assert "2 failed, 2 passed" in got["stdout"]
