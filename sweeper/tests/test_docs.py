"""The sweeper docs' examples run as written: the app config of docs/sweeper/index.md, on a foreign app."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweeper.tests.helpers import fresh_storage, run_app
from sweeper.tests.servers import ROOT

pytestmark = pytest.mark.slow


def test_the_app_config_example_sweeps(tmp_path: Path) -> None:
    page = (ROOT / "docs" / "sweeper" / "index.md").read_text()
    example = page.split("# or in the app's config\n", 1)[1].split("```", 1)[0]
    (tmp_path / "config.yaml").write_text(example + "x: 1\ny: 1\nz: 1\nerror: false\n")
    result = run_app("sphere", f"--config-dir={tmp_path}", "--config-name=config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    trials = optuna.load_study(study_name="sphere", storage=fresh_storage(str(tmp_path / "sweep" / "optuna.journal")))
    assert len(trials.trials) == 20 and {t.state for t in trials.trials} == {TrialState.COMPLETE}
    assert {t.params["y"] for t in trials.trials} <= {-5, 0, 5}
