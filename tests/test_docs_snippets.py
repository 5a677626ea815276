"""The code in the documentation that runs without root runs, and prints what the text says.

(The Python examples in ``examples/`` run against the kernel in ``tests/linux/test_examples.py``.)
"""

from __future__ import annotations

import contextlib
import io
import re
import textwrap
from pathlib import Path

import pytest

from tunflow.cli import main
from tunflow.wireguard import PrivateKey

ROOT = Path(__file__).resolve().parent.parent


def blocks(path: Path, language: str) -> list[str]:
    """The fenced ``language`` blocks of a Markdown file, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```$", path.read_text(), re.M | re.S)


def test_the_offload_page_runs_and_prints_what_it_says() -> None:
    # the page's blocks build on each other: one super-packet split, resumed, coalesced back
    code = "\n".join(blocks(ROOT / "docs" / "offload.md", "python"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "docs/offload.md", "exec"), {})
    printed = out.getvalue().splitlines()
    promised = re.findall(r"^print\(.*\)  # (\S+(?:, \S+)*?)(?::|$)", code, re.M)
    assert promised == ["[1488, 1488, 216]", "(1488, 4660)", "(3896,)"]
    assert printed[:3] == promised


def test_the_devices_page_vectored_example_runs() -> None:
    page = (ROOT / "docs" / "devices.md").read_text()
    indented = re.findall(r"^( +)```python\n(.*?)^\1```$", page, re.M | re.S)
    (code,) = [textwrap.dedent(body) for _, body in indented if "recv_vectored" in body]
    exec(compile(code, "docs/devices.md", "exec"), {})


def test_the_platforms_page_fake_kernel_example_runs() -> None:
    (code,) = [b for b in blocks(ROOT / "docs" / "platforms.md", "python") if "pretend_" in b]
    exec(compile(code, "docs/platforms.md", "exec"), {})


@pytest.mark.parametrize("doc", ["README.md", "docs/pipeline.md", "docs/vpn.md"])
def test_the_pipeline_configurations_in_the_docs_pass_check(
    doc: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configs = [b for b in blocks(ROOT / doc, "toml") if "[[stages]]" in b]
    assert configs
    # the wireguard stage's file, named relative to the working directory as in docs/vpn.md
    key = PrivateKey.generate()
    (tmp_path / "wg0.conf").write_text(f"[Interface]\nPrivateKey = {key.to_base64()}\n")
    (tmp_path / "wg0.conf").chmod(0o600)
    monkeypatch.chdir(tmp_path)
    for i, text in enumerate(configs):
        path = tmp_path / f"{i}.toml"
        path.write_text(text)
        assert main(["check", str(path)]) == 0, (text, capsys.readouterr().err)


def test_the_error_messages_the_pipeline_page_quotes_are_the_ones_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    page = (ROOT / "docs" / "pipeline.md").read_text()
    (good,) = [b for b in blocks(ROOT / "docs" / "pipeline.md", "toml") if "[tunnel]" in b]
    quoted = re.findall(r"`(run\.toml: [^`]*)`", page)
    spoilt = [
        good.replace('rate = "50mbit"', 'rate = "fast"'),
        good.replace("queues = 2 ", 'queues = "x" '),
        good.replace("batch_size = 128", "batch_size = -5"),
    ]
    assert len(quoted) == len(spoilt) and all(s != good for s in spoilt)
    monkeypatch.chdir(tmp_path)
    for text, message in zip(spoilt, quoted, strict=True):
        (tmp_path / "run.toml").write_text(text)
        assert main(["check", "run.toml"]) == 2
        assert message.removesuffix(", …") in capsys.readouterr().err
