"""The code sandbox: hostile programs fail safely, within the time limit, and leave nothing behind.

Each attack runs under both isolation modes that this machine supports: "os" (namespaces, a
read-only filesystem, a fresh uid; needs root) and "guard" (resource limits and a Python guard).
"""

import os
import socket
import time

import pytest

from lmforge.eval.sandbox import Limits, isolation, run_program, run_programs

MODES = ["guard"] + (["os"] if isolation()[0] == "os" else [])
LIMITS = Limits(timeout=2.0, memory_bytes=512 << 20)
SLACK = 3.0  # seconds allowed beyond the timeout for starting and killing the process


def run(source, mode):
    start = time.perf_counter()
    result = run_program(source, LIMITS, mode=mode)
    assert time.perf_counter() - start < LIMITS.timeout + SLACK
    return result


@pytest.mark.parametrize("mode", MODES)
def test_good_and_bad_programs(mode):
    ok = run("import os\nprint('hello from', os.getcwd())", mode)
    assert ok.passed and "hello from" in ok.stdout
    workdir = ok.stdout.split("hello from", 1)[1].strip()
    assert not os.path.exists(workdir)  # the temporary directory is removed
    bad = run("assert 1 + 1 == 3", mode)
    assert bad.status == "failed" and "AssertionError" in bad.stderr


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("source", ["while True:\n    pass\n", "import time\ntime.sleep(60)\n"])
def test_infinite_loop_times_out(mode, source):
    result = run(source, mode)
    assert result.status == "timeout" and not result.passed


@pytest.mark.parametrize("mode", MODES)
def test_fork_bomb(mode):
    source = "import os\nwhile True:\n    try:\n        os.fork()\n    except Exception:\n        pass\n"
    assert not run(source, mode).passed
    assert not run("import os\nwhile True:\n    os.fork()\n", mode).passed


@pytest.mark.parametrize("mode", MODES)
def test_rm_rf_and_writes_outside_fail(mode, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data.txt").write_text("keep me")
    outside = f"/tmp/lmforge-sandbox-escape-{os.getpid()}-{mode}"
    for source in [f"import subprocess\nsubprocess.run(['rm', '-rf', {str(precious)!r}], check=True)\n",
                   f"import shutil\nshutil.rmtree({str(precious)!r})\n",
                   f"import os\nos.remove({str(precious / 'data.txt')!r})\n",
                   f"open({outside!r}, 'w').write('escaped')\n"]:
        assert not run(source, mode).passed
    assert (precious / "data.txt").read_text() == "keep me"
    assert not os.path.exists(outside)


@pytest.mark.parametrize("mode", MODES)
def test_ten_gigabyte_allocation_fails(mode):
    result = run("x = bytearray(10 * 1024 ** 3)\nprint(len(x))\n", mode)
    assert not result.passed and "MemoryError" in result.stderr


@pytest.mark.parametrize("mode", MODES)
def test_socket_connect_fails(mode):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    port = server.getsockname()[1]
    source = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\ns.sendall(b'leak')\n"
    assert not run(source, mode).passed
    with pytest.raises(TimeoutError):
        server.accept()  # nobody connected
    server.close()


@pytest.mark.parametrize("mode", MODES)
def test_huge_output_is_capped(mode):
    result = run("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n", mode)
    assert not result.passed and len(result.stdout) <= LIMITS.output_chars


def test_many_programs_in_parallel():
    results = run_programs([f"assert {i} % 2 == 0" for i in range(6)], LIMITS, workers=2)
    assert [r.passed for r in results] == [i % 2 == 0 for i in range(6)]


@pytest.mark.skipif("os" not in MODES, reason="needs the 'os' isolation mode (root)")
def test_daemonised_grandchild_does_not_survive():
    source = ("import os, sys, time\npid = os.fork()\nif pid:\n    print(pid, flush=True)\n    sys.exit(0)\n"
              "os.setsid()\ntime.sleep(60)\n")
    result = run(source, "os")
    pid = int(result.stdout.split()[0])
    for _ in range(50):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(")")[-1].split()[0] == "Z":
                    break  # killed, waiting to be reaped
        except FileNotFoundError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the daemonised process {pid} is still running")
