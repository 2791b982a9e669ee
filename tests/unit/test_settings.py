"""Settings: defaults < config file < environment < explicit options; errors name the culprit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from multiflexi import settings
from multiflexi.settings import (
    DEFAULT_CONFIG,
    DEFAULT_DATA_DIR,
    DEFAULT_SOCKET,
    SettingsError,
    load_settings,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "multiflexi.conf"
    path.write_text(text)
    return path


def test_defaults_when_nothing_is_configured(tmp_path: Path) -> None:
    s = load_settings(env={"MULTIFLEXI_CONFIG": os.devnull})
    assert s.data_dir == Path(DEFAULT_DATA_DIR)
    assert s.socket == Path(DEFAULT_SOCKET)
    assert s.effective_database_url == f"sqlite:///{DEFAULT_DATA_DIR}/multiflexi.db"
    assert s.secret_key_path == Path(DEFAULT_DATA_DIR) / "secret.key"
    assert s.jobs_dir == Path(DEFAULT_DATA_DIR) / "jobs"
    assert s.max_parallel == 4
    assert s.node  # the host name


def test_file_then_environment_then_options(tmp_path: Path) -> None:
    conf = write(tmp_path, 'data_dir = "/srv/from-file"\nnode = "file-node"\n'
                           'max_parallel = 2\nstop_grace_seconds = 2.5\n'
                           'database_url = "postgresql+psycopg://mf@/mf?host=/run/postgresql"\n')
    s = load_settings(conf, env={})
    assert s.config_path == conf
    assert (s.data_dir, s.node, s.max_parallel, s.stop_grace_seconds) == (
        Path("/srv/from-file"), "file-node", 2, 2.5)
    assert s.effective_database_url == "postgresql+psycopg://mf@/mf?host=/run/postgresql"

    env = {"MULTIFLEXI_NODE": "env-node", "MULTIFLEXI_MAX_PARALLEL": "8"}
    s = load_settings(conf, env=env)
    assert (s.data_dir, s.node, s.max_parallel) == (Path("/srv/from-file"), "env-node", 8)

    s = load_settings(conf, env=env, node="option-node", data_dir="/srv/option")
    assert (s.data_dir, s.node, s.max_parallel) == (Path("/srv/option"), "option-node", 8)


def test_config_file_named_by_environment(tmp_path: Path) -> None:
    conf = write(tmp_path, 'socket = "/tmp/mf/multiflexid.sock"\n')
    s = load_settings(env={"MULTIFLEXI_CONFIG": str(conf)})
    assert s.config_path == conf
    assert s.socket == Path("/tmp/mf/multiflexid.sock")


def test_empty_environment_variables_do_not_count(tmp_path: Path) -> None:
    conf = write(tmp_path, 'data_dir = "/srv/from-file"\n')
    s = load_settings(conf, env={"MULTIFLEXI_DATA_DIR": "", "MULTIFLEXI_DATABASE_URL": ""})
    assert s.data_dir == Path("/srv/from-file")
    assert s.effective_database_url == "sqlite:////srv/from-file/multiflexi.db"


def test_empty_multiflexi_config_means_the_default_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `MULTIFLEXI_CONFIG=` (set but empty) is the default file, which may be absent...
    assert DEFAULT_CONFIG == "/etc/multiflexi/multiflexi.conf"
    monkeypatch.setattr(settings, "DEFAULT_CONFIG", str(tmp_path / "absent.conf"))
    s = load_settings(env={"MULTIFLEXI_CONFIG": "", "MULTIFLEXI_DATA_DIR": str(tmp_path)})
    assert s.config_path is None
    assert s.data_dir == tmp_path
    # ... and is read when present.
    conf = write(tmp_path, 'node = "default-file-node"\n')
    monkeypatch.setattr(settings, "DEFAULT_CONFIG", str(conf))
    s = load_settings(env={"MULTIFLEXI_CONFIG": ""})
    assert (s.config_path, s.node) == (conf, "default-file-node")


def test_environment_paths_expand_the_home_directory() -> None:
    s = load_settings(env={"MULTIFLEXI_CONFIG": os.devnull, "MULTIFLEXI_DATA_DIR": "~/mf"})
    assert s.data_dir == Path("~/mf").expanduser()


def test_unknown_key_names_the_file_and_the_key(tmp_path: Path) -> None:
    conf = write(tmp_path, 'data_dir = "/srv"\ndatabase = "sqlite:///x.db"\n')
    with pytest.raises(SettingsError) as err:
        load_settings(conf, env={})
    message = str(err.value)
    assert message.startswith(f"{conf}: unknown setting 'database' (known: ")
    assert "database_url" in message


def test_wrong_types_name_the_file_and_the_key(tmp_path: Path) -> None:
    cases = {
        'max_parallel = "four"': "max_parallel must be a non-negative integer, not 'four'",
        "max_parallel = -1": "max_parallel must be a non-negative integer, not -1",
        "max_parallel = true": "max_parallel must be a non-negative integer, not True",
        "max_parallel = 2.5": "max_parallel must be a non-negative integer, not 2.5",
        'lease_seconds = "soon"': "lease_seconds must be a non-negative number, not 'soon'",
        "lease_seconds = false": "lease_seconds must be a non-negative number, not False",
        "lease_seconds = nan": "lease_seconds must be a non-negative number, not nan",
        "node = 5": "node must be a string, not 5",
        "data_dir = 5": "data_dir must be a string, not 5",
        "socket = [\"/a\"]": "socket must be a string, not ['/a']",
    }
    for line, expected in cases.items():
        conf = write(tmp_path, line + "\n")
        with pytest.raises(SettingsError) as err:
            load_settings(conf, env={})
        assert str(err.value) == f"{conf}: {expected}", line


def test_wrong_type_in_the_environment_names_the_variable() -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(env={"MULTIFLEXI_CONFIG": os.devnull, "MULTIFLEXI_MAX_PARALLEL": "lots"})
    assert str(err.value) == \
        "MULTIFLEXI_MAX_PARALLEL: max_parallel must be a non-negative integer, not 'lots'"


def test_unknown_option_is_an_error() -> None:
    with pytest.raises(SettingsError, match=r"^option max_paralel: unknown setting"):
        load_settings(env={"MULTIFLEXI_CONFIG": os.devnull}, max_paralel=3)


def test_missing_config_file_asked_for_by_name(tmp_path: Path) -> None:
    missing = tmp_path / "nope.conf"
    with pytest.raises(SettingsError) as err:
        load_settings(missing, env={})
    assert str(err.value) == f"{missing}: configuration file not found"
    with pytest.raises(SettingsError) as err:
        load_settings(env={"MULTIFLEXI_CONFIG": str(missing)})
    assert str(err.value) == f"{missing}: configuration file not found"


def test_invalid_toml_names_the_file_and_line(tmp_path: Path) -> None:
    conf = write(tmp_path, 'data_dir = "/srv"\nnode = \n')
    with pytest.raises(SettingsError) as err:
        load_settings(conf, env={})
    assert str(err.value).startswith(f"{conf}: ")
    assert "line 2" in str(err.value)
