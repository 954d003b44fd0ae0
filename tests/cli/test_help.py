"""The wording of the CLI (#32.10, #32.8): every command's --help, what `cache info` says of a folder that is no
cache, the columns of `cache compare` explained in its help, the shipped sweep spaces named in `--space`."""

from __future__ import annotations

import pytest
from conftest import assert_user_error, run_cli


def help_text(*path: str) -> str:
    """A command's --help as one line of words (box drawing and line breaks removed)."""
    r = run_cli(*path, "--help")
    assert r.exit_code == 0, r.stderr
    return " ".join(r.stdout.translate({ord(c): " " for c in "│╭╮╰╯─"}).split())


def commands() -> list[list[str]]:
    """Every command path of the app (`pretrain`, `cache info`, `sweep teachers`, ...)."""
    import typer.main

    from bl2.cli import app

    out = []

    def walk(cmd, path):
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, [*path, name])
        else:
            out.append(path)

    walk(typer.main.get_command(app), [])
    return out


@pytest.mark.parametrize("path", commands(), ids=" ".join)
def test_help_has_no_bool_metavar(path):
    r = run_cli(*path, "--help")
    assert r.exit_code == 0, r.stderr
    assert "<bool>" not in r.stdout and "BOOLEAN" not in r.stdout, r.stdout


def test_cache_compare_help_explains_every_column():
    text = help_text("cache", "compare")
    for column in ("mass mean / p10", "mass stored", "kl_bucket", "kl_flat_tail", "kl_rev", "grad_err"):
        assert column in text, column


def test_sweep_space_help_names_the_shipped_spaces():
    text = help_text("sweep", "teachers")
    assert "by name: teacher" in text and "student" in text


def test_cache_info_says_what_a_folder_is(tmp_path, data_dir, debug_model_dir):
    assert_user_error(run_cli("cache", "info", data_dir), "is a DATA dir (from `bl2 prepare`), not a cache")
    assert_user_error(run_cli("cache", "verify", debug_model_dir), "is a model/run dir, not a cache")
    (tmp_path / "folder").mkdir()
    assert_user_error(run_cli("cache", "info", tmp_path / "folder"), "folder without zarr.json: not a cache")
    assert_user_error(run_cli("cache", "info", tmp_path / "nothing.zarr"), "cache not found")


def test_cache_format_doc_names_rows_not_windows_per_offset():
    """Arrays have n_windows rows (N alignments x W windows), not W: the doc says R = n_windows."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "cache-format.md").read_text()
    assert "[W, " not in doc and "R = n_windows = N*W" in doc
