"""The node image recipe without building it: pins, cache key, archives, cleanup after a failure."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.nodeimage import builder, cache, oci, recipe, select
from infra.nodeimage import versions as v
from infra.platforms import hostfixes, kind_config
from infra.podman_cli import Podman
from infra.proc import CommandError, RecordingRunner, Result

# -- pins ------------------------------------------------------------------------------


def test_kubernetes_and_its_staging_modules_are_pinned_together() -> None:
    major, minor, patch = v.KUBERNETES.removeprefix("v").split(".")
    assert (major, minor) == ("1", "37")
    assert f"v0.{minor}.{patch}" == v.STAGING
    mod = recipe.go_modules()[0]
    text = mod.go_mod()
    assert f"require k8s.io/kubernetes {v.KUBERNETES}\n" in text
    for name in v.STAGING_MODULES:
        assert f"\tk8s.io/{name} => k8s.io/{name} {v.STAGING}\n" in text
    assert "sample-controller" not in text  # not required, and not served


def test_every_binary_is_stamped_with_the_same_version() -> None:
    flags = recipe.version_ldflags()
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert f"-X {pkg}.gitVersion={v.KUBERNETES}" in flags
        assert f"-X {pkg}.gitMajor=1" in flags
        assert f"-X {pkg}.gitMinor=37" in flags
    kube = recipe.go_modules()[0]
    assert flags in kube.ldflags
    argv = kube.build_args(Path("/out"))
    assert argv[argv.index("-tags") + 1] == "selinux,notest,grpcnotrace"
    assert argv[argv.index("-o") + 1] == "/out/"
    assert [a for a in argv if a.startswith("k8s.io/kubernetes/cmd/")] == [
        f"k8s.io/kubernetes/cmd/{c}" for c in recipe.KUBE_COMMANDS
    ]


def test_preloaded_images_are_the_names_kubeadm_and_containerd_ask_for() -> None:
    images = recipe.preloaded_images()
    assert images[f"registry.k8s.io/kube-apiserver:{v.KUBERNETES}"] == "kube-apiserver"
    assert images[f"registry.k8s.io/etcd:{v.ETCD_IMAGE_TAG}"] == "etcd"
    assert images[f"registry.k8s.io/coredns/coredns:{v.COREDNS}"] == "coredns"
    config = (recipe.FILES / "etc/containerd/config.toml").read_text()
    sandbox = f'sandbox_image = "registry.k8s.io/pause:{v.PAUSE_IMAGE_TAG}"'
    assert sandbox in config
    assert f"registry.k8s.io/pause:{v.PAUSE_IMAGE_TAG}" in images


def test_the_default_cni_manifest_runs_the_preloaded_podnet_image() -> None:
    docs = list(yaml.safe_load_all((recipe.FILES / "kind/manifests/default-cni.yaml").read_text()))
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    container = ds["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == recipe.PODNET_IMAGE
    assert container["imagePullPolicy"] == "Never"
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    assert {"nodes"} == set(role["rules"][0]["resources"])  # kubelet's credentials may not list nodes


def test_the_default_storage_manifest_runs_the_preloaded_provisioner_and_helper() -> None:
    """kind applies /kind/manifests/default-storage.yaml: rancher's local-path-provisioner, whose helper
    pods make each claim's directory 0777, from images the node already holds (nothing is pulled)."""
    docs = list(yaml.safe_load_all((recipe.FILES / "kind/manifests/default-storage.yaml").read_text()))
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert (container["image"], container["imagePullPolicy"]) == (recipe.STORAGE_IMAGE, "Never")
    assert recipe.STORAGE_HELPER_IMAGE in container["command"]
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    helper = yaml.safe_load(config["helperPod.yaml"])["spec"]["containers"][0]
    assert (helper["image"], helper["imagePullPolicy"]) == (recipe.STORAGE_HELPER_IMAGE, "Never")
    assert 'mkdir -m 0777 -p "$VOL_DIR"' in config["setup"]
    sc = next(d for d in docs if d["kind"] == "StorageClass")
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    assert (sc["metadata"]["name"], sc["provisioner"]) == ("standard", "rancher.io/local-path")
    assert {recipe.STORAGE_IMAGE, recipe.STORAGE_HELPER_IMAGE} <= set(recipe.harness_images())
    assert "local-path-provisioner" in [m.name for m in recipe.go_modules()]


# -- cache key ---------------------------------------------------------------------------


