"""The ansible deployment, for real: the playbook passes `ansible-playbook --syntax-check`
and `ansible-lint`, applies with the local connection to a scratch root per machine (the
repo machine, the source machine, two builders, the enclave; users, packages and services
are left alone), places every file a role needs with its mode, initialises the enclave home
and renders a config file per role; every systemd unit passes `systemd-analyze verify` and
carries the hardening the design asks for. Then each rendered unit's command line is started
as it is (not through systemd, which this machine lacks), with nginx serving the mirror from
the rendered site, and one package goes through the pipeline they form: committed,
approved by two maintainers, built by both builders, signed, published, installed by the
real pacman over HTTP from nginx."""

from __future__ import annotations

import json
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests import tools
from tests.e2e.test_pipeline_e2e import commit_pkgbuild, git
from tests.e2e.test_repo_cycle_e2e import pacman_trusting_the_enclave
from tests.e2e.test_repo_intake_e2e import world  # noqa: F401
from tests.policy.world import World

pytestmark = pytest.mark.e2e
ANSIBLE = Path(__file__).resolve().parents[2] / "deploy" / "ansible"
# (a host named as its group would not get its own variables: the names differ)
HOSTS = {"repo1": "repo", "source1": "source", "builder1": "builders", "builder2": "builders",
         "enclave1": "enclave"}  # fmt: skip
HOSTCHECKS = [f"reposeal-hostcheck-{t}.{k}" for t in ("aide", "rkhunter", "debsums")
              for k in ("service", "timer")]  # fmt: skip
UNITS = {
    "repo1": ["reposeal-repo.service", "reposeal-provenance.service",
              "reposeal-provenance.timer"],
    "source1": ["reposeal-source.service"],
    "builder1": ["reposeal-builder.service"],
    "builder2": ["reposeal-builder.service"],
    "enclave1": ["reposeal-enclave.service", "reposeal-selfcheck.service",
                 "reposeal-selfcheck.timer", "reposeal-rehearsal.service",
                 "reposeal-rehearsal.timer"],
}  # fmt: skip


def run(*cmd: str, cwd: Path = ANSIBLE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, check=False)


def host_files(tmp: Path, world: World) -> dict[str, Path]:  # noqa: F811
    """Each machine's folder of files, as an admin prepares them: certificates from
    `reposeal bridge pki`, the signed policy, the signing keys."""
    pki = tmp / "pki"
    made = run(sys.executable, "-m", "reposeal.cli", "bridge", "pki", str(pki), "--ip",
               "127.0.0.1", "--also", "builder2:builder", "--also", "maint0:maintainer",
               "--also", "maint1:maintainer")  # fmt: skip
    assert made.returncode == 0, made.stderr
    policy = world.policy().to_bytes()
    signed = b"".join(p.sign(policy) for p in world.admins[:2])
    wanted = {
        "repo1": {"bridge.pem": "bridge.pem", "bridge.key": "bridge.key"},
        "source1": {n: n for n in ("source-server.pem", "source-server.key", "source.pem",
                                   "source.key")},
        "builder1": {"builder.pem": "builder.pem", "builder.key": "builder.key"},
        "builder2": {"builder.pem": "builder2.pem", "builder.key": "builder2.key"},
        "enclave1": {"enclave.pem": "enclave.pem", "enclave.key": "enclave.key"},
    }  # fmt: skip
    folders = {}
    for host, names in wanted.items():
        folder = tmp / "files" / host
        folder.mkdir(parents=True)
        shutil.copy2(pki / "ca.pem", folder / "ca.pem")
        for name, source in names.items():
            shutil.copy2(pki / source, folder / name)
        if host in ("repo1", "source1", "enclave1"):
            (folder / "policy.json").write_bytes(policy)
            (folder / "policy.json.sig").write_bytes(signed)
        folders[host] = folder
    for i, host in enumerate(("builder1", "builder2")):
        shutil.copy2(world.builders[i].signer.path, folders[host] / "builder-signing.key")
    shutil.copy2(world.admins[2].signer.path, folders["enclave1"] / "repo-signing.key")
    for host in ("enclave1", "repo1"):
        (folders[host] / "repo-key.asc").write_text(world.admins[2].cert)
    return folders


