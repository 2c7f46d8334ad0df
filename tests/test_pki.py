"""`bridge pki` for a real inventory: several addresses, hosts named by DNS and IP, the CA
key kept apart with a warning, renewal keeping name, role and addresses; checked with real
TLS handshakes on 127.0.0.1."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from reposeal.tls import Issued, client_context, described, server_context


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reposeal.cli", *args], capture_output=True,
                          text=True, check=False)  # fmt: skip


def handshake(server: Issued, client: Issued, ca: Path, hostname: str) -> bool:
    """Does a client trusting ``ca`` accept ``server`` as ``hostname`` (mutual TLS)?"""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    sctx = server_context(server, ca)

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with sctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    ctx = client_context(client, ca)
    try:
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            ctx.wrap_socket(raw, server_hostname=hostname) as tls,
        ):
            tls.sendall(b"x")
        return True
    except ssl.SSLCertVerificationError:
        return False
    finally:
        t.join(5)
        listener.close()


def test_an_inventory_gets_its_certificates(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    hosts = ["--host", "repo1=repo,127.0.0.1,repo1.example.org", "--host", "b2=builder"]
    made = cli("bridge", "pki", str(pki), "--ip", "127.0.0.1", "--ip", "10.0.0.7", *hosts)
    assert made.returncode == 0, made.stderr
    assert "OFFLINE" in made.stderr and "ca.key" in made.stderr
    assert described(pki / "bridge.pem")[2] == ["127.0.0.1", "10.0.0.7"], "every --ip"
    name, role, addresses = described(pki / "repo1.pem")
    assert (name, role) == ("repo1", "repo") and set(addresses) == {
        "127.0.0.1",
        "repo1.example.org",
    }
    assert described(pki / "b2.pem") == ("b2", "builder", [])
    ca = pki / "ca.pem"
    repo1, builder = (
        Issued(pki / "repo1.pem", pki / "repo1.key"),
        Issued(pki / "b2.pem", pki / "b2.key"),
    )
    assert handshake(repo1, builder, ca, "repo1.example.org")
    assert not handshake(repo1, builder, ca, "other.example.org")

    before = (pki / "repo1.key").read_bytes()
    renewed = cli("bridge", "renew", str(pki), "repo1", "--days", "30")
    assert renewed.returncode == 0, renewed.stderr
    assert (pki / "repo1.key").read_bytes() != before, "a new key"
    assert described(pki / "repo1.pem")[1:] == ("repo", addresses)
    assert handshake(repo1, builder, ca, "repo1.example.org")


@pytest.mark.parametrize("bad", ["repo1", "repo1=nobody", "repo1=repo,not_a_name!", "=repo"])
def test_a_bad_host_is_a_usage_error_and_nothing_is_written(tmp_path: Path, bad: str) -> None:
    out = cli("bridge", "pki", str(tmp_path / "pki"), "--host", bad)
    assert out.returncode == 2 and "--host" in out.stderr, out.stderr
    assert not (tmp_path / "pki").exists()
