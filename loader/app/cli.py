"""The ``portable-loader`` command.

``serve`` runs the service; ``reload`` makes it reread its configuration
and reports the outcome; ``validate`` runs exactly the checks the loader
applies to a dropped folder and prints them for a person; ``package`` zips a
plugin folder the way the REST install expects it.  ``plugins``, ``streams``,
``rules``, ``symbols`` and ``status`` are a client of the REST API
(loader/app/client.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from loader.config import ConfigError, load_config
from loader.log import LOG_FORMATS, configure_logging
from loader.plugins.manifest import SYMBOL_KINDS, ManifestError, load_plugin

#: ``serve``'s exit status when another loader holds the data or IPC directory (or the lock cannot be taken).
EXIT_ALREADY_RUNNING = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="portable-loader", description="Run and manage eKuiper-compatible portable plugins."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the loader service")
    serve.add_argument("--config", type=Path, help="YAML configuration file (etc/loader.yaml)")
    serve.add_argument("--plugins-dir", help="folder of plugin folders")
    serve.add_argument("--etc-dir", help="folder of per-symbol configuration")
    serve.add_argument("--data-dir", help="folder for streams, rules and other state")
    serve.add_argument("--ipc-dir", help="folder of the nng ipc sockets (default /tmp, as eKuiper's SDKs expect)")
    serve.add_argument("--rest", help="HOST:PORT of the REST API, or off")
    serve.add_argument("--log-format", choices=LOG_FORMATS)
    serve.add_argument("--log-level", choices=("debug", "info", "warning", "error"))

    reload = commands.add_parser(
        "reload",
        help="check the configuration, then make the running loader reread it "
        "and report whether it did (systemd's ExecReload=)",
    )
    reload.add_argument("--config", type=Path, help="the YAML configuration file the running loader was started with")
    reload.add_argument(
        "--pid", type=int, help="the loader's pid ($MAINPID under systemd; default: from its state file)"
    )
    reload.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the loader's answer")

    validate = commands.add_parser(
        "validate", help="check a plugin folder as the loader would (manifest, executable, Python code compiles)"
    )
    validate.add_argument("folder", type=Path)
    validate.add_argument("--strict", action="store_true", help="an unknown manifest key is an error, not a warning")

    package = commands.add_parser("package", help="zip a plugin folder for installation")
    package.add_argument("folder", type=Path)
    package.add_argument("-o", "--output", type=Path, help="zip file to write (default <name>.zip)")

    from loader.app.client import add_client_commands

    add_client_commands(commands)  # plugins, streams, rules, symbols, status: a client of the REST API
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"serve": _serve, "reload": _reload, "validate": _validate, "package": _package}
    if args.command not in handlers:
        from loader.app.client import run_client

        return run_client(args)
    return handlers[args.command](args)


def _serve(args: argparse.Namespace) -> int:
    overrides = {
        "plugins_dir": args.plugins_dir,
        "etc_dir": args.etc_dir,
        "data_dir": args.data_dir,
        "ipc_dir": args.ipc_dir,
        "rest": args.rest,
        "log_format": args.log_format,
        "log_level": args.log_level,
    }
    try:
        config = load_config(args.config, overrides)
    except ConfigError as exc:
        print(f"portable-loader: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_format, config.log_level)
    from loader.app.instance_lock import AlreadyRunning, lock_directories

    try:  # before anything touches the state: removing "stale" sockets would break the other loader
        lock = lock_directories([config.data_dir, config.ipc_dir])
    except (AlreadyRunning, OSError) as exc:
        from loader.log import get_logger

        get_logger().error(
            "loader.already_running" if isinstance(exc, AlreadyRunning) else "loader.lock_failed",
            error=str(exc),
            holder_pid=getattr(exc, "pid", None),
        )
        return EXIT_ALREADY_RUNNING
    from loader.app.service import LoaderService
    from loader.diagnostics import install_exception_hooks

    install_exception_hooks()

    try:
        asyncio.run(LoaderService(config, reload_config=lambda: load_config(args.config, overrides)).run())
    finally:
        lock.release()
    return 0


def _reload(args: argparse.Namespace) -> int:
    from loader.app.reload import run_reload

    return run_reload(args.config, args.pid, args.timeout, sys.stdout, sys.stderr)


def _validate(args: argparse.Namespace) -> int:
    folder = args.folder.absolute()
    try:
        spec = load_plugin(folder, strict=getattr(args, "strict", False))
    except ManifestError as exc:
        print(f"INVALID {folder.name}")
        print(f"  file:    {exc.file}")
        if exc.pointer:
            print(f"  field:   {exc.pointer}")
        print(f"  problem: {exc.message}")
        print(f"  fix:     {exc.fix}")
        return 1
    print(f"OK {spec.name} {spec.version} ({spec.language}, {spec.executable.relative_to(folder.resolve())})")
    for kind in SYMBOL_KINDS:
        if spec.symbols(kind):
            print(f"  {kind}: {', '.join(spec.symbols(kind))}")
    for warning in spec.warnings:
        print(f"  warning: {warning}")
    print(f"  digest:  {spec.digest[:16]}")
    return 0


def _package(args: argparse.Namespace) -> int:
    """Validate, then zip the folder's content with paths relative to it, plus the sdk it imports
    (loader/install/packaging.py: so the zip also runs under eKuiper, whose Python has no ``sdk``)."""
    from loader.install.packaging import write_zip

    folder = args.folder.absolute()
    if _validate(argparse.Namespace(folder=folder)) != 0:
        return 1
    output = args.output or Path(f"{folder.name}.zip")
    vendored = write_zip(load_plugin(folder), output)
    if vendored:
        print(f"  sdk:     {vendored} files of the sdk package included next to the executable")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
