"""What a failed run leaves for a human to read, written before anything is removed."""

from __future__ import annotations

import json
import logging
import traceback
from pathlib import Path

from infra.config import Config
from infra.phases import Timeline
from infra.platforms.manifests import Rendered
from infra.platforms.platform import Platform

log = logging.getLogger("infra.diagnostics")


def collect(
    into: Path,
    *,
    config: Config,
    platform: Platform | None,
    rendered: Rendered | None,
    timeline: Timeline,
    error: BaseException | None,
) -> Path:
    """Best effort: a failing collector is noted in errors.txt, never raised."""
    into.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    (into / "config.json").write_text(config.model_dump_json(indent=2))
    (into / "timings-so-far.json").write_text(json.dumps([t.as_dict() for t in timeline.timings], indent=2))
    if rendered is not None:
        (into / "manifests.rendered.yaml").write_text(rendered.yaml())
    if error is not None:
        (into / "error.txt").write_text("".join(traceback.format_exception(error)))
    if platform is not None:
        try:
            platform.collect_diagnostics(into / platform.name)
        except Exception as err:  # noqa: BLE001 - diagnostics must not mask the failure
            problems.append(f"{platform.name} diagnostics: {err}")
            log.warning("collecting %s diagnostics failed: %s", platform.name, err)
    if problems:
        (into / "errors.txt").write_text("\n".join(problems) + "\n")
    return into
