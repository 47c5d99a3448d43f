"""A database password never shows: every command's output and the TUI's status bar mask it,
and the usual ways to keep it out of the URL work (PGPASSWORD, a .pgpass file, MFM_DB_FILE
readable by its owner only). The PostgreSQL cases run against the real server ``.ci/run``
starts (a role with a password); they skip without one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from mfm.cli.main import cli
from mfm.store import Database

SECRET = "mfm-right-password"


@pytest.fixture
def pw_url(pg_new_database, _pg_admin) -> str:
    """A fresh database owned by the password role, as a URL with its password."""
    from sqlalchemy import make_url, text

    auth = os.environ.get("MFM_TEST_PG_AUTH_URL")
    if not auth:
        pytest.skip("needs MFM_TEST_PG_AUTH_URL (.ci/pg-start.sh sets it)")
    name = make_url(pg_new_database()).database
    with _pg_admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{name}" OWNER TO mfm_pw'))
    url = make_url(auth).set(database=name).render_as_string(hide_password=False)
    assert SECRET in url
    return url


def mfm(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env)


TINY = ["--set", "model.name=resnet_tiny", "--set", "train.epochs=1", "--set", "device=cpu"]


@pytest.mark.postgres
def test_no_command_shows_the_password(pw_url, cli_env, tmp_path):
    said = []
    for args in (["db", "current"], ["db", "upgrade"], ["runs"], ["sweep", "list"],
                 ["show", "99"], ["run", "--headless", *TINY], ["runs"], ["show", "1"],
                 ["logs", "1"], ["worker", "status"], ["resume", "1"], ["cancel", "1"]):
        res = mfm("--db", pw_url, *args)
        said.append(res.output)
        assert SECRET not in res.output, (args, res.output)
    text = "\n".join(said)
    assert "mfm_pw:***@" in text  # the URL is shown, masked
    res = mfm("runs", env={"MFM_DB": pw_url})
    assert res.exit_code == 0 and SECRET not in res.output


@pytest.mark.postgres
def test_pgpassword_and_a_pgpass_file_keep_it_out_of_the_url(pw_url, cli_env, tmp_path):
    from sqlalchemy import make_url

    bare = make_url(pw_url)._replace(password=None).render_as_string(hide_password=False)
    assert SECRET not in bare
    res = mfm("--db", bare, "runs", env={"PGPASSWORD": "", "PGPASSFILE": "/nonexistent"})
    assert res.exit_code != 0  # no password: refused by the server, in one line
    res = mfm("--db", bare, "runs", env={"PGPASSWORD": SECRET})
    assert res.exit_code == 0, res.output
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"*:*:*:mfm_pw:{SECRET}\n")
    pgpass.chmod(0o600)
    res = mfm("--db", bare, "runs", env={"PGPASSWORD": "", "PGPASSFILE": str(pgpass)})
    assert res.exit_code == 0, res.output


def test_mfm_db_file_is_read_when_only_its_owner_may_read_it(cli_env, tmp_path):
    db_file = tmp_path / "records.db"
    with Database(str(db_file)):
        pass
    holder = tmp_path / "db-url"
    holder.write_text(f"# the lab's records\n{db_file}\n")
    holder.chmod(0o600)
    res = mfm("runs", env={"MFM_DB": "", "MFM_DB_FILE": str(holder)})
    assert res.exit_code == 0, res.output
    assert str(db_file) in res.output  # the title names the records it read
    holder.chmod(0o644)
    res = mfm("runs", env={"MFM_DB": "", "MFM_DB_FILE": str(holder)})
    assert res.exit_code == 2
    assert res.output.strip() == (f"error: MFM_DB_FILE: {holder} can be read by others (mode "
                                  f"0644); chmod 600 {holder}")


def test_the_tui_status_bar_masks_the_password():
    from mfm_tui.services import Services

    services = Services(f"postgresql+psycopg://mfm_pw:{SECRET}@db.lab:5432/mfm")
    assert services.display == "postgresql+psycopg://mfm_pw:***@db.lab:5432/mfm"


def test_mfm_tui_reads_mfm_db_file_by_the_same_rule(tmp_path):
    import subprocess
    import sys

    holder = tmp_path / "db-url"
    holder.write_text(str(tmp_path / "x.db") + "\n")
    holder.chmod(0o640)
    env = {k: v for k, v in os.environ.items() if k != "MFM_DB"}
    res = subprocess.run([sys.executable, "-m", "mfm_tui"], capture_output=True, text=True,
                         timeout=60, env=dict(env, MFM_DB_FILE=str(holder)), cwd=tmp_path)
    assert res.returncode == 1
    assert res.stderr.strip() == (f"error: MFM_DB_FILE: {holder} can be read by others (mode "
                                  f"0640); chmod 600 {holder}")
    assert not Path(tmp_path / "x.db").exists()
