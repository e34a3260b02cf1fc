"""Loader configuration: defaults, ``etc/loader.yaml``, then command-line flags.

The file is validated against ``schema/loader-config.schema.json`` so a typo
in a key is an error naming the key, not a silently ignored setting.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from loader.jsonschemas import load_schema

#: Environment variable that sets (and overrides) ``rest_token``.
TOKEN_ENV = "PORTABLE_LOADER_TOKEN"


class ConfigError(Exception):
    """The configuration file cannot be used; the message names file, key and fix."""


@dataclass(frozen=True)
class FolderLimits:
    """Bounds on reading one plugin folder."""

    max_files: int = 10_000
    max_mb: float = 256.0
    #: Longest the reconciler waits for one folder to be read.
    timeout_s: float = 30.0

    @property
    def max_bytes(self) -> int:
        return int(self.max_mb * 1024 * 1024)


@dataclass(frozen=True)
class VenvSettings:
    index_url: str | None = None
    find_links: tuple[str, ...] = field(default=())
    offline: bool = False
    system_site_packages: bool = False
    timeout_s: float = 600.0


@dataclass(frozen=True)
class WatchSettings:
    settle_ms: int = 300
    rescan_s: float = 5.0
    incomplete_grace_s: float = 10.0


@dataclass(frozen=True)
class SupervisorSettings:
    handshake_timeout_s: float = 10.0
    command_timeout_s: float = 5.0
    stop_grace_s: float = 3.0
    keepalive_ms: int = 5000
    hung_after_s: float = 15.0
    restart_backoff_initial_s: float = 0.1
    restart_backoff_max_s: float = 30.0
    stable_after_s: float = 10.0
    crashloop_restarts: int = 5
    crashloop_window_s: float = 60.0


@dataclass(frozen=True)
class UpdateSettings:
    """Probation and rollback of new plugin versions (loader/plugins/snapshots.py, loader/plugins/supervisor.py)."""

    #: A new version must handshake and stay up this long to count as good.
    probation_s: float = 10.0
    #: Good snapshots kept per plugin: the rollback targets.
    snapshots_kept: int = 2


@dataclass(frozen=True)
class BatchSettings:
    """The batching extension offered to sdk plugins (docs/protocol.md, Extensions)."""

    enabled: bool = True
    #: Most records (or function rows) in one message.
    max_records: int = 256
    #: Longest a record waits in a plugin's source batch before it is sent.
    linger_ms: float = 2.0


@dataclass(frozen=True)
class SinkSettings:
    """How portable sinks are fed (docs/protocol.md, "Ack window")."""

    #: Messages a ``requireAck`` sink may have unacknowledged, where its plugin declared it allows
    #: that many (our sdk does; eKuiper SDK plugins declare nothing and get one).  1: one in flight.
    ack_window: int = 32


@dataclass(frozen=True)
class LimitSettings:
    """Bounds against exhaustion by clients and plugins (docs/operations.md, "Limits")."""

    #: Open REST connections at most; one more evicts the oldest that has not sent a whole request.
    rest_max_connections: int = 64
    #: A request's headers must be complete this long after the connection opened (or its previous answer).
    rest_header_timeout_s: float = 10.0
    #: A request body that sends nothing for this long is cut off.
    rest_body_timeout_s: float = 30.0
    #: Overall deadline of one plugin download (REST install or update from a URL).
    download_timeout_s: float = 120.0
    #: Downloads (and unpacking) running at once, in their own threads; more are refused with 503.
    download_workers: int = 2
    #: Longest one portable function call (Exec, or one ExecBatch) may take before the plugin is judged hung.
    function_timeout_s: float = 10.0
    #: A requireAck sink without any ack for this long marks its rule degraded and its plugin unhealthy.
    sink_stall_s: float = 30.0
    #: Bytes (as received from the source) a rule may hold in its buffer, besides ``bufferLength`` records.
    rule_buffer_mb: float = 64.0


@dataclass(frozen=True)
class RuleSettings:
    """How rule health is judged (loader/rules/health.py)."""

    #: How long an error of a source or sink (or a function timeout, a sink stall)
    #: keeps its rule degraded after it happened.
    degraded_hold_s: float = 10.0


@dataclass(frozen=True)
class LoaderConfig:
    plugins_dir: Path = Path("plugins/portable")
    etc_dir: Path = Path("etc")
    data_dir: Path = Path("data")
    ipc_dir: Path = Path("/tmp")
    rest: str = "127.0.0.1:9081"
    #: Bearer token the REST API requires on every route but /ping (None: no token).
    rest_token: str | None = field(default=None, repr=False)
    rest_max_upload_mb: float = 50.0
    log_format: str = "auto"
    log_level: str = "info"
    watch: WatchSettings = field(default_factory=WatchSettings)
    supervisor: SupervisorSettings = field(default_factory=SupervisorSettings)
    venv: VenvSettings = field(default_factory=VenvSettings)
    batch: BatchSettings = field(default_factory=BatchSettings)
    sinks: SinkSettings = field(default_factory=SinkSettings)
    updates: UpdateSettings = field(default_factory=UpdateSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    folders: FolderLimits = field(default_factory=FolderLimits)
    rules: RuleSettings = field(default_factory=RuleSettings)

    @property
    def rest_address(self) -> tuple[str, int] | None:
        """``(host, port)`` of the REST API, None when it is off (validated by load_config)."""
        return parse_rest_address(self.rest, "rest")

    def resolved(self) -> LoaderConfig:
        """Absolute paths, so later chdir or symlinks do not change their meaning."""
        return replace(
            self,
            plugins_dir=self.plugins_dir.absolute(),
            etc_dir=self.etc_dir.absolute(),
            data_dir=self.data_dir.absolute(),
            ipc_dir=self.ipc_dir.absolute(),
        )


class LiveConfig:
    """The configuration in force, shared by every component that reads settings.

    Components keep this holder and read ``current`` where a setting is used,
    never a copy taken at construction: a reload (SIGHUP) replaces
    ``current`` once and every reader sees the new settings, so no code has
    to remember which object holds which setting.
    """

    def __init__(self, config: LoaderConfig) -> None:
        self.current = config


def live(config: LoaderConfig | LiveConfig) -> LiveConfig:
    """The holder to keep: ``config`` itself, or a new holder of a fixed configuration (tests)."""
    return config if isinstance(config, LiveConfig) else LiveConfig(config)


def load_config(path: Path | None, overrides: dict[str, Any] | None = None) -> LoaderConfig:
    """Defaults, then the file at ``path`` (if any), then non-None ``overrides``."""
    raw: dict[str, Any] = _read_file(path) if path is not None else {}
    config = LoaderConfig(
        plugins_dir=Path(raw.get("plugins_dir", LoaderConfig.plugins_dir)),
        etc_dir=Path(raw.get("etc_dir", LoaderConfig.etc_dir)),
        data_dir=Path(raw.get("data_dir", LoaderConfig.data_dir)),
        ipc_dir=Path(raw.get("ipc_dir", LoaderConfig.ipc_dir)),
        rest=raw.get("rest", LoaderConfig.rest),
        rest_token=os.environ.get(TOKEN_ENV) or raw.get("rest_token") or None,
        rest_max_upload_mb=raw.get("rest_max_upload_mb", LoaderConfig.rest_max_upload_mb),
        log_format=raw.get("log", {}).get("format", LoaderConfig.log_format),
        log_level=raw.get("log", {}).get("level", LoaderConfig.log_level),
        watch=WatchSettings(**raw.get("watch", {})),
        supervisor=SupervisorSettings(**raw.get("supervisor", {})),
        venv=_venv_settings(raw.get("venv", {})),
        batch=BatchSettings(**raw.get("batch", {})),
        sinks=SinkSettings(**raw.get("sinks", {})),
        updates=UpdateSettings(**raw.get("updates", {})),
        limits=LimitSettings(**raw.get("limits", {})),
        folders=FolderLimits(**raw.get("folders", {})),
        rules=RuleSettings(**raw.get("rules", {})),
    )
    for key, value in (overrides or {}).items():
        if value is not None:
            config = replace(config, **{key: Path(value) if key.endswith("_dir") else value})  # type: ignore[arg-type]
    rest_from_flag = (overrides or {}).get("rest") is not None
    parse_rest_address(config.rest, "--rest" if rest_from_flag else f"{path}: rest" if path else "rest")
    return config.resolved()


def parse_rest_address(value: str, where: str) -> tuple[str, int] | None:
    """``HOST:PORT`` (IPv6 hosts in brackets) as ``(host, port)``, None for ``off``; ConfigError otherwise.

    Checked when the configuration is read, so a bad address stops the loader
    before anything starts rather than after every plugin did.
    """
    if value == "off":
        return None
    host, colon, port = str(value).rpartition(":")
    fix = "give HOST:PORT with a port from 1 to 65535, e.g. 127.0.0.1:9081, or off"
    if not colon:
        raise ConfigError(f"{where}: {value!r} has no port; {fix}")
    if not host:
        raise ConfigError(f"{where}: {value!r} has no host; {fix}")
    if not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"{where}: port {port!r} of {value!r} is not a number from 1 to 65535; {fix}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or ":" in host and not str(value).startswith("["):
        raise ConfigError(f"{where}: host of {value!r} is not valid; write IPv6 hosts in brackets, e.g. [::1]:9081")
    return host, int(port)


def _venv_settings(raw: dict[str, Any]) -> VenvSettings:
    return VenvSettings(**{**raw, "find_links": tuple(raw.get("find_links", ()))})


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found; pass an existing file to --config") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deep to read; flatten it") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the configuration must be a mapping of keys to values")
    validator = jsonschema.Draft202012Validator(load_schema("loader-config.schema.json"))
    for error in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ConfigError(f"{path}: {where}: {error.message}; see schema/loader-config.schema.json")
    return data
