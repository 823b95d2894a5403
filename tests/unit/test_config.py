"""ATPLibrary.config: search order, the original system's format, environment overrides, errors, save/load."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from ATPLibrary.config import (
    AtpConfig,
    HostConfig,
    find_config_path,
    load_config,
    pick_host,
    resolve_hosts,
    save_config,
    search_paths,
)
from ATPLibrary.errors import ConfigurationError

ORIGINAL_EXAMPLE = Path(__file__).resolve().parents[3] / "shared/notes/original-scenarios/atp.toml.example"

OURS = """version = 1
[defaults]
host = "b"
timeout = 12.5

[vdi]
url = "http://vdi.example.test:8088"
username = "ops"

[hosts.a]
uri = "qemu:///system"

[hosts.b]
uri = "qemu+ssh://10.0.0.5/system"
ssh_user = "admin"
ssh_port = 2222
ssh_key = "/keys/id_ed25519"
ssh_password_env = "B_SSH_PASSWORD"
"""


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    """An environment with its own HOME and nothing else (no ATP_* variables)."""
    (tmp_path / "home").mkdir()
    return {"HOME": str(tmp_path / "home")}


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ---------------------------------------------------------------- search order


def test_nothing_configured_gives_the_implicit_local_host_and_the_user_file_to_write(
    home: dict[str, str], cwd: Path
) -> None:
    config = load_config(environ=home, cwd=cwd)
    assert config.kind == "none"
    assert config.path == Path(home["HOME"]) / ".config/atp/atp.toml"
    assert list(config.hosts) == ["local"]
    local = config.hosts["local"]
    assert (local.uri, local.implicit) == ("qemu:///system", True)
    assert config.configured_hosts == {}


def test_search_order(home: dict[str, str], cwd: Path, tmp_path: Path) -> None:
    env = dict(home, XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    original_env = write(tmp_path / "orig/env.toml", '[libvirt]\nuri = "test:///env"\n')
    env["ATP_TEST_CONFIG"] = str(original_env)
    original_cwd = write(cwd / "config/atp.toml", '[libvirt]\nuri = "test:///cwd-config"\n')
    user = write(tmp_path / "xdg/atp/atp.toml", 'version = 1\n[hosts.user]\nuri = "test:///user"\n')
    here = write(cwd / "atp.toml", 'version = 1\n[hosts.here]\nuri = "test:///here"\n')
    chosen = tmp_path / "chosen.toml"
    write(chosen, 'version = 1\n[hosts.chosen]\nuri = "test:///chosen"\n')
    env_with_atp_config = dict(env, ATP_CONFIG=str(chosen))

    assert search_paths(env_with_atp_config, cwd) == [
        chosen,
        here,
        user,
        original_env,
        original_cwd,
        Path("/etc/atp/atp.toml"),
    ]
    assert list(load_config(environ=env_with_atp_config, cwd=cwd).hosts) == ["chosen"]
    assert list(load_config(environ=env, cwd=cwd).hosts) == ["here"]
    here.unlink()
    assert list(load_config(environ=env, cwd=cwd).hosts) == ["user"]
    user.unlink()
    config = load_config(environ=env, cwd=cwd)
    assert (config.kind, config.hosts["default"].uri) == ("original", "test:///env")
    del env["ATP_TEST_CONFIG"]
    assert load_config(environ=env, cwd=cwd).hosts["default"].uri == "test:///cwd-config"


def test_user_config_dir_defaults_to_home_dot_config(home: dict[str, str], cwd: Path) -> None:
    user = write(Path(home["HOME"]) / ".config/atp/atp.toml", 'version = 1\n[hosts.mine]\nuri = "test:///x"\n')
    assert find_config_path(home, cwd) == user
    assert list(load_config(environ=home, cwd=cwd).hosts) == ["mine"]


def test_atp_config_that_does_not_exist_yet_is_the_file_to_write(
    home: dict[str, str], cwd: Path, tmp_path: Path
) -> None:
    write(cwd / "atp.toml", 'version = 1\n[hosts.here]\nuri = "test:///here"\n')
    env = dict(home, ATP_CONFIG=str(tmp_path / "new/atp.toml"))
    config = load_config(environ=env, cwd=cwd)
    assert config.path == tmp_path / "new/atp.toml"
    assert config.kind == "none"
    assert list(config.hosts) == ["local"]  # ./atp.toml is not used when ATP_CONFIG names a file
    assert "does not exist yet" in config.describe()


# ---------------------------------------------------------------- the original system's format


def test_the_original_example_file_is_read(home: dict[str, str], cwd: Path) -> None:
    if not ORIGINAL_EXAMPLE.is_file():
        pytest.fail(f"the original system's example config is missing: {ORIGINAL_EXAMPLE}")
    env = dict(home, ATP_TEST_CONFIG=str(ORIGINAL_EXAMPLE))
    config = load_config(environ=env, cwd=cwd)
    assert config.path == ORIGINAL_EXAMPLE
    assert config.kind == "original"
    assert not config.writable
    assert {k: h.uri for k, h in config.hosts.items()} == {"default": "qemu:///system"}
    assert config.defaults.host == "default"
    assert config.defaults.vm == "test-vm"
    assert config.defaults.timeout == 60
    assert config.defaults.connect_timeout == 10
    assert config.vdi.url is None  # [vdi] is commented out in the example
    assert any("environment, protocols, ssh" in note for note in config.notes)
    assert "read-only" in config.describe()


def test_original_vdi_section_hosts_and_env_overrides(home: dict[str, str], cwd: Path, tmp_path: Path) -> None:
    text = ORIGINAL_EXAMPLE.read_text()
    text = text.replace("# [vdi]", "[vdi]").replace("# base_url", "base_url").replace("# username", "username")
    text = text.replace("# password", "password").replace("# verify_ssl", "verify_ssl")
    text += '\n[libvirt.hosts.node1]\nhost = "10.1.2.3"\n\n[libvirt.hosts.node2]\nuri = "qemu+ssh://root@n2/system"\n'
    path = write(tmp_path / "orig.toml", text)
    config = load_config(path, environ=home, cwd=cwd)
    assert config.vdi.url == "http://vdi.example.test:8088"
    assert (config.vdi.username, config.vdi.password, config.vdi.verify_ssl) == ("admin", "admin123", False)
    assert any("ATP_VDI_PASSWORD" in note for note in config.notes)
    assert config.hosts["node1"].uri == "qemu+tcp://10.1.2.3/system"  # the original's default URI for an address
    assert config.hosts["node1"].address == "10.1.2.3"
    assert config.hosts["node2"].uri == "qemu+ssh://root@n2/system"

    env = dict(
        home,
        ATP_TEST_HOST="qemu+tcp://override/system",
        ATP_VDI_BASE_URL="http://other:8088",
        ATP_VDI_PASSWORD="from-env",
        ATP_TEST_TIMEOUT="7",
        ATP_TEST_VM="vm-9",
    )
    config = load_config(path, environ=env, cwd=cwd)
    assert config.hosts["default"].uri == "qemu+tcp://override/system"
    assert (config.vdi.url, config.vdi.password) == ("http://other:8088", "from-env")
    assert (config.defaults.timeout, config.defaults.vm) == (7.0, "vm-9")


def test_the_original_format_is_never_written(home: dict[str, str], tmp_path: Path) -> None:
    path = write(tmp_path / "orig.toml", '[libvirt]\nuri = "qemu:///system"\n')
    before = path.read_text()
    config = load_config(path, environ=home)
    with pytest.raises(ConfigurationError, match=r"original system's format.*never written"):
        save_config(config)
    assert path.read_text() == before


# ---------------------------------------------------------------- environment


def test_environment_overrides_our_file(home: dict[str, str], tmp_path: Path) -> None:
    path = write(tmp_path / "atp.toml", OURS)
    env = dict(
        home,
        ATP_VDI_URL="https://vdi2:8443",
        ATP_VDI_USERNAME="robot",
        ATP_VDI_PASSWORD="s3cret",
        ATP_VDI_VERIFY_SSL="yes",
        ATP_TIMEOUT="45",
        ATP_CONNECT_TIMEOUT="3",
    )
    config = load_config(path, environ=env)
    assert (config.vdi.url, config.vdi.username, config.vdi.password) == ("https://vdi2:8443", "robot", "s3cret")
    assert config.vdi.verify_ssl is True
    assert (config.defaults.timeout, config.defaults.connect_timeout) == (45.0, 3.0)
    assert "s3cret" not in repr(config)
    assert config.hosts["b"].ssh_password({"B_SSH_PASSWORD": "pw"}) == "pw"
    assert config.hosts["a"].ssh_password({"B_SSH_PASSWORD": "pw"}) is None


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ATP_TIMEOUT", "soon", "ATP_TIMEOUT='soon' must be a positive number of seconds"),
        ("ATP_CONNECT_TIMEOUT", "0", "ATP_CONNECT_TIMEOUT='0' must be a positive number"),
        ("ATP_VDI_VERIFY_SSL", "maybe", "ATP_VDI_VERIFY_SSL='maybe' must be true or false"),
    ],
)
def test_bad_environment_values_are_named(
    home: dict[str, str], tmp_path: Path, name: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigurationError) as error:
        load_config(tmp_path / "none.toml", environ=dict(home, **{name: value}))
    assert message in str(error.value)


# ---------------------------------------------------------------- bad files


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version = 1\n[hosts.lab\n", "is not valid TOML"),
        ('version = 1\n\n[hosts.lab]\nuri = "qemu:///system"\nsshuser = "x"\n', "line 5: unknown key 'sshuser'"),
        ('version = 1\n[hosts.lab]\nuri = "qemu:///system"\nsshuser = "x"\n', "Did you mean 'ssh_user'?"),
        ('[vdi]\nurl = "http://x"\npassword = "hunter2"\n', "line 3: 'password' in [vdi]: passwords are never"),
        ('[hosts.lab]\nuri = "q"\nssh_password = "pw"\n', "line 3: 'ssh_password' in [hosts.lab]: passwords are"),
        ('[hosts.lab]\nuri = "qemu:///system"\nssh_port = "22"\n', "line 3: 'ssh_port' in [hosts.lab] must be a port"),
        (
            '[hosts.lab]\nuri = "qemu:///system"\nssh_port = 70000\n',
            "'ssh_port' in [hosts.lab] must be 1..65535",
        ),
        ('[hosts.lab]\nuri = "not a uri"\n', "line 2: 'not a uri' is not a libvirt URI"),
        ("[hosts.lab]\naddress = '10.0.0.1'\n", "line 1: [hosts.lab] has no uri"),
        ("hosts.lab.uri = 3\n", "line 1: 'uri' in [hosts.lab] must be a libvirt URI"),
        ('[hosts]\nlab = "qemu:///system"\n', "line 2: hosts.lab must be a table"),
        ('[hosts."bad id!"]\nuri = "qemu:///system"\n', "host id 'bad id!' is not allowed"),
        ('[defaults]\nhost = "nope"\n', "line 2: defaults.host = 'nope' is not a configured host"),
        ("[defaults]\ntimeout = -1\n", "line 2: 'timeout' in [defaults] must be a positive number"),
        ("version = 2\n", "line 1: version = 2 is not supported"),
        ("colour = 'blue'\n", "line 1: unknown key 'colour' in the top level"),
        ('[hosts.lab]\nuri = "qemu:///system"\nssh_password_env = "my secret"\n', "must be an environment variable"),
    ],
)
def test_bad_files_name_the_file_and_line(tmp_path: Path, home: dict[str, str], text: str, message: str) -> None:
    path = write(tmp_path / "atp.toml", text)
    with pytest.raises(ConfigurationError) as error:
        load_config(path, environ=home)
    assert str(error.value).startswith(f"Config file {path}")
    assert message in str(error.value)
    assert "hunter2" not in str(error.value)


def test_unreadable_files(tmp_path: Path, home: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match="is a directory"):
        load_config(tmp_path, environ=home)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigurationError, match="is not UTF-8 text"):
        load_config(binary, environ=home)


# ---------------------------------------------------------------- save and load


def test_save_load_round_trip_without_secrets(tmp_path: Path, home: dict[str, str]) -> None:
    source = load_config(write(tmp_path / "in.toml", OURS), environ=dict(home, ATP_VDI_PASSWORD="never-written"))
    target = save_config(source, tmp_path / "sub/out.toml")
    text = target.read_text()
    assert "never-written" not in text
    assert "password =" not in text
    again = load_config(target, environ=home)
    assert again.hosts == source.hosts
    assert again.defaults == source.defaults
    assert (again.vdi.url, again.vdi.username, again.vdi.password) == (source.vdi.url, source.vdi.username, None)
    assert tomllib.loads(text)["version"] == 1


def test_implicit_host_is_not_written(tmp_path: Path, home: dict[str, str]) -> None:
    config = load_config(tmp_path / "atp.toml", environ=home)
    path = save_config(config)
    assert "hosts" not in tomllib.loads(path.read_text())
    assert list(load_config(path, environ=home).hosts) == ["local"]


def test_libvirt_uri_gets_the_ssh_settings_only_for_ssh_transports() -> None:
    host = HostConfig("b", "qemu+ssh://10.0.0.5/system", ssh_user="admin", ssh_port=2222, ssh_key="/keys/id")
    assert host.libvirt_uri() == "qemu+ssh://admin@10.0.0.5:2222/system?keyfile=/keys/id"
    named = HostConfig(
        "c", "qemu+ssh://root@h:22/system?keyfile=/k&no_verify=1", ssh_user="x", ssh_port=1, ssh_key="/y"
    )
    assert named.libvirt_uri() == "qemu+ssh://root@h:22/system?keyfile=/k&no_verify=1"
    spaced = HostConfig("e", "qemu+libssh2://h/system?known_hosts=/k h", ssh_key="/my keys/id")
    assert spaced.libvirt_uri() == "qemu+libssh2://h/system?known_hosts=/k%20h&keyfile=/my%20keys/id"
    tcp = HostConfig("d", "qemu+tcp://h/system", ssh_user="x", ssh_port=2, ssh_key="/z")
    assert tcp.libvirt_uri() == "qemu+tcp://h/system"


# ---------------------------------------------------------------- choosing hosts


def _two_hosts() -> AtpConfig:
    return AtpConfig(hosts={"a": HostConfig("a", "test:///a"), "lab-01": HostConfig("lab-01", "test:///b")}, kind="atp")


def test_resolve_hosts() -> None:
    config = _two_hosts()
    assert [h.id for h in resolve_hosts(config, None)] == ["a", "lab-01"]
    assert [h.id for h in resolve_hosts(config, [])] == ["a", "lab-01"]
    assert [h.id for h in resolve_hosts(config, ["lab-01", "a", "lab-01"])] == ["lab-01", "a"]
    adhoc = resolve_hosts(config, ["qemu+ssh://root@x/system"])[0]
    assert (adhoc.id, adhoc.uri) == ("qemu+ssh://root@x/system", "qemu+ssh://root@x/system")
    with pytest.raises(ConfigurationError, match=r"No host 'lab-1'.*Did you mean 'lab-01'\?.*Hosts: a, lab-01"):
        resolve_hosts(config, ["lab-1"])


def test_pick_host() -> None:
    config = _two_hosts()
    with pytest.raises(ConfigurationError, match=r"Several hosts.*a \(test:///a\), lab-01 \(test:///b\).*--host"):
        pick_host(config, None)
    assert pick_host(config, "a").id == "a"
    config.defaults.host = "lab-01"
    assert pick_host(config, None).id == "lab-01"
    assert pick_host(AtpConfig(), None).uri == "qemu:///system"
