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
