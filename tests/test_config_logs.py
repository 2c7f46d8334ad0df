"""Config files per role (TOML, flags override) and the services' log lines."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from reposeal import logs
from reposeal.cli import _register, main
from reposeal.cli.config import load
from tests import tools

_register("")  # every command group, as the console script does


def command(*path: str) -> click.Command:
    found: click.Command = main
    for name in path:
        assert isinstance(found, click.Group)
        found = found.commands[name]
    return found


def test_every_option_by_its_name_with_dashes_or_underscores(tmp_path: Path) -> None:
    cfg = tmp_path / "repo.toml"
    cfg.write_text('dir = "/var/lib/reposeal/repo"\nclient-ca = "/etc/ca.pem"\n'
                   'refresh_before = "2d"\nlog-format = "json"\n')  # fmt: skip
    got = load(cfg, command("repo", "serve"))
    assert got == {"folder": "/var/lib/reposeal/repo", "client_ca": "/etc/ca.pem",
                   "refresh_before": "2d", "log_format": "json"}  # fmt: skip


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ('lisen = "0.0.0.0:1"\n', "lisen is not an option of this command"),
        ("listen = [1, 2]\n", "must be a string"),
        ("dir = \n", "not valid TOML"),
    ],
)
def test_a_bad_file_is_an_error_naming_the_key(tmp_path: Path, text: str, complaint: str) -> None:
    cfg = tmp_path / "repo.toml"
    cfg.write_text(text)
    with pytest.raises(click.BadParameter, match=complaint):
        load(cfg, command("repo", "serve"))


def test_lists_for_options_given_several_times(tmp_path: Path) -> None:
    cfg = tmp_path / "witness.toml"
    cfg.write_text('log = ["a+1+x", "b+2+y"]\n')
    assert load(cfg, command("witness", "serve"))["logs"] == ["a+1+x", "b+2+y"]


def test_the_file_fills_options_and_the_command_line_wins(tmp_path: Path) -> None:
    """A witness started from a config file alone, then with --listen overriding it: its
    `listening` line (JSON, as the file asks) says where it listens."""
    from tests.witness.test_protocol import LOG

    tools.run_text([sys.executable, "-m", "reposeal.cli", "witness", "keygen", "--name",
                    "w.example", "-o", str(tmp_path / "w.key")])  # fmt: skip
    vkey = LOG.verifier.encode()  # the log it witnesses
    port, other = tools.free_port(), tools.free_port()
    cfg = tmp_path / "witness.toml"
    lines = [
        f'db = "{tmp_path / "w.sqlite"}"',
        f'key = "{tmp_path / "w.key"}"',
        f'log = ["{vkey}"]',
        f'listen = "127.0.0.1:{port}"',
        'log-format = "json"',
    ]
    cfg.write_text("\n".join(lines) + "\n")
    for extra, expect in (([], port), (["--listen", f"127.0.0.1:{other}"], other)):
        proc = subprocess.Popen(
            [sys.executable, "-m", "reposeal.cli", "witness", "serve", "--config", str(cfg),
             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            lines = [json.loads(proc.stdout.readline()) for _ in range(2)]
            listening = [d for d in lines if d["event"] == "listening"]
            assert listening and listening[0]["address"] == f"127.0.0.1:{expect}", lines
            assert listening[0]["level"] == "info" and listening[0]["time"].endswith("Z")
        finally:
            proc.terminate()
            proc.wait(10)


def test_an_unknown_key_stops_the_service_before_it_starts(tmp_path: Path) -> None:
    cfg = tmp_path / "witness.toml"
    cfg.write_text('lsten = "127.0.0.1:1"\n')
    proc = subprocess.run([sys.executable, "-m", "reposeal.cli", "witness", "serve", "--config",
                           str(cfg)], capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 2 and "lsten is not an option" in proc.stderr, proc.stderr


def test_log_lines_text_and_json() -> None:
    out = io.StringIO()
    logs.setup("text", "info", out)
    try:
        logs.info("repo", "cycle", cycle="c1", repo="core", step="publish")
        logs.warning("enclave", "refused", reasons=["hello: older than 1.1-1"])
        logs.event("repo", "hidden", 10)  # debug: below the level
        text = out.getvalue().splitlines()
        assert len(text) == 2
        assert text[0].split()[1:] == ["INFO", "repo", "cycle", "cycle=c1", "repo=core",
                                       "step=publish"]  # fmt: skip
        assert 'reasons="[\\"hello: older than 1.1-1\\"]"' in text[1] and " WARNING " in text[1]
        out.seek(0)
        out.truncate()
        logs.setup("json", "info", out)
        logs.error("source", "error", message="a b")
        doc = json.loads(out.getvalue())
        assert doc["level"] == "error" and doc["component"] == "source" and doc["message"] == "a b"
    finally:
        logs.setup("text", "info", sys.stderr)
