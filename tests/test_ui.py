"""Servers the tool starts bind to 127.0.0.1 unless told otherwise; `serve` needs a server."""

from typer.testing import CliRunner

from curation.cli import app
from curation.ui import commands, environment


def test_servers_bind_to_loopback_by_default(settings):
    for name, command in commands(settings).items():
        assert command[command.index("--host") + 1] == "127.0.0.1", name
    assert "--backend-store-uri" in commands(settings)["mlflow"]


def test_the_prefect_ui_calls_the_api_of_its_own_port():
    env = environment("127.0.0.1", 4311)
    assert env["PREFECT_UI_API_URL"] == "http://127.0.0.1:4311/api"
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"


def test_serve_without_a_server_is_a_one_line_error(settings, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2 and "PREFECT_API_URL is not set" in result.stderr
