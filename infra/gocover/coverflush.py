"""Coverage counters flushed from running services on a signal, with no change to their code.

For -cover builds the harness builds each Go module from a copy of its tree
(hard links) to which it adds a small package and, in each main package, a
file that imports it; the sources and the non-coverage images are untouched.
(`go build -overlay` cannot add a file to a covered package: the cover tool
reads the package's files from disk, not through the overlay.) On the flush
signal the package writes the process's counters into GOCOVERDIR
(runtime/coverage WriteCountersDir) and clears them (ClearCounters, which
needs -covermode=atomic), so every counters file holds what was counted since
the previous one and a process's files add up to its whole run. The package
is instrumented too (-coverpkg matches it): reports leave it out.

The harness sends the signal itself (podman kill; on kind the node's
containerd) and waits, with a deadline, for each signalled process's marker
file, written once its counters are out: a counters file alone may come from
another process of the image that exited meanwhile (an exec probe).
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from infra import waits
from infra.config import Config, ConfigError
from infra.images import context_files
from infra.proc import Runner

if TYPE_CHECKING:
    from infra.platforms.platform import Context

OFF = "off"
OVERLAY_FILE = "e2eh_coverflush.go"
"""The name the added file takes in each main package (a main with its own file of that name is refused)."""
PACKAGE_DIR = "_e2ehcoverflush"
"""The added package, at the module's root ('_': no ./... pattern of the team's own lists it)."""
_FLUSH_PACKAGE_LINE = re.compile(rf"/{PACKAGE_DIR}(?:/|\s)")
COUNTERS_GLOB = "covcounters.*"
FLUSHED_PREFIX = ".e2eh-flushed."
"""A signalled process writes `<prefix><pid>.<nanotime>` once its counters are out (go tool covdata
reads covmeta.* and covcounters.* only); the harness counts and removes them."""

_SOURCE = """\
// Added by e2e-harness to -cover builds only, in a copy of the module; not in your sources.
// On {signal} it writes this process's coverage counters into GOCOVERDIR and clears them.
// With {addr_env} set (a cluster the harness cannot reach the nodes of), it also serves them:
// GET {path}meta and {path}counters[?clear=1] on that address, and {path}files: a tar of the
// counters other processes of the container (an exec probe) left in GOCOVERDIR, removed once sent.

package e2ehcoverflush

import (
	"archive/tar"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/coverage"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

var mu sync.Mutex // a signal's flush and a pull never interleave their write and clear

func init() {{
	if addr := os.Getenv("{keeper_env}"); addr != "" {{
		keep(addr) // never returns
	}}
	if addr := os.Getenv("{addr_env}"); addr != "" {{
		go serve(addr)
	}}
	dir := os.Getenv("GOCOVERDIR")
	if dir == "" {{
		return
	}}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.{signal})
	go func() {{
		for range sigs {{
			flush(dir)
		}}
	}}()
}}

func flush(dir string) {{
	mu.Lock()
	defer mu.Unlock()
	if err := coverage.WriteMetaDir(dir); err != nil {{
		fmt.Fprintf(os.Stderr, "e2e-harness coverage flush: %v\\n", err)
		return
	}}
	if err := coverage.WriteCountersDir(dir); err != nil {{
		fmt.Fprintf(os.Stderr, "e2e-harness coverage flush: %v\\n", err)
		return
	}}
	if err := coverage.ClearCounters(); err != nil {{
		fmt.Fprintf(os.Stderr, "e2e-harness coverage flush: %v\\n", err)
	}}
	// written last: the harness waits for it, not for a counters file that any other
	// process of the image (an exec probe) writes when it exits
	done := fmt.Sprintf("%s/{marker}%d.%d", dir, os.Getpid(), time.Now().UnixNano())
	if err := os.WriteFile(done, nil, 0o644); err != nil {{
		fmt.Fprintf(os.Stderr, "e2e-harness coverage flush: %v\\n", err)
	}}
}}

func serve(addr string) {{
	mux := http.NewServeMux()
	mux.HandleFunc("{path}meta", meta)
	mux.HandleFunc("{path}counters", func(w http.ResponseWriter, r *http.Request) {{
		mu.Lock()
		defer mu.Unlock()
		var buf bytes.Buffer
		if err := coverage.WriteCounters(&buf); err != nil {{
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}}
		if r.URL.Query().Get("clear") == "1" {{
			if err := coverage.ClearCounters(); err != nil {{
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}}
		}}
		w.Header().Set("{pid_header}", strconv.Itoa(os.Getpid()))
		_, _ = w.Write(buf.Bytes())
	}})
	mux.HandleFunc("{path}files", files)
	if err := http.ListenAndServe(addr, mux); err != nil {{
		fmt.Fprintf(os.Stderr, "e2e-harness coverage listener on %s: %v\\n", addr, err)
	}}
}}

