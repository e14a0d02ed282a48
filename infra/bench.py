"""`nox -s bench`: setup timed cold and warm, parallel and sequential, on podman; `--platform kind`:
cluster create, image save, load cold and skipped, deploy, ready and delete.

cold: every image rebuilt (Go's build cache is kept: a cold Go cache measures
the compiler, not the harness); warm: nothing changed, so builds are skipped.
Each mode runs `repeat` times; the median is reported.
"""

from __future__ import annotations

import json
import os
import platform as host
import shutil
import statistics
import time
from pathlib import Path
from typing import Any, Literal

from infra import config as config_mod
from infra import runlock
from infra.console import say
from infra.run import EXIT_OK, Options, Run

MODES = [("cold", "parallel"), ("cold", "sequential"), ("warm", "parallel"), ("warm", "sequential")]


def one(config: str | None, cache: str, mode: str) -> dict[str, Any]:
    cfg = config_mod.load(config)
    run = Run(
        cfg,
        Options(
            config=config,
            platform="podman",
            sequential=mode == "sequential",
            force_build=cache == "cold",
            then="teardown",
        ),
    )
    code = run.execute()
    if code != EXIT_OK:
        raise RuntimeError(f"bench run {run.paths.run_id} ({cache}, {mode}) failed with exit {code}")
    timings = json.loads((run.paths.artifacts / "timings.json").read_text())
    return {
        "run_id": run.paths.run_id,
        "cache": cache,
        "mode": mode,
        "setup_seconds": timings["setup_seconds"],
        "built": timings["built"],
    }


def bench(config: str | None, repeat: int, out: Path) -> dict[str, Any]:
    runs = []
    one(config, "warm", "parallel")  # prime: images exist, so "warm" below is warm from the start
    for _ in range(repeat):
        for cache, mode in MODES:
            runs.append(one(config, cache, mode))

    def median(cache: str, mode: str) -> float:
        values = [float(r["setup_seconds"]) for r in runs if r["cache"] == cache and r["mode"] == mode]
        return statistics.median(values)

    med = {f"{c}_{m}": median(c, m) for c, m in MODES}
    result = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": host.python_version(), "system": host.platform()},
        "repeat": repeat,
        "median_setup_seconds": med,
        "ratios": {
            "sequential_over_parallel_cold": round(med["cold_sequential"] / med["cold_parallel"], 3),
            "sequential_over_parallel_warm": round(med["warm_sequential"] / med["warm_parallel"], 3),
            "cold_over_warm_parallel": round(med["cold_parallel"] / med["warm_parallel"], 3),
        },
        "warm_runs_skipped_all_builds": all(
            not any(r["built"].values()) for r in runs if r["cache"] == "warm"
        ),
        "cold_runs_built_every_image": all(all(r["built"].values()) for r in runs if r["cache"] == "cold"),
        "runs": runs,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    say(
        json.dumps(
            {k: result[k] for k in ("median_setup_seconds", "ratios", "warm_runs_skipped_all_builds")},
            indent=2,
        )
    )
    say(f"wrote {out}")
    return result


def _phase_seconds(run: Run, prefix: str) -> float:
    return round(sum(t.seconds for t in run.timeline.timings if t.name.startswith(prefix)), 3)


def _kind_run(config: str | None, *, reuse: str = "", then: Literal["keep", "teardown"] = "teardown") -> Run:
    cfg = config_mod.load(config)
    run = Run(cfg, Options(config=config, platform="kind", reuse=reuse, then=then))
    code = run.execute()
    if code != EXIT_OK:
        raise RuntimeError(f"bench run {run.paths.run_id} on kind failed with exit {code}")
    return run


def kind_once(config: str | None) -> dict[str, Any]:
    """A new cluster with a cold load, then a run that reuses it (load skipped), then its deletion."""
    first = _kind_run(config, then="keep")
    assert first.stack is not None
    plat: Any = first.stack.platform
    try:
        second = _kind_run(config, reuse=plat.cluster)
    finally:
        start = time.monotonic()
        plat.teardown()
        deleted = time.monotonic() - start
        runlock.unmark_kept(first.paths.run_id)
        shutil.rmtree(first.paths.run_dir, ignore_errors=True)
    steps = {k: round(v, 3) for k, v in plat.step_seconds.items()}
    return {
        "run_ids": [first.paths.run_id, second.paths.run_id],
        "cluster_create_seconds": _phase_seconds(first, "cluster"),
        "image_save_seconds": steps.get("image_save"),
        "load_cold_seconds": _phase_seconds(first, "load"),
        "kind_load_seconds": steps.get("kind_load"),
        "load_skipped_seconds": _phase_seconds(second, "load"),
        "deploy_seconds": _phase_seconds(first, "deploy:"),
        "ready_seconds": _phase_seconds(first, "ready:"),
        "setup_seconds": first.setup_seconds,
        "reused_setup_seconds": second.setup_seconds,
        "cluster_delete_seconds": round(deleted, 3),
    }


def bench_kind(config: str | None, repeat: int, out: Path) -> dict[str, Any]:
    """Each step of the kind platform, medians of `repeat` rounds, beside the podman figures."""
    runs = [kind_once(config) for _ in range(repeat)]
    keys = [k for k in runs[0] if k.endswith("_seconds")]
    medians = {k: round(statistics.median(float(r[k] or 0) for r in runs), 2) for k in keys}
    data: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    data["kind"] = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "repeat": repeat,
        "median_seconds": medians,
        "runs": runs,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n")
    say(json.dumps({"kind": medians}, indent=2))
    say(f"wrote {out}")
    return data
