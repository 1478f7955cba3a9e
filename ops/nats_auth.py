"""Who may connect to the hub's NATS, and what each may do (NATS 账号与权限).

Why: an anonymous local client once published an operator command on the hub's subjects and read
the audit anchor bucket ``HUB_AUDIT`` (issue 15). Every server the hub starts or generates a
configuration for therefore requires a user:

- **the hub's own user** ``hub`` (intake, API, CLI, deadline watcher, audit anchor): everything,
  and it alone may publish operator commands (``city.command.>``), use the JetStream API and read
  or write ``HUB_AUDIT``. ``hub up`` generates its password at the first start into the data dir
  (``nats-hub-credentials.json``, mode 0600) and reuses it on every later start. It receives its
  replies on an inbox of its own (``_INBOX_HUB``), which no department may subscribe to:
  a department allowed ``_INBOX.>`` would otherwise read the intake's deliveries and the hub's KV
  reads that come back on the hub's inboxes.
- **one user per department** (部门账号): may publish only on ``city.<department>.>`` and subscribe
  only to ``_INBOX.>`` (where its JetStream acks come back). Passwords come from
  ``HUB_CONFIG_DIR/nats_users.toml`` (department = password), else from the shipped development
  defaults ``ops/defaults/nats_users.toml``.

One list of users: the single-node ``ops/nats/accounts.conf`` and the cluster configurations
include ``ops/nats/cluster-accounts.conf``, which is *generated* from the shipped defaults
(``python -m ops.nats_auth > ops/nats/cluster-accounts.conf``; a test fails when it drifts);
``hub up`` and ``hub cluster up`` generate their server configuration from the same list.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import stat
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from hub.messages import COMMAND_DEPARTMENT, SUBJECT_PREFIX

log = logging.getLogger("hub")

HUB_USER = "hub"
"""The hub's own NATS user (every server the hub configures)."""
HUB_INBOX_PREFIX = "_INBOX_HUB"
"""The hub's reply subjects: not under ``_INBOX.>``, which departments may subscribe to."""
DEPARTMENT_INBOXES = "_INBOX.>"
USERS_FILE = "nats_users.toml"
"""The deployment's department passwords, in ``HUB_CONFIG_DIR``."""
SHIPPED_USERS = Path(__file__).resolve().parent / "defaults" / USERS_FILE
HUB_CREDENTIALS_FILE = "nats-hub-credentials.json"
"""The hub user's generated credentials, in the data dir (mode 0600)."""
CLUSTER_HUB_PASSWORD = "hub-dev"
"""The hub user's password in ``ops/nats/cluster-accounts.conf`` and ``hub cluster up`` (a local
cluster for trying and testing): a development default, named by :func:`nats_development_defaults`."""
RESERVED = frozenset({HUB_USER, COMMAND_DEPARTMENT})
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class NatsUsersError(ValueError):
    """A users file or the hub's credentials file is malformed; the message names the file and the fix."""


class NatsAuthError(RuntimeError):
    """The server refused the connection's credentials (or their absence): said at once, with what
    to do, instead of retrying forever."""

    def __init__(self, url: str, cause: Exception) -> None:
        super().__init__(
            f"NATS at {redact(url)} refused the connection ({cause}): connect as a user. The hub's "
            f"commands read its credentials from its data dir (give --data-dir, or HUB_DATA_DIR, of "
            f"the running hub); a department puts its user:password in the URL (docs/nats.md)"
        )


# --------------------------------------------------------------------------- department users
def read_users(path: Path, departments: Iterable[str] | None = None) -> dict[str, str]:
    """``[users]`` of a ``nats_users.toml``: department → password, checked.

    ``departments`` (the known department codes) catches a misspelt name, which would otherwise
    create a user for subjects no department uses."""
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise NatsUsersError(f"{path}: {exc}") from None
    except OSError as exc:
        raise NatsUsersError(f"{path}: cannot read it ({exc.strerror})") from None
    table = raw.get("users")
    if not isinstance(table, dict):
        raise NatsUsersError(f'{path}: expected a [users] table of department = "password" lines')
    known = set(departments) if departments is not None else None
    users: dict[str, str] = {}
    for name, password in table.items():
        where = f"{path}: [users] {name}"
        if name in RESERVED:
            raise NatsUsersError(
                f"{where}: {name!r} is not a department user (the hub's own user is generated into "
                f"the data dir, and only the hub publishes operator commands); remove the line"
            )
        if not _NAME.fullmatch(name):
            raise NatsUsersError(f"{where}: a department code is lower-case letters, digits and _")
        if known is not None and name not in known:
            raise NatsUsersError(
                f"{where}: no such department in departments.toml (known: {', '.join(sorted(known))})"
            )
        if not isinstance(password, str) or not password:
            raise NatsUsersError(f'{where}: expected a non-empty password in quotes, e.g. {name} = "…"')
        if any(c.isspace() or not c.isprintable() or c in '"\\' for c in password):
            raise NatsUsersError(f'{where}: the password may not hold spaces, control characters, " or \\')
        users[name] = password
    return users


