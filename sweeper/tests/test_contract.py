"""The contract's secrets rule: a password in any URL form a driver accepts is masked, and a job gets it back."""

from __future__ import annotations

import json

import pytest
from hydra_optuna_studies.contract import ENV_SECRETS, masked, reveal, with_secrets


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://user:secret@host:5432/db", "postgresql://user:***@host:5432/db"),
        ("postgresql://u:Ab/Cd+Ef9@127.0.0.1/db", "postgresql://u:***@127.0.0.1/db"),  # '/' in the password
        ("postgresql://u:Ab%2FCd%2BEf9@127.0.0.1/db", "postgresql://u:***@127.0.0.1/db"),  # percent-encoded
        ("postgresql+psycopg://u:p@h/db", "postgresql+psycopg://u:***@h/db"),
        ("mysql+pymysql://root:p4ss@localhost/optuna", "mysql+pymysql://root:***@localhost/optuna"),
        ("postgresql://u@h/db?password=Ab%2FCd&sslmode=disable", "postgresql://u@h/db?password=***&sslmode=disable"),
        ("postgresql://u@h/db?sslmode=disable&PASSWORD=x", "postgresql://u@h/db?sslmode=disable&PASSWORD=***"),
        ("host=db user=u password=s3cr3t dbname=o", "host=db user=u password=*** dbname=o"),  # a libpq DSN
        ("host=db password='a b' port=1", "host=db password=*** port=1"),
        ("http://user:pw@127.0.0.1:5000", "http://user:***@127.0.0.1:5000"),
        ("error: hydra.sweeper.storage=postgresql://u:pw@h/db?sslmode: cannot parse",
         "error: hydra.sweeper.storage=postgresql://u:***@h/db?sslmode: cannot parse"),
        ("a: postgresql://u:x@h/a, b: postgresql://v:y@h/b", "a: postgresql://u:***@h/a, b: postgresql://v:***@h/b"),
    ],
)
def test_every_form_of_password_is_masked(text: str, expected: str) -> None:
    assert masked(text) == expected
    assert masked(masked(text)) == expected


@pytest.mark.parametrize("text", ["sqlite:////abs/path/study.db", "sqlite:///study.db", "http://127.0.0.1:5000/#/x",
                                  "/runs/multirun/s/optuna.journal", "mail me at user@example.com",
                                  "postgresql://user@127.0.0.1:5432/db", "http://host:5000/path with spaces@x"])
def test_text_without_a_password_is_left_as_it_is(text: str) -> None:
    assert masked(text) == text


def test_a_job_reveals_the_values_its_sweep_masked() -> None:
    real = "postgresql://u:Ab/Cd+Ef9@h/db"
    environ = {ENV_SECRETS: with_secrets({}, [real, "http://a:b@c"])}
    assert reveal(masked(real), environ) == real
    assert reveal("postgresql://u:***@other/db", environ) == "postgresql://u:***@other/db"  # not one it was given
    assert reveal("plain", environ) == "plain"
    assert json.loads(with_secrets(environ, [real]))[0] == real  # no value twice
