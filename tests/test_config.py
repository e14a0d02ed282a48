"""infra.config: e2e.toml -> frozen pydantic models; errors name the key path and file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pydantic
import pytest

from infra import config as config_mod
from infra.config import Config, ConfigError

REPO = Path(__file__).resolve().parents[1]

TEAM_TOML = """\
manifests = ["deploy/api.yaml"]

[[services]]
name = "api"
source = "src"
main = "./cmd/api"
image = "team/api"
node_port = 30090
"""


def write(tmp_path: Path, text: str, name: str = "team.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def load_error(tmp_path: Path, text: str) -> tuple[str, Path]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        config_mod.load(path)
    return str(info.value), path.resolve()


def test_repo_config_loads(repo_cfg: Config) -> None:
    assert repo_cfg.names() == ["datastore", "gateway"]
    assert repo_cfg.root == REPO
    assert repo_cfg.source_file == REPO / "e2e.toml"
    gw = repo_cfg.service("gateway")
    assert gw.depends_on == ("datastore",)
    assert gw.main == "./gateway"
    assert repo_cfg.path(gw.source) == REPO / "services"
    assert repo_cfg.path(repo_cfg.platform.kind_config) == REPO / "kind" / "cluster.yaml"
    assert repo_cfg.manifests == tuple(
        Path(f"manifests/{m}.yaml") for m in ("postgres", "redis", "datastore", "gateway")
    )


def test_load_relative_path_from_cwd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    cfg = config_mod.load("e2e.toml")
    assert cfg.root == REPO
    assert config_mod.load().source_file == REPO / "e2e.toml"  # the default file


def test_a_teams_own_config_file_elsewhere(tmp_path: Path) -> None:
    path = write(tmp_path, TEAM_TOML)
    cfg = config_mod.load(path)
    assert cfg.root == tmp_path.resolve()
    assert cfg.source_file == path.resolve()
    api = cfg.service("api")
    assert cfg.path(api.source) == tmp_path.resolve() / "src"
    assert cfg.path(cfg.manifests[0]) == tmp_path.resolve() / "deploy" / "api.yaml"
    assert api.image == "team/api"
    # defaults
    assert api.host_port == 0 and api.ready_path == "/ready"
    assert cfg.timeouts.build == 300 and cfg.platform.namespace == "e2e"
    assert cfg.path(Path("/abs/x")) == Path("/abs/x")


def test_unknown_key_names_its_path_and_the_file(tmp_path: Path) -> None:
    msg, path = load_error(tmp_path, TEAM_TOML.replace('image = "team/api"', 'imag = "team/api"'))
    assert f"invalid config {path}:" in msg
    assert "services[0].imag: unknown key" in msg
    assert "services[0].image:" in msg  # and the missing required key
    assert "next:" in msg


def test_unknown_top_level_and_section_keys(tmp_path: Path) -> None:
    msg, _ = load_error(tmp_path, TEAM_TOML + "\n[platfrom]\ndefault='kind'\n[timeouts]\nbiuld = 3\n")
    assert "platfrom: unknown key" in msg
    assert "timeouts.biuld: unknown key" in msg


def test_wrong_type_is_named(tmp_path: Path) -> None:
    msg, path = load_error(tmp_path, TEAM_TOML.replace("node_port = 30090", 'node_port = "high"'))
    assert str(path) in msg
    assert "services[0].node_port: Input should be a valid integer" in msg


def test_out_of_range_values_are_named(tmp_path: Path) -> None:
    text = TEAM_TOML + "[platform]\nkind_workers = 99\n[timeouts]\nready = 0\n"
    msg, _ = load_error(tmp_path, text)
    assert "platform.kind_workers: Input should be less than or equal to 8" in msg
    assert "timeouts.ready: Input should be greater than 0" in msg


def test_unknown_depends_on_is_named(tmp_path: Path) -> None:
    msg, path = load_error(tmp_path, TEAM_TOML + 'depends_on = ["datastor"]\n')
    assert str(path) in msg
    assert "service 'api' depends on unknown service 'datastor'" in msg


def test_duplicate_service_names_rejected(tmp_path: Path) -> None:
    second = TEAM_TOML.split("\n", 2)[2]  # the [[services]] table again
    msg, _ = load_error(tmp_path, TEAM_TOML + "\n" + second)
    assert "service names must be unique: ['api']" in msg


def test_image_with_a_tag_is_rejected(tmp_path: Path) -> None:
    msg, _ = load_error(tmp_path, TEAM_TOML.replace('"team/api"', '"team/api:1.0"'))
    assert "services[0].image:" in msg
    assert "give the repository only" in msg


def test_build_args_without_a_containerfile_are_refused(tmp_path: Path) -> None:
    """The harness's own image is the host's go build alone: no build arg could reach it."""
    (tmp_path / "Containerfile").write_text("FROM scratch\n")
    args = TEAM_TOML + 'build_args = { VERSION = "1" }\n'
    msg, path = load_error(tmp_path, args)
    assert f"invalid config {path}:\n  services[0]: Value error, build_args go" in msg
    assert "build_args go to a containerfile's build: set containerfile, or remove them" in msg
    assert config_mod.load(write(tmp_path, args + 'containerfile = "Containerfile"\n')).services[
        0
    ].build_args == {"VERSION": "1"}


@pytest.mark.parametrize("image", ["Team/API", "team//api", "team/api-"])
def test_invalid_image_name_rejected(tmp_path: Path, image: str) -> None:
    msg, _ = load_error(tmp_path, TEAM_TOML.replace('"team/api"', f'"{image}"'))
    assert "services[0].image:" in msg
    assert f"invalid image name {image!r}" in msg


def test_invalid_service_name_and_namespace(tmp_path: Path) -> None:
    text = (
        TEAM_TOML.replace('name = "api"', 'name = "My_Api"') + '[platform]\nnamespace = "' + "n" * 31 + '"\n'
    )
    msg, _ = load_error(tmp_path, text)
    assert "services[0].name:" in msg and "invalid service name 'My_Api'" in msg
    assert "platform.namespace:" in msg and "at most 30 characters" in msg


def test_missing_required_top_level_key(tmp_path: Path) -> None:
    msg, _ = load_error(tmp_path, "\n".join(TEAM_TOML.splitlines()[1:]))
    assert "manifests: Field required" in msg


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        config_mod.load(missing)
    assert str(info.value) == f"config file {missing} not found; next: pass --config PATH"


def test_invalid_toml_is_a_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path, "manifests = [\n[[services]\n")
    with pytest.raises(ConfigError) as info:
        config_mod.load(path)
    assert str(info.value).startswith(f"config file {path} is not valid TOML:")
    assert "line" in str(info.value)


def test_reserved_internal_keys_are_unknown(tmp_path: Path) -> None:
    msg, _ = load_error(tmp_path, 'root = "/etc"\n' + TEAM_TOML)
    assert "root: unknown key" in msg


def test_parse_takes_a_dict_and_a_file(tmp_path: Path) -> None:
    cfg = config_mod.parse(
        {"manifests": ["m.yaml"], "services": [{"name": "a", "source": ".", "image": "x/a"}]},
        tmp_path / "sub" / "e2e.toml",
    )
    assert cfg.root == (tmp_path / "sub").resolve()
    with pytest.raises(ConfigError) as info:
        config_mod.parse({"manifests": [], "services": [{"name": "a"}]}, tmp_path / "e2e.toml")
    msg = str(info.value)
    assert f"invalid config {(tmp_path / 'e2e.toml').resolve()}:" in msg
    assert "services[0].source: Field required" in msg
    assert "services[0].image: Field required" in msg


def test_config_is_frozen_and_lookup_names_known_services(repo_cfg: Config) -> None:
    with pytest.raises(pydantic.ValidationError):
        repo_cfg.platform.namespace = "other"  # type: ignore[misc]
    with pytest.raises(KeyError) as info:
        repo_cfg.service("nope")
    assert "no service 'nope'" in str(info.value)
    assert "['datastore', 'gateway']" in str(info.value)


def test_a_directory_as_config_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=str(tmp_path)):
        config_mod.load(tmp_path)


def test_coverage_spans_every_services_module_unless_one_is_named(tmp_path: Path) -> None:
    text = """
        manifests = []
        [[services]]
        name = "a"
        source = "mod-a"
        image = "team/a"
        [[services]]
        name = "b"
        source = "mod-b"
        image = "team/b"
        [[services]]
        name = "c"
        source = "mod-a"
        main = "./c"
        image = "team/c"
    """
    cfg = config_mod.load(write(tmp_path, text))
    assert cfg.coverage_modules() == [tmp_path / "mod-a", tmp_path / "mod-b"]
    named = config_mod.load(write(tmp_path, text + '\n[coverage]\ngo_module = "mod-b"\n', "named.toml"))
    assert named.coverage_modules() == [tmp_path / "mod-b"]


def test_a_stand_in_needs_the_full_reference_with_its_tag(tmp_path: Path) -> None:
    base = 'manifests = []\nservices = []\n[[images.stand_in]]\nsource = "m"\nimage = '
    msg, _ = load_error(tmp_path, base + '"registry.example.com/team/mock"\n')
    assert "images.stand_in[0].image: Value error, give the full reference with its tag" in msg
    msg, _ = load_error(tmp_path, base + '"registry.example.com/team/mock:1"\n[images]\npull = "sometimes"\n')
    assert "images.pull" in msg