@cache
def development_passwords() -> dict[str, str]:
    """The shipped development passwords (``ops/defaults/nats_users.toml``)."""
    return read_users(SHIPPED_USERS)


def users_file(config_dir: Path | None) -> Path:
    """The deployment's ``nats_users.toml`` when it has one, else the shipped defaults."""
    if config_dir is not None and (config_dir / USERS_FILE).exists():
        return config_dir / USERS_FILE
    return SHIPPED_USERS


def department_users(config_dir: Path | None) -> dict[str, str]:
    """Department → password: ``HUB_CONFIG_DIR/nats_users.toml`` replaces the shipped defaults as a
    whole (a department it leaves out has no NATS user)."""
    path = users_file(config_dir)
    if path == SHIPPED_USERS:
        return dict(development_passwords())
    from hub.adapters.config.loading import load_departments

    return read_users(path, departments=load_departments(config_dir))


# --------------------------------------------------------------------------- the hub's own user
def hub_credentials_path(data_dir: Path) -> Path:
    return data_dir / HUB_CREDENTIALS_FILE


def hub_password(data_dir: Path, *, create: bool = True) -> str | None:
    """The hub user's password from ``DATA_DIR/nats-hub-credentials.json``; generated (32 random
    bytes, URL-safe) into a new file of mode 0600 at the first start when ``create``.

    Why kept in the data dir: the server's configuration is written from it at every start, and
    the CLI on the same machine (``hub publish``, ``hub dlq``…) reads it to talk to the embedded
    server as the hub; it never goes into ``nats.url``, which external publishers read."""
    path = hub_credentials_path(data_dir)
    if not path.exists():
        if not create:
            return None
        data_dir.mkdir(parents=True, exist_ok=True)
        password = secrets.token_urlsafe(32)
        text = json.dumps({"user": HUB_USER, "password": password}) + "\n"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it meanwhile: use that one
            return hub_password(data_dir, create=False)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        log.info("generated the hub's NATS credentials in %s (mode 0600)", path)
        return password
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        with contextlib.suppress(OSError):
            path.chmod(0o600)
            log.warning("%s was readable by others (mode %o); made it 0600", path, mode)
    try:
        data = json.loads(path.read_text())
        password = data["password"]
        if data.get("user", HUB_USER) != HUB_USER or not isinstance(password, str) or not password:
            raise ValueError("not the hub user's credentials")
    except (ValueError, KeyError, TypeError) as exc:
        raise NatsUsersError(
            f"{path}: not the hub's NATS credentials ({exc}); delete the file and start the hub "
            f"again to generate new ones (department users are not affected)"
        ) from None
    return password


# --------------------------------------------------------------------------- server configuration
def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class NatsAuth:
    """The users of one server (or cluster): the hub's own and one per department."""

    hub_password: str
    departments: Mapping[str, str] = field(default_factory=development_passwords)

    @classmethod
    def load(cls, data_dir: Path, config_dir: Path | None) -> NatsAuth:
        """``hub up``'s users: the hub's generated password, the deployment's department passwords."""
        password = hub_password(data_dir)
        assert password is not None
        return cls(password, department_users(config_dir))

    @classmethod
    def ephemeral(cls) -> NatsAuth:
        """A random hub password and the development department users (tests, benchmarks)."""
        return cls(secrets.token_urlsafe(32))

    def user_lines(self) -> list[str]:
        """One nats-server ``users`` entry per user; departments confined to their own subjects."""
        lines = [f"{{ user: {HUB_USER}, password: {_quoted(self.hub_password)} }}"]
        for name, password in self.departments.items():
            lines.append(
                f"{{ user: {name}, password: {_quoted(password)}, permissions: {{ "
                f'publish: {{ allow: ["{SUBJECT_PREFIX}.{name}.>"] }}, '
                f'subscribe: {{ allow: ["{DEPARTMENT_INBOXES}"] }} }} }}'
            )
        return lines

    def authorization_config(self) -> str:
        """For the embedded server: the users in its global account, where the streams of every
        earlier (unauthenticated) start already are, so an upgraded hub keeps its stream."""
        users = "".join(f"    {line}\n" for line in self.user_lines())
        return f"authorization {{\n  users = [\n{users}  ]\n}}\n"

    def accounts_config(self) -> str:
        """For external servers and clusters: the users in an account ``CITY`` with JetStream."""
        users = "".join(f"      {line}\n" for line in self.user_lines())
        return f"accounts {{\n  CITY {{\n    jetstream: enabled\n    users = [\n{users}    ]\n  }}\n}}\n"

    def url(self, address: str, user: str = HUB_USER) -> str:
        """``address`` (``nats://host:port``, comma-separated for several) with ``user``'s
        credentials: connect with it, never print or store it where others read."""
        password = self.hub_password if user == HUB_USER else self.departments[user]
        return with_credentials(address, user, password)


