"""A real IMAP server for the mailbox tests: Debian's Dovecot, run from a throwaway config on a free loopback port.

`make test` installs dovecot-imapd (like Chromium); a missing Dovecot fails the tests that need it, never skips
them. As root, Dovecot's own unprivileged users (dovecot, dovenull) run its processes and own the mail; as
anyone else, that user does. Each test gets a fresh mailbox user, so tests never see each other's mail.
"""

from __future__ import annotations

import grp
import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

DOVECOT = "/usr/sbin/dovecot"
PASSWORD = "test-password"

CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
instance_name = leadflow-test-{port}
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = 1
mail_location = maildir:{root}/home/%u/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users/%u
}}
userdb {{
  driver = static
  args = uid={mail_user} gid={mail_group} home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
}}
service pop3-login {{
}}
namespace inbox {{
  inbox = yes
  separator = /
}}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ImapServer:
    """A running Dovecot: where it listens and how to add a mailbox user."""

    root: Path
    port: int  # plain IMAP, with STARTTLS
    tls_port: int  # IMAPS
    process: subprocess.Popen

    @property
    def ca_file(self) -> Path:
        """The server's self-signed certificate, which a client must trust to talk TLS to it."""
        return self.root / "cert.pem"

    def new_user(self) -> str:
        """A fresh mailbox login (an address), known to the server at once.

        One passwd file per user: Dovecot re-reads a changed passwd file by its mtime, which two users added within
        a second would not change.
        """
        user = f"sales-{uuid.uuid4().hex[:8]}@example.test"
        (self.root / "users" / user).write_text(f"{user}:{{PLAIN}}{PASSWORD}\n", encoding="ascii")
        return user

    def client(self, user: str) -> imaplib.IMAP4:
        """A logged-in plain-IMAP session of a user (the test's own view of the mailbox)."""
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        client.login(user, PASSWORD)
        return client

    def log(self) -> str:
        """Dovecot's log, for a failing test's message."""
        path = self.root / "dovecot.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def _users() -> dict[str, str]:
    if os.geteuid() == 0:
        # Dovecot refuses to run mail or login processes as root: its package's own users do that.
        return {"internal_user": "dovecot", "internal_group": "dovecot", "login_user": "dovenull",
                "mail_user": "dovecot", "mail_group": "dovecot"}
    me, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    return {"internal_user": me, "internal_group": group, "login_user": me, "mail_user": me, "mail_group": group}


def start_dovecot() -> ImapServer:
    """Start Dovecot in the foreground on a free port; fails (never skips) when it is not installed."""
    if not Path(DOVECOT).exists() or shutil.which("doveconf") is None:
        pytest.fail("Dovecot is not installed: `apt-get install dovecot-imapd` (make test installs it)",
                    pytrace=False)
    # Not under pytest's tmp_path: Dovecot's unprivileged users must reach the mail folders.
    root = Path(tempfile.mkdtemp(prefix="leadflow-imap-"))
    root.chmod(0o755)
    for folder in ("run", "state", "home"):
        (root / folder).mkdir()
    users = _users()
    if os.geteuid() == 0:
        shutil.chown(root / "home", users["mail_user"], users["mail_group"])
    (root / "users").mkdir()
    # A self-signed certificate for 127.0.0.1, made for this server only.
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(root / "key.pem"),
                    "-out", str(root / "cert.pem")], check=True, capture_output=True)
    port, tls_port = _free_port(), _free_port()
    config = root / "dovecot.conf"
    config.write_text(CONFIG.format(root=root, port=port, tls_port=tls_port, **users), encoding="ascii")
    process = subprocess.Popen([DOVECOT, "-F", "-c", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    server = ImapServer(root=root, port=port, tls_port=tls_port, process=process)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            error = process.stderr.read().decode(errors="replace") if process.stderr else ""
            pytest.fail(f"Dovecot exited at start: {error.strip()} {server.log()}", pytrace=False)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            time.sleep(0.1)
    stop_dovecot(server)
    pytest.fail(f"Dovecot did not listen on port {port} within 20 s: {server.log()}", pytrace=False)


def stop_dovecot(server: ImapServer) -> None:
    """Stop Dovecot and remove its folder."""
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
    shutil.rmtree(server.root, ignore_errors=True)
