"""The VPN commands' standard streams: output to a reader that went away, input bounds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TUNFLOW = [sys.executable, "-m", "tunflow.cli"]


@pytest.mark.parametrize("command", ["genkey", "genpsk", "pubkey"])
def test_output_to_a_closed_pipe_ends_quietly(command: str) -> None:
    # `tunflow genkey | true`, `tunflow show | head -c0`: the reader is gone before the write;
    # that was a BrokenPipeError traceback (or "Exception ignored … BrokenPipeError" and status
    # 120 when the write waited in the buffer until the exit)
    r, w = os.pipe()
    os.close(r)
    try:
        done = subprocess.run(
            [*TUNFLOW, command],
            input=b"yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n",
            stdout=w,
            stderr=subprocess.PIPE,
            timeout=60,
        )
    finally:
        os.close(w)
    assert done.returncode == 1
    assert done.stderr == b""


@pytest.mark.parametrize(
    "command",
    [["genkey"], ["genpsk"], ["pubkey"], ["show", "nosuchwg0"], ["strip", "/dev/null"], ["stages"]],
)
def test_closed_stdout_is_an_error(command: list[str]) -> None:
    # `tunflow genkey >&-`: sys.stdout is None; genkey and genpsk were an AttributeError
    # traceback, pubkey, show and strip printed nothing (or a traceback) — the key was lost
    done = subprocess.run(
        ["sh", "-c", 'exec "$@" >&-', "sh", *TUNFLOW, *command],
        input=b"yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n",
        stderr=subprocess.PIPE,
        timeout=60,
    )
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert err == "tunflow: standard output is closed: nowhere to write the output\n"


def test_pubkey_with_stdin_closed_is_an_error() -> None:
    # `tunflow pubkey <&-`: sys.stdin is None — an AttributeError traceback (wg pubkey: an
    # error, status 1)
    done = subprocess.run(
        ["sh", "-c", 'exec "$@" <&-', "sh", *TUNFLOW, "pubkey"],
        capture_output=True,
        timeout=60,
    )
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert err == "tunflow: standard input is closed: no private key to read\n"
    assert done.stdout == b""


def test_errors_never_go_to_stdout_when_stderr_is_closed(tmp_path: Path) -> None:
    # `tunflow check FILE 2>&-`: sys.stderr is None, and print(…, file=None) prints to
    # standard output — the error went where the command's output goes
    done = subprocess.run(
        ["sh", "-c", 'exec "$@" 2>&-', "sh", *TUNFLOW, "check", str(tmp_path / "none.toml")],
        stdout=subprocess.PIPE,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stdout == b""


def test_pubkey_reads_no_more_than_4_kib() -> None:
    # a private key is 44 characters: pubkey read stdin to its end, however much came (a file
    # of gigabytes, /dev/zero: until memory ran out); now 4 KiB at most, and more is an error
    key = b"yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n"
    with subprocess.Popen(
        [*TUNFLOW, "pubkey"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdin is not None and proc.stderr is not None
        # more than 4 KiB, and the end of it not yet: the answer may not wait for it
        proc.stdin.write(key + b" " * 8192)
        proc.stdin.flush()
        try:
            status = proc.wait(timeout=30)
        finally:
            proc.kill()
        err = proc.stderr.read().decode()
    assert status == 2
    assert "more than 4096 bytes" in err and "Traceback" not in err
    # within the limit, trailing whitespace is still fine (as for wg pubkey)
    done = subprocess.run([*TUNFLOW, "pubkey"], input=key + b"\n" * 2000, capture_output=True)
    assert done.returncode == 0
    assert done.stdout == b"HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=\n"
