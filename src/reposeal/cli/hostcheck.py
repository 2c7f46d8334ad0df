"""`reposeal hostcheck`: AIDE, rkhunter or debsums, run by a timer, with one clear result."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click

from reposeal.cli import EXIT_CODES, main


@main.command("hostcheck", epilog=EXIT_CODES, context_settings={"ignore_unknown_options": True})
@click.argument("tool", type=click.Choice(["aide", "rkhunter", "debsums"]))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option(
    "--hold",
    "home",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The enclave home to put on hold on a finding (on the enclave machine).",
)
@click.option(
    "--metrics-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keep the result as a Prometheus metric here (node_exporter's textfile collector).",
)
def hostcheck_cmd(
    tool: str, args: tuple[str, ...], home: Path | None, metrics_file: Path | None
) -> None:
    """Run TOOL (with ARGS after `--`, else its usual check: `aide --check`, `rkhunter
    --check`, `debsums --silent`) and say in one log line what it found. With --hold, a
    finding puts the enclave on hold: it signs nothing until an admin has looked and runs
    `reposeal enclave clear-hold`. Exit 0: clean; 5: findings; 6: the tool failed."""
    from reposeal import logs
    from reposeal.hostcheck import PACKAGES, TOOLS, interpret

    argv = [TOOLS[tool][0], *args] if args else list(TOOLS[tool])
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=6 * 3600)
    except FileNotFoundError:
        logs.error("hostcheck", "error", tool=tool, message=f"install Debian's {PACKAGES[tool]}")
        sys.exit(6)
    outcome = interpret(tool, proc.returncode, proc.stdout, proc.stderr)
    if metrics_file is not None:
        _keep_metric(metrics_file, tool, outcome.findings, outcome.error)
    if outcome.error is not None:
        logs.error("hostcheck", "error", tool=tool, message=outcome.error,
                   output=(proc.stderr or proc.stdout)[-500:])  # fmt: skip
        sys.exit(6)
    if outcome.clean:
        logs.info("hostcheck", "clean", tool=tool)
        return
    logs.error("hostcheck", "FINDINGS", tool=tool, count=len(outcome.findings),
               findings=outcome.findings[:20])  # fmt: skip
    if home is not None:
        from reposeal.enclave.hold import hold

        hold(home, tool, outcome.findings)
        logs.error("hostcheck", "on hold", home=str(home),
                   clear=f"reposeal enclave clear-hold --home {home} --reason TEXT")  # fmt: skip
    sys.exit(5)


def _keep_metric(path: Path, tool: str, findings: list[str], error: str | None) -> None:
    from reposeal.metrics import Metrics

    m = Metrics("hostcheck")
    m.gauges(
        lambda: {"reposeal_hostcheck_findings": {(("tool", tool),): float(len(findings))},
                 "reposeal_hostcheck_failed": {(("tool", tool),): float(error is not None)}},
        {"reposeal_hostcheck_findings": "What the last host check found.",
         "reposeal_hostcheck_failed": "1 if the last host check could not run."},
    )  # fmt: skip
    m.write(path)
