"""The README runs as written: its Python blocks execute, and every `tess` command it
shows names a real command with real options (parsed by the CLI itself, not run)."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer

try:  # typer >= 0.24 vendors its own click
    from typer._click import ClickException, Context
except ImportError:
    from click import ClickException, Context

from tess_keras.cli.main import app

README = Path(__file__).resolve().parent.parent / "README.md"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
SEPARATORS = {"&&", "||", ";", "|"}


def blocks(language):
    return [body for lang, body in FENCE.findall(README.read_text()) if lang == language]


def prose():
    """The README without its fenced blocks."""
    return FENCE.sub("", README.read_text())


def shell_commands(script):
    """Each `tess ...` command of a shell block, as an argument list."""
    script = script.replace("\\\n", " ")
    commands = []
    for line in script.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        current = []
        for token in list(lexer) + [";"]:
            if token in SEPARATORS:
                if current[:1] == ["tess"]:
                    commands.append(current[1:])
                current = []
            else:
                current.append(token)
    return commands


def inline_commands():
    """Each `tess ...` code span of the prose, as tokens (placeholders such as RUN_DIR kept)."""
    return [span.split()[1:] for span in re.findall(r"`(tess [^`]+)`", prose())]


CLI = typer.main.get_command(app)


def command(name):
    found = CLI.commands.get(name)
    assert found is not None, f"the README shows `tess {name}`, which is no command ({', '.join(CLI.commands)})"
    return found


def option_names(cmd):
    names = set()
    for param in cmd.params:
        if param.param_type_name == "option":
            names.update(param.opts + param.secondary_opts)
    return names


def test_readme_shows_commands_and_code():
    assert len(blocks("python")) >= 1
    assert len([c for b in blocks("bash") for c in shell_commands(b)]) >= 10
    assert len(inline_commands()) >= 10


def test_shell_commands_parse_with_the_cli():
    """Every `tess` command in a shell block parses with those arguments (types, ranges,
    arity, required options), as the CLI would parse it before running."""
    for args in (c for b in blocks("bash") for c in shell_commands(b)):
        assert args, "a bare `tess` in a shell block"
        cmd = command(args[0])
        try:
            with Context(CLI, info_name="tess") as parent:
                cmd.make_context(args[0], list(args[1:]), parent=parent)
        except ClickException as error:
            pytest.fail(f"`tess {' '.join(args)}` in README.md does not parse: {error.format_message()}")


def test_inline_commands_name_real_options():
    """`tess ...` in the prose uses placeholders (RUN_DIR, [--board NAME]); the command and
    every option it names must exist."""
    for tokens in inline_commands():
        cmd = command(tokens[0])
        known = option_names(cmd)
        for token in tokens[1:]:
            token = token.strip("[](),.")
            if token.startswith("--"):
                name = token.split("=")[0]
                assert name in known, f"`tess {' '.join(tokens)}` in README.md: {name} is no option of tess {tokens[0]}"


def test_checker_catches_a_wrong_command():
    # The parser above must fail on what a stale README would show.
    bad = shell_commands("tess export --target cortex-m4 --outdir x && tess build --board")
    assert bad == [["export", "--target", "cortex-m4", "--outdir", "x"], ["build", "--board"]]
    for args in bad:
        with pytest.raises(ClickException):
            with Context(CLI, info_name="tess") as parent:
                command(args[0]).make_context(args[0], list(args[1:]), parent=parent)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_block_runs_as_written(index, tmp_path):
    """Each Python block, unchanged, in a fresh interpreter in an empty folder."""
    script = tmp_path / f"readme_block_{index}.py"
    script.write_text(blocks("python")[index])
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=900, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-4000:]
