"""pacman.conf as pacman reads it: RootDir moves the default DBPath, Include works in any
section and with globs, and a hook gets the --config/--root/--dbpath of its pacman."""

from __future__ import annotations

from pathlib import Path

from reposeal.client.pacmanconf import PacmanArgs, conf_for, pacman_args, read_pacman_conf


def test_rootdir_include_and_globs(tmp_path: Path) -> None:
    (tmp_path / "mirrors.d").mkdir()
    (tmp_path / "mirrors.d" / "10-core.conf").write_text(
        "[core]\nServer = file:///m/$repo/os/$arch\n"
    )
    (tmp_path / "options.conf").write_text("Architecture = x86_64\n")
    conf = tmp_path / "pacman.conf"
    conf.write_text(
        f"[options]\nRootDir = {tmp_path}/root\nInclude = {tmp_path}/options.conf\n"
        f"Include = {tmp_path}/mirrors.d/*.conf\n"
    )
    read = read_pacman_conf(conf)
    assert read.dbpath == tmp_path / "root/var/lib/pacman" and read.root == tmp_path / "root"
    assert read.arch == "x86_64"
    assert [(r.name, r.server) for r in read.repos] == [("core", "file:///m/core/os/x86_64")]
    explicit = tmp_path / "explicit.conf"
    explicit.write_text(f"[options]\nRootDir = /r\nDBPath = {tmp_path}/db\n")
    assert read_pacman_conf(explicit).dbpath == tmp_path / "db"


def test_a_hook_uses_the_configuration_of_the_pacman_that_runs_it(tmp_path: Path) -> None:
    conf = tmp_path / "pacman.conf"
    conf.write_text("[options]\nArchitecture = x86_64\n")
    args = pacman_args(["pacman", "--config", str(conf), "-r", "/mnt", "-Syu"])
    assert args == PacmanArgs(conf, Path("/mnt"), None)
    assert conf_for(args).dbpath == Path("/mnt/var/lib/pacman")
    both = pacman_args(["/usr/bin/pacman", f"--config={conf}", "--dbpath", "/db", "-S", "x"])
    assert conf_for(both).dbpath == Path("/db")
    assert pacman_args(["pacman", "-S", "x"]).config == Path("/etc/pacman.conf")
