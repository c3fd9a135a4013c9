"""cloudseg's YAML reader (run configs and study specs): every way a file is wrong is one
ConfigError naming the file."""

from __future__ import annotations

import pytest

from cloudseg.config import load_run_config
from cloudseg.errors import ConfigError


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00", "not a text file (byte 0 is not UTF-8)"),
        (b"optim:\n  lr: 0.1\n  lr: 0.2\n", "duplicate key 'lr' (line 2 and again line 3)"),
        (b"optim: [1\n", "not valid YAML"),
    ],
)
def test_run_config_file_errors_name_the_file(tmp_path, content, expected):
    path = tmp_path / "run.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        load_run_config(path)
    assert str(err.value).startswith(f"{path}: {expected}") and "\n" not in str(err.value)


def test_a_folder_is_not_a_config(tmp_path):
    with pytest.raises(ConfigError, match="is a folder, not a run config"):
        load_run_config(tmp_path)
