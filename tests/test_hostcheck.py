"""Reading what AIDE, rkhunter and debsums said (pure), and the hold they put the enclave on."""

from __future__ import annotations

from pathlib import Path

import pytest

from reposeal.enclave import hold
from reposeal.hostcheck import interpret

AIDE = """AIDE found differences between database and filesystem!!
---------------------------------------------------
Added entries:
---------------------------------------------------

f+++++++++++++++++: /usr/bin/backdoor

---------------------------------------------------
Changed entries:
---------------------------------------------------

f > ... ....H.. . : /usr/bin/ls

---------------------------------------------------
Detailed information about changes:
---------------------------------------------------
File: /usr/bin/ls
"""


def test_each_tool_read_from_its_exit_status_and_output() -> None:
    assert interpret("aide", 0, "", "").clean
    found = interpret("aide", 5, AIDE, "")
    assert found.findings == ["added: /usr/bin/backdoor", "changed: /usr/bin/ls"]
    assert interpret("aide", 17, "", "config error").error
    warned = interpret("rkhunter", 1, "Warning: The file properties have changed:\n x", "")
    assert warned.findings == ["Warning: The file properties have changed:"]
    assert interpret("rkhunter", 0, "", "").clean and interpret("rkhunter", 2, "", "").error
    changed = interpret("debsums", 2, "", "debsums: changed file /usr/bin/ls (from coreutils "
                        "package)\n")  # fmt: skip
    assert changed.findings == ["changed: /usr/bin/ls"]
    assert interpret("debsums", 0, "", "").clean


def test_a_hold_that_does_not_parse_still_holds(tmp_path: Path) -> None:
    (tmp_path / "HOLD").write_bytes(b"\xff not json")
    with pytest.raises(hold.OnHoldError, match="on hold"):
        hold.refuse_if_held(tmp_path)
    hold.hold(tmp_path, "aide", ["changed: /usr/bin/ls"], now=1.0)
    assert "aide: changed: /usr/bin/ls" in hold.describe(hold.held(tmp_path) or {})
    with pytest.raises(Exception, match="say why"):
        hold.clear(tmp_path, "  ")
    hold.clear(tmp_path, "reinstalled coreutils")
    hold.refuse_if_held(tmp_path)  # signs again


def test_the_sandbox_readers() -> None:
    from reposeal.enclave.hardening import (
        key_file_problems,
        listening_inodes,
        sandbox_problems,
        status_fields,
    )

    confined = status_fields("Name:\tpython3\nNoNewPrivs:\t1\nCapEff:\t0000000000000000\n"
                             "Seccomp:\t2\n")  # fmt: skip
    assert sandbox_problems(confined) == []
    loose = status_fields("NoNewPrivs:\t0\nCapEff:\t000001ffffffffff\nSeccomp:\t0\n")
    assert len(sandbox_problems(loose)) == 3
    table = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
        "timeout inode\n"
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0"
        "        0 4242 1 0000000000000000 100 0 0 10 0\n"
        "   1: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0"
        "        0 4343 1 0000000000000000 20 4 30 10 -1\n"
    )
    assert listening_inodes(table) == {"4242"}
    assert key_file_problems(0o100600) == [] and key_file_problems(0o100640) == []
    assert key_file_problems(0o100644)
