"""``mfm tag`` / ``mfm note`` and ``mfm runs --tag`` on a real SQLite file."""

from __future__ import annotations

import pytest

from mfm.cli.main import main
from mfm.store import Database, repo


def call(argv, capsys):
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def db_file(tmp_path, cli_env):
    path = tmp_path / "e.db"
    with Database(str(path)) as db:
        for i in range(3):
            repo.create_run(db, config={"method": {"name": "ce"}}, epochs_total=1, name=f"r{i}")
    return path


def test_tag_add_remove_list_and_filter(db_file, capsys):
    d = ["--db", str(db_file)]
    assert call(["tag", "1", "2", "--add", "baseline", "--add", "if100", *d], capsys)[0] == 0
    code, out, _ = call(["tag", "2", "--remove", "if100", *d], capsys)
    assert code == 0 and out.strip() == "run 2: baseline"
    code, out, _ = call(["runs", "--tag", "if100", "--json", *d], capsys)
    import json
    rows = json.loads(out)
    assert [r["id"] for r in rows] == [1] and rows[0]["tags"] == ["baseline", "if100"]
    code, out, _ = call(["tag", "3", *d], capsys)
    assert out.strip() == "run 3: (no tags)"


def test_note_set_show_clear(db_file, capsys, monkeypatch):
    d = ["--db", str(db_file)]
    assert call(["note", "1", "first line\nsecond", *d], capsys)[0] == 0
    code, out, _ = call(["show", "1", *d], capsys)
    assert "note: first line / second" in out
    import io
    monkeypatch.setattr("sys.stdin", io.StringIO("from stdin\n"))
    call(["note", "1", "-", *d], capsys)
    assert call(["note", "1", *d], capsys)[1].strip() == "from stdin"
    call(["note", "1", "--clear", *d], capsys)
    with Database(str(db_file)) as db:
        assert repo.get_run(db, 1).note is None


@pytest.mark.parametrize("argv, needle", [
    (["tag", "1", "--add", "two words"], "--add: no spaces"),
    (["tag", "1", "--add", "x" * 65], "--add: 1 to 64"),
    (["tag", "9", "--add", "ok"], "no run 9"),
    (["tag", "1", "9", "--add", "ok"], "no run 9"),
    (["note", "9", "x"], "no run 9"),
    (["note", "1", "x" * 10_001], "at most 10000"),
])
def test_bad_tags_and_notes_change_nothing(db_file, capsys, argv, needle):
    code, out, err = call([*argv, "--db", str(db_file)], capsys)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], err
    with Database(str(db_file)) as db:
        assert all(r.tags == () and r.note is None for r in repo.list_runs(db))
