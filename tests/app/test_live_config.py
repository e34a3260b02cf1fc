"""A reload's new configuration reaches every component that reads settings, with no per-setting code.

The service keeps one ``LiveConfig``; the reconciler, the supervisors it
creates (before or after the reload), the venv builder, the rule manager and
the debouncers read settings from it where they use them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from loader.app.service import LoaderService
from loader.config import LoaderConfig, SupervisorSettings, VenvSettings, WatchSettings
from tests.support.fakes import spec_of


def _config(root: Path, settle_ms: int, keepalive_ms: int, pip_timeout_s: float) -> LoaderConfig:
    return LoaderConfig(
        plugins_dir=root / "plugins",
        etc_dir=root / "etc",
        data_dir=root / "data",
        ipc_dir=root / "ipc",
        rest="off",
        watch=WatchSettings(settle_ms=settle_ms),
        supervisor=SupervisorSettings(keepalive_ms=keepalive_ms),
        venv=VenvSettings(timeout_s=pip_timeout_s),
    )


def test_a_reload_reaches_components_created_before_and_after_it(tmp_path: Path) -> None:
    old = _config(tmp_path, settle_ms=300, keepalive_ms=5000, pip_timeout_s=600.0)
    service = LoaderService(old)
    before = service.reconciler._supervisor(spec_of("v1"), service.reconciler.lifecycle("p"))
    assert before.settings.keepalive_ms == 5000 and service.folders[0].debouncer.settle_s == 0.3

    new = dataclasses.replace(
        _config(tmp_path, settle_ms=50, keepalive_ms=1000, pip_timeout_s=30.0), log_level=old.log_level
    )
    service._apply(new)
    after = service.reconciler._supervisor(spec_of("v2"), service.reconciler.lifecycle("p"))

    for supervisor in (before, after):
        assert supervisor.config is new and supervisor.settings.keepalive_ms == 1000
    assert service.config is new and service.reconciler.config is new and service.rules.config is new
    assert service.reconciler.venvs.settings.timeout_s == 30.0
    assert [f.debouncer.settle_s for f in service.folders] == [0.05, 0.05, 0.05]
