"""The VPN commands' standard streams: output to a reader that went away, input bounds."""

from __future__ import annotations

import os
import subprocess
import sys

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