SHIPPED_HEADER = """\
# Department accounts (部门账号): the one list of users, included by the single-node ops/nats/accounts.conf,
# by ops/nats/cluster-n{1,2,3}.conf; `hub up` and `hub cluster up` generate the same from
# HUB_CONFIG_DIR/nats_users.toml. Every department may publish only on city.<department>.> and
# subscribe only to _INBOX.> (JetStream acks); the hub's own user (intake, API, CLI) may do everything,
# and only it may publish operator commands (city.command.>) or use JetStream and HUB_AUDIT.
# Passwords are DEVELOPMENT DEFAULTS: replace them (or use nkeys / a resolver) in production.
#
# GENERATED from ops/defaults/nats_users.toml by `python -m ops.nats_auth`: do not edit by hand.

"""


def shipped_accounts_conf() -> str:
    """The text of ``ops/nats/cluster-accounts.conf`` (development passwords)."""
    return SHIPPED_HEADER + NatsAuth(CLUSTER_HUB_PASSWORD, development_passwords()).accounts_config()


# --------------------------------------------------------------------------- URLs
def with_credentials(address: str, user: str, password: str) -> str:
    """Every server of ``address`` with ``user:password@`` (URL-quoted)."""
    auth = f"{quote(user, safe='')}:{quote(password, safe='')}@"
    servers = []
    for server in (s.strip() for s in address.split(",") if s.strip()):
        scheme, sep, rest = server.partition("://")
        servers.append(f"{scheme}://{auth}{rest}" if sep else f"nats://{auth}{server}")
    return ",".join(servers)


def redact(url: str) -> str:
    """``url`` with each password replaced by ``***`` (for banners and logs)."""
    return re.sub(r"(://[^:/@,]*):[^@,]*@", r"\1:***@", url)


def with_hub_credentials(url: str, data_dir: Path, embedded_ports: Iterable[int]) -> str:
    """``url`` with the hub user's credentials when it points, without credentials of its own, at
    the embedded server of ``data_dir`` (a loopback address on one of ``embedded_ports``).

    Why only then: the CLI on the hub's machine reads the hub's secret from the data dir to talk to
    that hub's server; it must never send it to another server named on the command line."""
    servers = [s.strip() for s in url.split(",") if s.strip()]
    parts = [urlsplit(s if "://" in s else f"nats://{s}") for s in servers]
    if not parts or any(p.username for p in parts):
        return url
    ports = set(embedded_ports)
    try:
        if not all(p.hostname in _LOOPBACK and p.port in ports for p in parts):
            return url
    except ValueError:  # a malformed port: nats-py reports it
        return url
    password = hub_password(data_dir, create=False)
    return url if password is None else with_credentials(url, HUB_USER, password)


def url_user(url: str) -> tuple[str | None, str | None]:
    """(user, password) of the first server URL that carries them."""
    for server in (s.strip() for s in url.split(",") if s.strip()):
        parts = urlsplit(server if "://" in server else f"nats://{server}")
        if parts.username:
            password = unquote(parts.password) if parts.password is not None else None
            return unquote(parts.username), password
    return None, None


# --------------------------------------------------------------------------- development defaults
def nats_development_defaults(
    config_dir: Path | None, nats_url: str | None = None, *, other_credentials: bool = False
) -> list[str]:
    """Each development NATS credential still active, in words an operator can act on.

    ``nats_url`` is ``HUB_NATS_URL`` (``None``: the embedded server, whose department users come
    from ``HUB_CONFIG_DIR/nats_users.toml``); ``other_credentials`` says ``HUB_NATS_CREDS`` or
    ``HUB_NATS_TOKEN`` is set. Production mode refuses to start while this list is not empty; in
    development the banner names them."""
    found: list[str] = []
    dev = development_passwords()
    if nats_url is None:
        where = "HUB_CONFIG_DIR/nats_users.toml"
        for name, secret in department_users(config_dir).items():
            if dev.get(name) == secret or secret == f"{name}-dev":
                found.append(f"NATS user {name} has the development password (set it in {where})")
        return found
    user, password = url_user(nats_url)
    if user is None and not other_credentials:
        found.append(
            "HUB_NATS_URL carries no credentials: the NATS server accepts anonymous clients "
            "(require users on it and put the hub's user:password in HUB_NATS_URL)"
        )
    elif user is not None and password is not None:
        known = {HUB_USER: CLUSTER_HUB_PASSWORD, **dev}
        if known.get(user) == password or password == f"{user}-dev":
            found.append(
                f"HUB_NATS_URL uses the development password of NATS user {user} "
                f"(change it on the NATS server and in HUB_NATS_URL)"
            )
    return found


if __name__ == "__main__":  # python -m ops.nats_auth > ops/nats/cluster-accounts.conf
    print(shipped_accounts_conf(), end="")