@pytest.fixture
def recipe_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The recipe files in a scratch copy, so a test may change them."""
    here = tmp_path / "nodeimage"
    shutil.copytree(recipe.HERE, here, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(recipe, "HERE", here)
    monkeypatch.setattr(recipe, "FILES", here / "files")
    monkeypatch.setattr(recipe, "GOSRC", here / "gosrc")
    monkeypatch.setattr(recipe, "PODNET", here / "podnet")
    return here


def test_the_key_is_stable_for_the_same_recipe(recipe_copy: Path) -> None:
    assert recipe.cache_key() == recipe.cache_key()
    assert len(recipe.cache_key()) == 16


@pytest.mark.parametrize(
    "change",
    ["files/etc/containerd/config.toml", "podnet/e2eh-podnet", "gosrc/pause/main.go", "builder.py"],
)
def test_the_key_changes_with_any_recipe_file(recipe_copy: Path, change: str) -> None:
    before = recipe.cache_key()
    path = recipe_copy / change
    path.write_text(path.read_text() + "\n# changed\n")
    assert recipe.cache_key() != before


def test_the_key_changes_with_a_pinned_version(recipe_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = recipe.cache_key()
    monkeypatch.setattr(v, "ETCD", "v3.7.1")
    assert recipe.cache_key() != before


def test_the_key_changes_when_a_script_loses_its_exec_bit(recipe_copy: Path) -> None:
    before = recipe.cache_key()
    (recipe_copy / "files/usr/local/bin/entrypoint").chmod(0o644)
    assert recipe.cache_key() != before


def test_cache_paths_follow_xdg_cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert recipe.cache_dir() == tmp_path / "e2e-harness" / "node-image"
    assert recipe.archive_path("k").name == f"kind-node-{v.KUBERNETES}-k.tar.zst"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert recipe.cache_dir() == Path.home() / ".cache" / "e2e-harness" / "node-image"


# -- OCI archives --------------------------------------------------------------------------


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_archive_blobs_match_their_digests_and_names(tmp_path: Path) -> None:
    binary = tmp_path / "pause"
    binary.write_bytes(b"\x7fELF not really")
    layer = oci.binary_layer(tmp_path / "layer.tar.gz", binary)
    archive = oci.Archive(
        [oci.Image("registry.k8s.io/pause:3.10.2", (layer,), entrypoint=("/usr/local/bin/pause",))]
    )
    out = archive.write(tmp_path / "images.tar")
    with tarfile.open(out) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
    for name, data in files.items():
        if name.startswith("blobs/sha256/"):
            assert _sha(data) == "sha256:" + name.rsplit("/", 1)[1]
    index = json.loads(files["index.json"])
    entry = index["manifests"][0]
    assert entry["annotations"][oci.CONTAINERD_NAME] == "registry.k8s.io/pause:3.10.2"
    assert entry["annotations"][oci.OCI_REF] == "3.10.2"
    manifest = json.loads(files["blobs/sha256/" + entry["digest"].removeprefix("sha256:")])
    config = json.loads(files["blobs/sha256/" + manifest["config"]["digest"].removeprefix("sha256:")])
    assert config["config"]["Entrypoint"] == ["/usr/local/bin/pause"]
    layer_bytes = files["blobs/sha256/" + manifest["layers"][0]["digest"].removeprefix("sha256:")]
    plain = gzip.decompress(layer_bytes)
    assert config["rootfs"]["diff_ids"] == [_sha(plain)]
    with tarfile.open(fileobj=io.BytesIO(plain)) as inner:
        members = {m.name: m for m in inner}
    assert members["usr/local/bin/pause"].mode == 0o755
    assert members["tmp"].mode == 0o1777
    assert {m.uid for m in members.values()} == {0}


def test_same_inputs_give_the_same_layer_digest(tmp_path: Path) -> None:
    binary = tmp_path / "etcd"
    binary.write_bytes(b"binary")
    first = oci.binary_layer(tmp_path / "a.tar.gz", binary)
    second = oci.binary_layer(tmp_path / "b.tar.gz", binary)
    assert (first.digest, first.diff_id) == (second.digest, second.diff_id)


def test_filtered_layer_drops_skipped_paths_and_their_hardlinks(tmp_path: Path) -> None:
    src = tmp_path / "src.tar"
    with tarfile.open(src, "w") as tar:
        for name, data in (("./usr/sbin/iptables", b"ipt"), ("./usr/share/doc/x", b"doc")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("./usr/share/doc/y")
        link.type, link.linkname = tarfile.LNKTYPE, "./usr/share/doc/x"
        tar.addfile(link)
    blob = oci.filtered_layer(tmp_path / "l.tar.gz", src, lambda n: n.startswith("usr/share/doc/x"))
    with tarfile.open(blob.path, "r:gz") as tar:  # type: ignore[arg-type]
        assert tar.getnames() == ["usr/sbin/iptables"]


# -- the build's steps and its cleanup -------------------------------------------------------


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return recipe.cache_dir()


def test_a_failed_build_removes_its_container_and_intermediate_image(cache_home: Path) -> None:
    runner = RecordingRunner()
    runner.on(["debootstrap"], returncode=1, stdout="E: Couldn't download packages")
    build = builder.Build(runner, Podman(runner), key="0123456789abcdef")
    stale = build.work / "rootfs" / "half"
    stale.mkdir(parents=True)  # an interrupted run's leftovers
    with pytest.raises(builder.NodeImageError, match="Couldn't download packages"):
        build.run(builder.Timeline())
    argvs = runner.argvs()
    assert ("podman", "rm", "--force", "--ignore", "e2eh-node-image-build-0123456789abcdef") in argvs
    assert ("podman", "rmi", "--force", "localhost/e2e-harness/kind-node-build:0123456789abcdef") in argvs
    assert not any(a[:2] == ("podman", "commit") for a in argvs)  # nothing under the final name
    assert not stale.exists()


def test_customize_makes_a_kind_node_tree(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for d in ("lib/systemd/system/multi-user.target.wants", "etc/systemd/system/timers.target.wants", "sbin"):
        (root / d).mkdir(parents=True)
    (root / "lib/systemd/system/multi-user.target.wants/getty.target").write_text("")
    (root / "etc/systemd/system/timers.target.wants/apt-daily.timer").write_text("")
    (root / "etc/systemd/journald.conf").write_text("[Journal]\n")
    builder.customize(root)
    assert (root / "kind/version").read_text() == v.KUBERNETES
    assert (root / "sbin/init").readlink() == Path("/usr/lib/systemd/systemd")
    assert (root / "opt/cni/bin").readlink() == Path("/usr/lib/cni")
    wants = root / "etc/systemd/system/multi-user.target.wants"
    assert sorted(p.name for p in wants.iterdir()) == ["containerd.service", "kubelet.service"]
    assert not (root / "lib/systemd/system/multi-user.target.wants/getty.target").exists()
    assert not (root / "etc/systemd/system/timers.target.wants/apt-daily.timer").exists()
    assert (root / "etc/systemd/system/systemd-binfmt.service").readlink() == Path("/dev/null")
    assert (root / "usr/local/bin/entrypoint").stat().st_mode & 0o111
    assert "ReadKMsg=no" in (root / "etc/systemd/journald.conf").read_text()


# -- where the image comes from ----------------------------------------------------------------


def _podman(exists: bool, kindest: str = "") -> tuple[RecordingRunner, Podman]:
    runner = RecordingRunner()
    runner.on(["podman", "image", "exists"], returncode=0 if exists else 1)
    runner.on(["podman", "images"], stdout=kindest)
    return runner, Podman(runner)


def test_present_image_needs_no_work(cache_home: Path) -> None:
    runner, podman = _podman(exists=True)
    assert cache.status(podman).state == "present"
    choice = select.node_image(runner, podman, "")
    assert choice.image == str(recipe.image_ref())
    assert not any(a[1] in ("load", "build", "save") for a in runner.argvs())


def test_a_cached_archive_is_loaded_not_built(cache_home: Path) -> None:
    runner = RecordingRunner()
    loaded: list[bool] = []

    def exists(argv: tuple[str, ...]) -> Result | None:
        if argv[:3] == ("podman", "image", "exists"):
            return Result(argv, 0 if loaded else 1, "", "", 0)
        if argv[:2] == ("podman", "load"):
            loaded.append(True)
        return None

    runner.responders.append(exists)
    archive = recipe.archive_path()
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"zstd")
    image = cache.ensure(runner, Podman(runner), report=cache_home / "report.json")
    assert image == recipe.image_ref()
    assert ("podman", "load", "--input", str(archive)) in runner.argvs()
    assert not any(a[0] in ("debootstrap", "go") for a in runner.argvs())
    report = json.loads((cache_home / "report.json").read_text())
    assert report["loaded"]["seconds"] >= 0 and report["key"] == recipe.cache_key()


def test_kindest_node_is_preferred_when_present(cache_home: Path) -> None:
    runner, podman = _podman(exists=False, kindest="docker.io/kindest/node:v1.35.0\n")
    choice = select.node_image(runner, podman, "")
    assert choice.image == "docker.io/kindest/node:v1.35.0"


def test_no_image_anywhere_names_the_build_command_and_its_cost(cache_home: Path) -> None:
    runner, podman = _podman(exists=False)
    assert select.available(podman, "") == ""
    with pytest.raises(select.NodeImageMissing) as info:
        select.node_image(runner, podman, "")
    assert "`nox -s node_image`" in str(info.value) and "15 min" in str(info.value)


def test_a_configured_image_that_is_absent_is_refused_before_kind_tries_to_pull(cache_home: Path) -> None:
    runner, podman = _podman(exists=False)
    with pytest.raises(
        select.NodeImageMissing, match=r"platform\.kind_node_image my/node:1 is not in podman"
    ):
        select.node_image(runner, podman, "my/node:1")


# -- host fixes --------------------------------------------------------------------------------

FULL_CAPS = "CapBnd:\t000001ffffffffff\n"
NO_SYS_RESOURCE = "CapBnd:\t000001fffeffffff\n"


def test_a_normal_host_gets_kinds_defaults() -> None:
    assert hostfixes.detect(FULL_CAPS, cgroup_v2=True) == []


def test_each_fix_is_applied_only_where_detected() -> None:
    fixes = hostfixes.detect(NO_SYS_RESOURCE, cgroup_v2=False)
    assert [f.name for f in fixes] == ["cgroup v1", "no CAP_SYS_RESOURCE"]
    assert [f.name for f in hostfixes.detect(NO_SYS_RESOURCE, cgroup_v2=True)] == ["no CAP_SYS_RESOURCE"]
    assert [f.name for f in hostfixes.detect(FULL_CAPS, cgroup_v2=False)] == ["cgroup v1"]


def test_patches_reach_the_rendered_kind_config() -> None:
    fixes = hostfixes.detect(NO_SYS_RESOURCE, cgroup_v2=False)
    base = {"kind": "Cluster", "apiVersion": kind_config.API_VERSION, "kubeadmConfigPatches": ["x: 1\n"]}
    cfg = kind_config.render(
        base, workers=0, host_ports={}, mounts={},
        kubeadm_patches=[f.kubeadm_patch for f in fixes if f.kubeadm_patch],
        containerd_patches=[f.containerd_patch for f in fixes if f.containerd_patch],
    )  # fmt: skip
    assert cfg["kubeadmConfigPatches"][0] == "x: 1\n"  # the user's own patch is kept
    patch = yaml.safe_load(cfg["kubeadmConfigPatches"][1])
    assert patch == {
        "kind": "KubeletConfiguration",
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "failCgroupV1": False,
    }
    assert "restrict_oom_score_adj = true" in cfg["containerdConfigPatches"][0]
    assert "containerdConfigPatches" not in kind_config.render(base, workers=0, host_ports={}, mounts={})


def test_lib_modules_is_created_only_when_missing(tmp_path: Path) -> None:
    present = tmp_path / "modules"
    present.mkdir()
    assert hostfixes.ensure_lib_modules(present) == ""
    missing = tmp_path / "lib" / "modules"
    assert "created an empty" in hostfixes.ensure_lib_modules(missing)
    assert missing.is_dir()


def test_a_failed_step_names_its_log(cache_home: Path) -> None:
    runner = RecordingRunner()
    runner.on(["go", "build"], returncode=1, stdout="go: module lookup disabled")
    build = builder.Build(runner, Podman(runner), key="k")
    build.logs.mkdir(parents=True)
    with pytest.raises(CommandError) as info:
        build.go_build(recipe.go_modules()[1])
    assert str(build.logs / "go-etcd.log") in str(info.value)


# -- the platform choice ------------------------------------------------------------------------


def test_the_choice_says_where_the_platform_came_from(make_cfg: Any, cache_home: Path) -> None:
    from infra.platforms.platform import choose

    cfg = make_cfg(platform={"default": "podman"})
    _, podman = _podman(exists=True)
    assert choose("kind", cfg, podman).reason == "requested with --platform"
    assert choose(None, cfg, podman).reason == f"requested with platform.default in {cfg.source_file}"


def test_auto_falls_back_to_podman_naming_the_node_image_command(
    make_cfg: Any, cache_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infra.platforms import platform

    monkeypatch.setattr(platform.shutil, "which", lambda name: f"/usr/bin/{name}")
    cfg = make_cfg(platform={"default": "auto"})
    _, absent = _podman(exists=False)
    choice = platform.choose(None, cfg, absent)
    assert choice.name == "podman" and "`nox -s node_image`" in choice.reason
    _, present = _podman(exists=True)
    choice = platform.choose(None, cfg, present)
    assert choice.name == "kind" and str(recipe.image_ref()) in choice.reason