def inventory(tmp: Path, base: Path, folders: dict[str, Path], ports: dict[str, int]) -> Path:
    groups: dict[str, dict[str, dict[str, object]]] = {}
    for host, group in HOSTS.items():
        groups.setdefault(group, {"hosts": {}})["hosts"][host] = {
            "ansible_connection": "local",
            "ansible_python_interpreter": "/usr/bin/python3",
            "reposeal_root": str(base / host),
            "reposeal_files": str(folders[host]),
        }
    doc = {"all": {"vars": {
        "reposeal_install": False,
        "reposeal_bin": str(Path(sys.executable).with_name("reposeal")),
        "reposeal_repo_ip": "127.0.0.1",
        "reposeal_repo_url": f"https://127.0.0.1:{ports['repo']}",
        "reposeal_source_url": f"https://127.0.0.1:{ports['source']}",
        "reposeal_repo_listen": f"127.0.0.1:{ports['repo']}",
        "reposeal_source_listen": f"127.0.0.1:{ports['source']}",
        "reposeal_repo_public_listen": f"127.0.0.1:{ports['repo_public']}",
        "reposeal_source_public_listen": f"127.0.0.1:{ports['source_public']}",
        "reposeal_mirror_port": ports["mirror"],
        "reposeal_enclave_origin": "deploy.example/log",
    }, "children": groups}}  # fmt: skip
    path = tmp / "inventory.yml"
    path.write_text(json.dumps(doc))  # YAML is a superset of JSON
    return path


def exec_start(unit: Path) -> list[str]:
    (line,) = [x for x in unit.read_text().splitlines() if x.startswith("ExecStart=")]
    return shlex.split(line.removeprefix("ExecStart="))


