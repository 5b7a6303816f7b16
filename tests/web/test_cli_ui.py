"""``caliper ui``: loopback by default; any other address only with a token."""

from __future__ import annotations

import pytest

from modelcaliper.cli.main import main
from modelcaliper.cli.ui import check_binding
from modelcaliper.errors import UsageError


@pytest.mark.parametrize("host, token, refused", [
    ("127.0.0.1", None, False),          # the default
    ("localhost", None, False),
    ("::1", None, False),
    ("0.0.0.0", None, True),             # every interface, no token
    ("192.0.2.10", None, True),          # one public interface, no token
    ("0.0.0.0", "long-enough-token", False),
    ("0.0.0.0", "short", True),          # a token too short to mean anything
])
def test_check_binding(host, token, refused):
    if refused:
        with pytest.raises(UsageError):
            check_binding(host, token)
    else:
        check_binding(host, token)


def test_binding_everything_without_a_token_is_a_usage_error(seeded_db, capsys, monkeypatch):
    monkeypatch.delenv("CALIPER_UI_TOKEN", raising=False)
    assert main(["ui", "--host", "0.0.0.0", "--store", str(seeded_db)]) == 2
    assert "give --token or set CALIPER_UI_TOKEN" in capsys.readouterr().err


def test_a_missing_database_is_a_usage_error(tmp_path, capsys):
    assert main(["ui", "--store", str(tmp_path / "none.db")]) == 2
    assert "no run database" in capsys.readouterr().err