func meta(w http.ResponseWriter, r *http.Request) {{
	var buf bytes.Buffer
	if err := coverage.WriteMeta(&buf); err != nil {{
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}}
	_, _ = w.Write(buf.Bytes())
}}

// files hands over, as a tar, the counters files other processes left in GOCOVERDIR (removed once
// sent) and the meta-data files they wrote (a keeper has no meta-data of its own: main never ran).
func files(w http.ResponseWriter, r *http.Request) {{
	mu.Lock()
	defer mu.Unlock()
	tw := tar.NewWriter(w)
	dir := os.Getenv("GOCOVERDIR")
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {{
		name := e.Name()
		counters := strings.HasPrefix(name, "covcounters.")
		if dir == "" || !(counters || strings.HasPrefix(name, "covmeta.")) {{
			continue
		}}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {{
			continue
		}}
		hdr := &tar.Header{{Name: name, Mode: 0o644, Size: int64(len(data))}}
		if tw.WriteHeader(hdr) != nil {{
			return
		}}
		if _, err := tw.Write(data); err != nil {{
			return
		}}
		if counters {{ // a meta-data file is written once per binary: kept
			_ = os.Remove(filepath.Join(dir, name))
		}}
	}}
	_ = tw.Close()
}}

// keep is a keeper container's whole life (the same binary, beside the service's container, sharing
// its GOCOVERDIR): it never runs main. It hands over what the service's process wrote on its way
// out, until the harness says done; stopped, it waits {keep_seconds}s for that.
func keep(addr string) {{
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {{
		<-sigs
		time.Sleep({keep_seconds} * time.Second)
		os.Exit(0)
	}}()
	mux := http.NewServeMux()
	mux.HandleFunc("{path}files", func(w http.ResponseWriter, r *http.Request) {{
		if main := os.Getenv("{main_env}"); main != "" && r.URL.Query().Get("wait") == "1" {{
			// the service's process is on its way out: its exit's counters come once its listener is gone
			for end := time.Now().Add({keep_seconds} * time.Second); time.Now().Before(end); {{
				conn, err := net.DialTimeout("tcp", main, 200*time.Millisecond)
				if err != nil {{
					break
				}}
				_ = conn.Close()
				time.Sleep(100 * time.Millisecond)
			}}
		}}
		files(w, r)
	}})
	mux.HandleFunc("{path}done", func(w http.ResponseWriter, r *http.Request) {{
		w.WriteHeader(http.StatusOK)
		go func() {{
			time.Sleep(100 * time.Millisecond) // the answer leaves first
			os.Exit(0)
		}}()
	}})
	err := http.ListenAndServe(addr, mux)
	fmt.Fprintf(os.Stderr, "e2e-harness coverage keeper on %s: %v\\n", addr, err)
	os.Exit(1)
}}
"""
KEEPER_ENV = "E2EH_COVERAGE_KEEPER"
"""Set only on the keeper container the harness adds beside a -cover service on --platform cluster."""
KEEPER = "e2eh-coverage-keeper"
KEEPER_MAIN_ENV = "E2EH_COVERAGE_MAIN"
"""The keeper's: where the service's process listens (gone: the process has ended)."""
KEEP_SECONDS = 10
ADDR_ENV = "E2EH_COVERAGE_ADDR"
"""Set by the harness only where it pulls coverage over HTTP (--platform cluster)."""
PULL_PATH = "/e2eh/coverage/"
PID_HEADER = "X-E2eh-Pid"


def go_source(signame: str) -> str:
    return _SOURCE.format(
        signal=signame,
        marker=FLUSHED_PREFIX,
        addr_env=ADDR_ENV,
        path=PULL_PATH,
        pid_header=PID_HEADER,
        keeper_env=KEEPER_ENV,
        keep_seconds=KEEP_SECONDS,
        main_env=KEEPER_MAIN_ENV,
    )


META_MAGIC = b"\x00\x63\x76\x6d"  # internal/coverage: MetaFileMagic


def meta_hash(meta: bytes) -> str:
    """The hash a meta-data file is named by (covmeta.<hash>): MetaFileHeader.MetaFileHash, after
    Magic [4], Version u32, TotalLength u64 and Entries u64."""
    if len(meta) < 40 or meta[:4] != META_MAGIC:
        raise ValueError(f"not a Go coverage meta-data file ({len(meta)} bytes, starts {meta[:4]!r})")
    return meta[24:40].hex()


class CoverageMode(enum.StrEnum):
    """How a run's counters reach the harness: decided once (resolve), read everywhere else."""

    OFF = "off"
    AT_STOP = "at stop"  # flush_signal = "off": only the graceful stop writes them
    SIGNAL = "signal"  # flushed on a signal into a directory the harness reads, and at the stop
    PULL = "pull"  # served over HTTP, pulled through port-forwards (no node to read)

    @property
    def flushes(self) -> bool:
        """Counters can be taken from running processes (before a restart, around a test)."""
        return self in (CoverageMode.SIGNAL, CoverageMode.PULL)