def status(port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json", timeout=10) as resp:
        return dict(json.loads(resp.read()))


def nginx(tmp: Path, site_root: Path, port: int) -> subprocess.Popen[bytes]:
    """Debian's nginx with the site the playbook rendered (and nothing else of the host's)."""
    conf = tmp / "nginx" / "nginx.conf"
    conf.parent.mkdir()
    conf.write_text(
        "user root;\nworker_processes 1;\npid " + str(tmp / "nginx" / "nginx.pid") + ";\n"
        "error_log " + str(tmp / "nginx" / "error.log") + ";\nevents {}\nhttp {\n"
        "  include /etc/nginx/mime.types;\n  access_log off;\n"
        f"  include {site_root}/sites-enabled/*.conf;\n}}\n"
    )
    proc = subprocess.Popen(["nginx", "-p", str(tmp / "nginx"), "-c", str(conf), "-g",
                             "daemon off;"], stderr=subprocess.DEVNULL)  # fmt: skip
    tools.wait_port(port, "nginx")
    return proc


@pytest.mark.skipif(shutil.which("ansible-playbook") is None, reason="make test installs ansible")
def test_the_playbook_deploys_every_role_and_its_units_run_the_pipeline(
    tmp_path: Path,
    world: World,  # noqa: F811
) -> None:
    syntax = run("ansible-playbook", "-i", "inventory.example.yml", "--syntax-check", "site.yml")
    assert syntax.returncode == 0, syntax.stdout + syntax.stderr
    lint = run("ansible-lint", "site.yml")
    assert lint.returncode == 0, lint.stdout + lint.stderr

    ports = {k: tools.free_port() for k in ("repo", "source", "repo_public", "source_public",
                                            "mirror")}  # fmt: skip
    folders = host_files(tmp_path, world)
    # the roots lie where the build user may reach them (pytest's own folder is root's only)
    base = Path(tempfile.mkdtemp(prefix="reposeal-deploy-"))
    base.chmod(0o755)
    try:
        _deploy_and_run(tmp_path, base, world, folders, ports)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _deploy_and_run(
    tmp_path: Path,
    base: Path,
    world: World,  # noqa: F811
    folders: dict[str, Path],
    ports: dict[str, int],
) -> None:
    hosts = inventory(tmp_path, base, folders, ports)
    dry = ("-e", "reposeal_manage_system=false")  # never this machine's users or services
    applied = run("ansible-playbook", "-i", str(hosts), *dry, "site.yml")
    assert applied.returncode == 0, applied.stdout[-4000:]
    again = run("ansible-playbook", "-i", str(hosts), *dry, "site.yml")
    assert again.returncode == 0 and "changed=0" in again.stdout, "a second run changes nothing"

    roots = {h: base / h for h in HOSTS}
    for host, names in UNITS.items():
        units = roots[host] / "etc" / "systemd" / "system"
        assert sorted(p.name for p in units.iterdir()) == sorted([*names, *HOSTCHECKS])
        verified = run("systemd-analyze", "verify", *names, *HOSTCHECKS, cwd=units)
        assert verified.returncode == 0 and verified.stderr.strip() == "", verified.stderr
        for name in names:
            if name.endswith(".service"):
                text = (units / name).read_text()
                for line in ("NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes"):
                    assert line in text, (name, line)
        config = roots[host] / "etc" / "reposeal"
        assert stat.S_IMODE(config.stat().st_mode) == 0o750
        for key in config.glob("*.key"):
            assert stat.S_IMODE(key.stat().st_mode) == 0o640, key
    enclave_unit = roots["enclave1"] / "etc/systemd/system/reposeal-enclave.service"
    assert "IPAddressDeny=any\nIPAddressAllow=127.0.0.1\nSocketBindDeny=any" in (
        enclave_unit.read_text()
    )
    assert (roots["enclave1"] / "var/lib/reposeal/enclave/config.json").exists(), "initialised"
    aide = (roots["enclave1"] / "etc/systemd/system/reposeal-hostcheck-aide.service").read_text()
    assert f"hostcheck aide --hold {roots['enclave1']}/var/lib/reposeal/enclave" in aide
    assert "--hold" not in (roots["repo1"] / "etc/systemd/system/reposeal-hostcheck-aide.service"
                            ).read_text(), "only the enclave holds"  # fmt: skip
    timer = roots["repo1"] / "etc/systemd/system/reposeal-hostcheck-debsums.timer"
    assert "OnCalendar=weekly" in timer.read_text()
    assert (roots["repo1"] / "srv/mirror").is_dir()
    for host in ("builder1", "builder2"):  # on a real root the playbook gives them the user
        for folder in ("var/lib/reposeal", "var/lib/reposeal/builds"):
            shutil.chown(roots[host] / folder, "reposeal-build", "reposeal-build")
        for folder in ("", "var", "var/lib"):  # the machine's own folders (0755 on a real one)
            (roots[host] / folder).chmod(0o755)

    pkgbuilds = roots["source1"] / "var/lib/reposeal/pkgbuilds" / "hello"
    pkgbuilds.mkdir()
    git(pkgbuilds, "init", "-q", "-b", "main")
    commit = commit_pkgbuild(pkgbuilds, "hello-1.0", 1_700_000_000)

    procs = []
    web = nginx(tmp_path, roots["repo1"] / "etc" / "nginx", ports["mirror"])
    try:
        for host in ("repo1", "source1", "enclave1", "builder1", "builder2"):
            unit = roots[host] / "etc/systemd/system" / UNITS[host][0]
            with open(tmp_path / f"{host}.log", "wb") as log:  # what journald would keep
                procs.append(subprocess.Popen(exec_start(unit), stdout=log, stderr=log))
            if host in ("repo1", "source1"):
                tools.wait_port(ports[host.removesuffix("1")], host)
        pki = tmp_path / "pki"
        for who in (0, 1):
            approved = run(sys.executable, "-m", "reposeal.cli", "approve", "hello", commit,
                           "--source", f"https://127.0.0.1:{ports['source']}",
                           "--cert", str(pki / f"maint{who}.pem"), "--key",
                           str(pki / f"maint{who}.key"), "--ca", str(pki / "ca.pem"),
                           "--signer", f"soft:{world.maintainers[who].signer.path}", "--yes",
                           cwd=tmp_path)  # fmt: skip
            assert approved.returncode == 0, approved.stderr
        deadline = time.monotonic() + 180
        while not status(ports["repo_public"]).get("published"):
            logs = {h: (tmp_path / f"{h}.log").read_text()[-1500:] for h in HOSTS}
            assert time.monotonic() < deadline, logs
            time.sleep(0.5)
        pool = roots["repo1"] / "srv/mirror/core/os/x86_64"
        scratch = pacman_trusting_the_enclave(tmp_path, world, pool)
        conf = scratch.conf.read_text().replace(
            f"file://{pool}", f"http://127.0.0.1:{ports['mirror']}/core/os/x86_64"
        )
        scratch.conf.write_text(conf)
        tools.run_text(scratch.command("-Sy"))
        tools.run_text(scratch.command("-S", "--noconfirm", "hello"))
        assert "hello 1.0-1" in tools.run_text(scratch.command("-Q", "hello")).stdout
        tools.gpg_kill(scratch.gpgdir)
        assert (roots["enclave1"] / "var/lib/reposeal/enclave.prom").exists(), "metrics kept"
        for host in ("builder1", "builder2"):  # written once its report is in (just after)
            kept = roots[host] / "var/lib/reposeal/builder.prom"
            deadline = time.monotonic() + 60
            while not (kept.exists() and 'outcome="built"' in kept.read_text()):
                assert time.monotonic() < deadline, f"{host} kept no metrics"
                time.sleep(0.2)
        # the hourly provenance pages on the repo machine, served by nginx with the mirror
        unit = roots["repo1"] / "etc/systemd/system/reposeal-provenance.service"
        deadline = time.monotonic() + 60  # the log reaches the mirror just after the databases
        while True:
            made = subprocess.run(exec_start(unit), capture_output=True, text=True, check=False)
            if made.returncode == 0 and "0 signed databases" not in made.stdout:
                break
            assert time.monotonic() < deadline, made.stderr + made.stdout
            time.sleep(0.5)
        url = f"http://127.0.0.1:{ports['mirror']}/provenance/index.html"
        with urllib.request.urlopen(url, timeout=10) as page:
            shown = page.read().decode()
        assert "hello 1.0-1" in shown and "the approved change" in shown, shown[-2000:]
        # the weekly rebuild rehearsal, from the mirror nginx serves: this enclave's own log
        unit = roots["enclave1"] / "etc/systemd/system/reposeal-rehearsal.service"
        rehearsed = subprocess.run(exec_start(unit), capture_output=True, text=True, check=False)
        assert rehearsed.returncode == 0 and "rehearsal ok" in rehearsed.stderr, rehearsed.stderr
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        web.terminate()
        web.wait(10)


def test_make_wheel_builds_what_the_roles_install(tmp_path: Path) -> None:
    """The wheel the roles install is built from the checkout, carries every module and
    the console script, and installs (without its dependencies, already here) into a
    fresh environment whose `reposeal --version` runs."""
    import venv
    import zipfile

    root = ANSIBLE.parents[1]
    made = run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
               str(tmp_path / "dist"), str(root), cwd=tmp_path)  # fmt: skip
    assert made.returncode == 0, made.stderr
    (wheel,) = (tmp_path / "dist").glob("reposeal-*-py3-none-any.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert (
        "reposeal/cli/__init__.py" in names
        and "reposeal/enclave/alpm-local/ALPM_DB_VERSION" in names
    )
    assert any(n.endswith("entry_points.txt") for n in names)
    env = tmp_path / "venv"
    venv.create(env, system_site_packages=False, with_pip=True)
    site = run(sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    (next((env / "lib").glob("python3*")) / "site-packages" / "deps.pth").write_text(
        site.stdout.strip() + "\n"  # this checkout's dependencies, instead of downloading
    )
    installed = run(str(env / "bin" / "pip"), "install", "-q", "--no-deps", str(wheel))
    assert installed.returncode == 0, installed.stderr
    version = run(str(env / "bin" / "reposeal"), "--version", cwd=tmp_path)
    assert version.returncode == 0 and "reposeal" in version.stdout, version.stderr
