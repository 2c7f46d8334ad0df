"""What operators and the public see, with the real tools: the status pages of the source
and repo machines in a real headless Chromium (a pending proposal shows who approved it, how
many approvals it still needs and who could give them; a screenshot is taken), Debian's
Prometheus scraping the services and answering a query through its HTTP API, and the
enclave's metrics file."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import tools
from tests.e2e.test_pipeline_e2e import Pipeline, commit_pkgbuild, running_pipeline, wait_published
from tests.e2e.test_repo_intake_e2e import world  # noqa: F401
from tests.policy.world import World

pytestmark = pytest.mark.e2e


@pytest.fixture
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def prometheus(tmp: Path, targets: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    """Debian's Prometheus scraping ``targets`` (HOST:PORT) every second."""
    port = tools.free_port()
    conf = tmp / "prometheus.yml"
    conf.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: reposeal\n    static_configs:\n"
        f"      - targets: {json.dumps(targets)}\n"
    )
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={conf}", f"--storage.tsdb.path={tmp / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    tools.wait_port(port, "prometheus")
    return proc, f"http://127.0.0.1:{port}"


def query(api: str, expr: str, timeout: float = 60) -> list[dict[str, object]]:
    """Ask Prometheus until the expression has a value (it scrapes every second)."""
    deadline = time.monotonic() + timeout
    url = f"{api}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    while True:
        with urllib.request.urlopen(url, timeout=10) as resp:
            result = json.loads(resp.read())["data"]["result"]
        if result or time.monotonic() > deadline:
            return list(result)
        time.sleep(0.5)


def test_status_pages_metrics_and_prometheus(
    tmp_path: Path,
    world: World,  # noqa: F811
    browser: object,
) -> None:
    from prometheus_client.parser import text_string_to_metric_families
    from selenium.webdriver.common.by import By

    driver: object = browser
    repo_public, source_public = tools.free_port(), tools.free_port()
    metrics_file = tmp_path / "enclave.prom"
    extra = {
        "repo": ["--public-listen", f"127.0.0.1:{repo_public}"],
        "source": ["--public-listen", f"127.0.0.1:{source_public}"],
        "enclave": ["--metrics-file", str(metrics_file)],
    }
    with running_pipeline(tmp_path, world, extra=extra) as p:
        tools.wait_port(source_public, "the source machine's status page")
        scraper, api = prometheus(tmp_path, [f"127.0.0.1:{repo_public}",
                                             f"127.0.0.1:{source_public}"])  # fmt: skip
        try:
            _pending_then_published(p, driver, source_public, repo_public, tmp_path, By)
            awaiting = query(api, 'reposeal_proposals{state="awaiting approvals"} == 0')
            assert awaiting, "Prometheus scraped the source machine"
            expiry = query(api, "reposeal_signature_expiry_hours_min > 24")
            assert expiry and float(expiry[0]["value"][1]) > 24, expiry  # type: ignore[index]
            done = query(api, 'reposeal_decisions_total{role="repo",decision="accept"} >= 1')
            assert done, "the repo machine's decisions were scraped"
        finally:
            scraper.terminate()
            scraper.wait(10)
        _public_provenance(p, driver, tmp_path, world, By)
    families = {f.name: f for f in text_string_to_metric_families(metrics_file.read_text())}
    accepted = [s.value for s in families["reposeal_decisions"].samples
                if s.name.endswith("_total") and s.labels["decision"] == "accept"]  # fmt: skip
    assert sum(accepted) >= 2, "the enclave counted its package and database signatures"
    assert families["reposeal_log_entries"].samples[0].value >= 2


def _pending_then_published(
    p: Pipeline, driver: object, source_public: int, repo_public: int, tmp: Path, by: object
) -> None:
    d: object = driver
    first = commit_pkgbuild(p.git, "hello-1.0", 1_700_000_000)
    p.proposal(first)
    assert p.approve(0, first).returncode == 0

    d.get(f"http://127.0.0.1:{source_public}/")  # type: ignore[attr-defined]
    approval = d.find_element(by.CSS_SELECTOR, "li.approval[data-repo=core]").text  # type: ignore[attr-defined]
    assert "approved by maint0" in approval and "1 more needed" in approval, approval
    assert "maint1 <maint1@example.org>" in approval, "who could still approve, by name"
    shot = tmp / "source-status.png"
    assert d.save_screenshot(str(shot)) and shot.stat().st_size > 1000  # type: ignore[attr-defined]

    assert p.approve(1, first).returncode == 0
    for who in (0, 1):
        out = p.build(who)
        assert out.returncode == 0 and "built 1 job" in out.stdout, out.stderr
    wait_published(p, "1.0")
    d.get(f"http://127.0.0.1:{source_public}/")  # type: ignore[attr-defined]
    page = d.find_element(by.ID, "proposals").find_element(by.XPATH, "..").text  # type: ignore[attr-defined]
    assert "(enough)" in page and "built by builder0, builder1" in page, page

    d.get(f"http://127.0.0.1:{repo_public}/")  # type: ignore[attr-defined]
    body = d.find_element(by.TAG_NAME, "body").text  # type: ignore[attr-defined]
    assert "core/x86_64" in body and "days" in body, body
    assert "added hello" in body, "the log section shows what the entry signed"
    repo_shot = tmp / "repo-status.png"
    assert d.save_screenshot(str(repo_shot))  # type: ignore[attr-defined]
    keep = Path("/tmp/reposeal-screenshots")
    keep.mkdir(exist_ok=True)
    shutil.copy2(shot, keep / shot.name)
    shutil.copy2(repo_shot, keep / repo_shot.name)


def _public_provenance(p: Pipeline, driver: object, tmp: Path, world: World, by: object) -> None:  # noqa: F811
    """Anyone, from the mirror alone: an auditor's copy of the log (`enclave restore
    --keyring`), the provenance pages written from it (`enclave provenance`), read in
    Chromium: who approved hello 1.0 at which commit, which builders attested which sha256,
    the log entry's inclusion proof, the indexes by package and by maintainer, and the
    PKGBUILD change approved for hello 1.1 (the text came from the source machine through
    the untrusted repo machine; the enclave kept it because its sha256 is the approved one)."""
    from reposeal.translog.proof import parse_proof
    from tests.e2e.test_pipeline_e2e import cli

    d: object = driver
    second = commit_pkgbuild(p.git, "hello-1.1", 1_700_000_100)
    p.proposal(second)
    for who in (0, 1):
        assert p.approve(who, second).returncode == 0
    for who in (0, 1):
        out = p.build(who)
        assert out.returncode == 0 and "built 1 job" in out.stdout, out.stderr
    wait_published(p, "1.1", commit=second)
    deadline = time.monotonic() + 60  # the log reaches the mirror after the databases
    while not list((tmp / "mirror" / "log" / "pkgbuilds").glob("*")):
        assert time.monotonic() < deadline, "no PKGBUILD text reached the mirror's log"
        time.sleep(0.2)
    trusted = tmp / "trusted.asc"
    trusted.write_text(world.admins[2].cert)
    copy = cli("enclave", "restore", "--home", str(tmp / "auditor"), "--from",
               f"file://{tmp / 'mirror' / 'log'}", "--keyring", str(trusted))  # fmt: skip
    assert copy.returncode == 0, copy.stderr
    pages = tmp / "mirror" / "provenance"  # beside the repositories: every mirror carries it
    made = cli("enclave", "provenance", str(tmp / "auditor"), "-o", str(pages))
    assert made.returncode == 0, made.stderr
    d.get(f"file://{pages}/index.html")  # type: ignore[attr-defined]
    row = d.find_element(by.XPATH, "//td[starts-with(@id, 'p-hello-1-0')]/..").text  # type: ignore[attr-defined]
    assert "maint0 <maint0@example.org>" in row and "maint1 <maint1@example.org>" in row, row
    assert "builder0 <builder0@example.org>" in row and "builder1" in row, row
    (pkg,) = [x for x in (tmp / "mirror").rglob("hello-1.0-1-*.pkg*")  # 1.1 moved it aside
              if not x.name.endswith(".sig") and x.is_file()]  # fmt: skip
    assert hashlib.sha256(pkg.read_bytes()).hexdigest() in row, "the sha256 builders attested"
    proof_link = d.find_element(by.XPATH, "//td[starts-with(@id, 'p-hello-1-0')]/../td[1]/a")  # type: ignore[attr-defined]
    index = int(proof_link.text)
    proof = parse_proof((pages / "proofs" / f"{index}.tlog-proof").read_bytes())
    assert proof.index == index
    d.find_element(by.LINK_TEXT, "maintainer").click()  # type: ignore[attr-defined]
    listed = d.find_element(by.TAG_NAME, "body").text  # type: ignore[attr-defined]
    assert "maint0 <maint0@example.org>: hello 1.0-1" in listed, listed

    d.get(f"file://{pages}/index.html")  # type: ignore[attr-defined]
    newer = d.find_element(by.XPATH, "//td[starts-with(@id, 'p-hello-1-1')]/..")  # type: ignore[attr-defined]
    newer.find_element(by.LINK_TEXT, "the approved change").click()
    change = d.find_element(by.TAG_NAME, "pre").text  # type: ignore[attr-defined]
    assert "-pkgver=1.0" in change and "+pkgver=1.1" in change, change
    assert "+pkgdesc=" in change and "improved" in change, change
    d.save_screenshot("/tmp/reposeal-screenshots/pkgbuild-diff.png")  # type: ignore[attr-defined]
    text = (tmp / "mirror" / "log" / "pkgbuilds").glob("*")
    assert [hashlib.sha256(t.read_bytes()).hexdigest() == t.name for t in text] == [True, True]
    d.save_screenshot(str(tmp / "provenance.png"))  # type: ignore[attr-defined]
    shutil.copy2(tmp / "provenance.png", Path("/tmp/reposeal-screenshots") / "provenance.png")
