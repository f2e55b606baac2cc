"""Settings › Engine › "Use the engine on a cluster": whether the window's engine is a RemoteEngine (an
Engine actor on a Ray cluster) instead of the local engine thread's Engine. Kept in <data>/cluster.json;
read when the engine starts, so a change applies from the next start. No widgets."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from engine.farm import RAY_MISSING_HINT, ray_available
from engine.outputs import write_text_atomic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusterSetting:
    """``enabled`` off: the local engine (the default). ``address`` "": a local Ray cluster."""

    enabled: bool = False
    address: str = ""

    @property
    def describe(self) -> str:
        if not self.enabled:
            return "this machine"
        return f"the Ray cluster at {self.address}" if self.address else "a local Ray cluster"


def cluster_file(data_dir: Path) -> Path:
    return Path(data_dir) / "cluster.json"


def load_cluster_setting(data_dir: Path) -> ClusterSetting:
    """The saved setting; off when missing, unreadable or when Ray is not installed."""
    try:
        data = json.loads(cluster_file(data_dir).read_text(encoding="utf-8"))
        setting = ClusterSetting(bool(data.get("enabled")), str(data.get("address") or ""))
    except (OSError, ValueError, AttributeError):
        return ClusterSetting()
    if setting.enabled and not ray_available():
        log.warning("the engine is set to run on a cluster, but Ray is not installed: using this machine")
        return ClusterSetting()
    return setting


def save_cluster_setting(data_dir: Path, setting: ClusterSetting) -> None:
    write_text_atomic(cluster_file(data_dir), json.dumps({"enabled": setting.enabled, "address": setting.address}))


def make_engine(data_dir: Path, library, local_factory):
    """Engine thread: a RemoteEngine when the setting is on, else ``local_factory()``."""
    setting = load_cluster_setting(data_dir)
    if not setting.enabled:
        return local_factory()
    from engine.farm.remote import RemoteEngine

    return RemoteEngine(setting.address or None, folders=lambda: list(getattr(library, "folders", [])),
                        data_dir=str(data_dir))


__all__ = ["ClusterSetting", "RAY_MISSING_HINT", "load_cluster_setting", "save_cluster_setting", "make_engine"]
