"""Optuna storages by one string, and their one-line errors."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from sweep.errors import SweepError
from sweep.study.storage import load_study, open_storage


def test_journal_paths_and_database_urls_open_and_are_shared_in_a_process(tmp_path: Path) -> None:
    path = str(tmp_path / "a" / "s.journal")
    journal = open_storage(path)
    assert isinstance(journal, optuna.storages.JournalStorage) and journal is open_storage(path)
    assert isinstance(open_storage(f"sqlite:///{tmp_path}/s.db"), optuna.storages.RDBStorage)


@pytest.mark.parametrize(("spec", "message"), [
    ("study.db", "expected a database URL"),
    ("postgresql://nobody@127.0.0.1:9/none", "cannot open Optuna storage"),
])
def test_a_bad_storage_is_one_line_naming_the_key(spec: str, message: str) -> None:
    with pytest.raises(SweepError, match=f"^hydra.sweeper.storage: .*{message}") as raised:
        open_storage(spec, "hydra.sweeper.storage")
    assert "\n" not in str(raised.value)


def test_the_read_tools_never_create_a_study_or_a_file(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match="--storage: no journal file"):
        load_study(str(tmp_path / "none.journal"), "s")
    assert not (tmp_path / "none.journal").exists()
    optuna.create_study(study_name="s", storage=open_storage(str(tmp_path / "x.journal")))
    with pytest.raises(SweepError, match="--study: no study 'other'"):
        load_study(str(tmp_path / "x.journal"), "other")