def resolve(requested: bool, config: Config, via: str) -> CoverageMode:
    """--coverage, the config's flush_signal and the provider's way (Platform.coverage_via)."""
    if not requested:
        return CoverageMode.OFF
    if not enabled(config):
        return CoverageMode.AT_STOP
    return CoverageMode.PULL if via == "pull" else CoverageMode.SIGNAL


def enabled(config: Config) -> bool:
    return config.coverage.flush_signal != OFF


def tag_input(config: Config) -> str:
    """What the coverage image's tag must change with: the signal and the added file."""
    sig = config.coverage.flush_signal
    if sig == OFF:
        return OFF
    added = go_source(sig) + PACKAGE_DIR + OVERLAY_FILE
    return f"{sig}:{hashlib.sha256(added.encode()).hexdigest()[:16]}"


def flushable(config: Config, service: str) -> bool:
    """Host-built services get the file; a team's own Containerfile build cannot."""
    if not enabled(config) or service not in config.names():
        return False  # objects deployed outside a configured service (e.g. shared) run no flush file
    return config.service(service).containerfile is None


def _link_or_copy(src: str, dst: str) -> object:
    try:
        os.link(src, dst)
    except OSError:  # another file system
        shutil.copy2(src, dst)
    return dst


def prepare_tree(
    source: Path, module: str, mains: Sequence[str], signame: str, dest: Path, skip: Sequence[Path] = ()
) -> Path:
    """A copy of the module (hard links) with the flush package and one import file per main; its root."""
    source = source.resolve()
    skipped = {p.resolve() for p in skip}

    def ignore(directory: str, names: list[str]) -> list[str]:
        here = Path(directory)
        return [n for n in names if n in (".git", "__pycache__") or (here / n).resolve() in skipped]

    root = dest / "src"
    shutil.copytree(source, root, ignore=ignore, copy_function=_link_or_copy, symlinks=True)
    package = root / PACKAGE_DIR
    package.mkdir()
    (package / "flush.go").write_text(go_source(signame))
    for main in mains:
        added = root / main / OVERLAY_FILE
        added.write_text(f'package main\n\nimport _ "{module}/{PACKAGE_DIR}"\n')
    return root


def mirror_workspace(source: Path, copy: Path, *, runner: Runner, timeout: float) -> None:
    """The module's go.work, if it is in one, for its copy: the copy in place of the module.

    The copy lies inside the repository, where go would find the repo's go.work,
    which does not list it; modules of the workspace still resolve each other.
    """
    gowork = runner.run(["go", "env", "GOWORK"], cwd=source, timeout=timeout).stdout.strip()
    if not gowork or gowork == "off":
        return
    work = json.loads(runner.run(["go", "work", "edit", "-json", gowork], cwd=source, timeout=timeout).stdout)
    base = Path(gowork).parent

    def local(path: str) -> str:
        return str((base / path).resolve()) if path.startswith(".") or path.startswith("/") else path

    uses = [copy if Path(local(u["DiskPath"])) == source.resolve() else Path(local(u["DiskPath"]))
            for u in work.get("Use") or []]  # fmt: skip
    lines = [f"go {work['Go']}"] if work.get("Go") else []
    lines += [f"toolchain {work['Toolchain']}"] if work.get("Toolchain") else []
    lines += ["use (", *(f"\t{u}" for u in [*uses, *([] if copy in uses else [copy])]), ")"]
    for rep in work.get("Replace") or []:
        old, new = rep["Old"], rep["New"]
        left = " ".join(filter(None, (old["Path"], old.get("Version"))))
        right = " ".join(filter(None, (local(new["Path"]), new.get("Version"))))
        lines.append(f"replace {left} => {right}")
    (copy / "go.work").write_text("\n".join(lines) + "\n")
    if (base / "go.work.sum").is_file():
        shutil.copy2(base / "go.work.sum", copy / "go.work.sum")


def report_line_kept(line: str) -> bool:
    """A line of a text profile or of `covdata percent` that is not about the added package."""
    return not _FLUSH_PACKAGE_LINE.search(line)


def without_flush_package(text: str) -> str:
    return "".join(ln for ln in text.splitlines(keepends=True) if report_line_kept(ln))


def check_mains(config: Config) -> None:
    """Refuse, before anything starts, a module whose own code already handles the flush signal.

    A reference to syscall.SIG… (or unix.SIG…) anywhere in the module's sources
    counts: the harness cannot tell which handler would win.
    """
    if not enabled(config):
        return
    sig = config.coverage.flush_signal
    pattern = re.compile(rf"\b(?:syscall|unix)\.{sig}\b")
    problems: list[str] = []
    for source in sorted(
        {config.path(s.source).resolve() for s in config.services if flushable(config, s.name)}
    ):
        if (source / PACKAGE_DIR).exists():
            problems.append(f"{source / PACKAGE_DIR}: the harness adds a package of that name")
        for path in context_files(source):
            if path.suffix != ".go" or path.name.endswith("_test.go") or "testdata" in path.parts:
                continue
            if path.name == OVERLAY_FILE:
                problems.append(f"{path}: a file named {OVERLAY_FILE} (the harness adds its own)")
                continue
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if pattern.search(line):
                    problems.append(f"{path}:{number}: {line.strip()}")
    if problems:
        raise ConfigError(
            f"coverage.flush_signal = {sig!r} in {config.source_file}, but the services' code already "
            f"uses that signal:\n  " + "\n  ".join(problems) + "\nnext: choose another signal "
            '(`[coverage] flush_signal = "SIGUSR2"`) or turn flushing off (`flush_signal = "off"`: '
            "counters then come only from a graceful stop)"
        )


def counter_files(directory: Path) -> set[str]:
    return {p.name for p in directory.glob(COUNTERS_GLOB)} if directory.is_dir() else set()


Signaller = Callable[[str, str], list[str]]
"""(service, signal name) -> the processes (containers) signalled, only those running."""


def flush(ctx: Context, services: Sequence[str], send: Signaller) -> dict[str, list[str]]:
    """Signal every running process of the services; wait until each wrote its marker (after its
    counters), then remove the markers.

    Returns service -> the new counters files. A service with no running
    process is skipped (nothing to flush); one built from its own
    Containerfile has no flush file and is skipped too.
    """
    cfg = ctx.config
    if ctx.coverage_mode is not CoverageMode.SIGNAL:
        return {}
    sig = cfg.coverage.flush_signal
    names = [s for s in services if s in cfg.names() and flushable(cfg, s)]
    dirs = {s: ctx.paths.covdata / s for s in names}
    before = {s: counter_files(d) for s, d in dirs.items()}
    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:  # one podman/ctr call each
        signalled = dict(zip(names, waits.map_all(pool, lambda s: send(s, sig), names), strict=True))
    wanted = {s: len(p) for s, p in signalled.items() if p}

    def new(service: str) -> set[str]:
        return counter_files(dirs[service]) - before[service]

    def flushed(service: str) -> int:
        return len(list(dirs[service].glob(FLUSHED_PREFIX + "*")))

    def probe() -> waits.Observation[None]:
        short = {s: f"{flushed(s)} of {n}" for s, n in wanted.items() if flushed(s) < n}
        return waits.Observation(not short, f"processes done flushing: {short}")

    try:
        if wanted:
            who = "; ".join(f"{s} ({', '.join(signalled[s])})" for s in wanted)
            waits.poll(
                f"{sig} to make {who} write new coverage counters files under {ctx.paths.covdata}",
                probe,
                timeout=cfg.coverage.flush_timeout,
                interval=0.05,
                hint="check that the images were built by this harness with coverage (the flush file is "
                "added at build time), that the process is the container's entrypoint, and its logs for "
                "'e2e-harness coverage flush'",
            )
    finally:
        for d in dirs.values():
            for marker in d.glob(FLUSHED_PREFIX + "*"):
                marker.unlink(missing_ok=True)
    return {s: sorted(new(s)) for s in wanted}
