"""The CLI as the docs and messages describe it: every `curation ...` command they name exists with the
options named after it, the README's claims hold, and choice options are typer choices shown in --help."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from curation.cli import app

ROOT = Path(__file__).resolve().parents[1]
SPAN = re.compile(r"(`+)(.+?)\1", re.S)  # inline code, also ``rst`` in docstrings
FENCE = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", re.S | re.M)
PLACEHOLDER = re.compile(r"^([A-Z][A-Z_]*|\{.*\}|<.*>|\[.*\]|\.\.\.)$")  # VERSION, {dataset}, <file>, ...
NUMBER = re.compile(r"^-\d")
# Commands that print no result, with why; the README names the same ones.
WITHOUT_JSON = {
    "stage": "a DVC stage: writes the stage's outputs for dvc.yaml, prints nothing",
    "serve": "serves the Prefect deployments until Ctrl-C",
    "ui": "runs the Prefect server and the MLflow UI until Ctrl-C",
    "stack": "runs the MLflow, Prefect and Dask servers until Ctrl-C",
}


def sources() -> list[Path]:
    """Where commands are named: the library's and the flows' messages and docstrings, the docs, the README."""
    return sorted(
        [*ROOT.glob("curation/**/*.py"), *ROOT.glob("flows/**/*.py"), *ROOT.glob("docs/*.md"), ROOT / "README.md"]
    )


def command_lines(text: str) -> list[tuple[int, str]]:
    """(line number, text) of every piece of code in ``text``: each line of a fenced block (its ``# comment``
    searched for inline code too) and each inline code span."""
    found = []
    for block in FENCE.finditer(text):
        first = text.count("\n", 0, block.start(1)) + 1
        for i, line in enumerate(block.group(1).splitlines()):
            code, _, comment = line.partition(" #")
            found.append((first + i, code))
            found += [(first + i, span.group(2)) for span in SPAN.finditer(comment)]
    rest = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)  # keep line numbers
    found += [(rest.count("\n", 0, m.start()) + 1, m.group(2).replace("\n", " ")) for m in SPAN.finditer(rest)]
    return found


def invocations(code: str) -> list[list[str]]:
    """The arguments of each `curation` invocation in a line of code (``a && curation x; VAR=1 curation y``)."""
    calls = []
    for segment in re.split(r"&&|\|\||[;|]", code):
        tokens = segment.split()
        for i, token in enumerate(tokens):
            if token == "curation" or token.endswith("/curation"):
                before = tokens[:i]
                if all("=" in t for t in before) or before[-1:] == ["-m"]:  # VAR=1 curation, python -m curation
                    calls.append(tokens[i + 1 :])
                break
    return calls


def is_group(command) -> bool:
    """A group of subcommands (typer vendors its own click: its classes are not click's)."""
    return hasattr(command, "commands")


def problem(command: Any, args: list[str]) -> str | None:
    """What is wrong with ``curation <args>``: a subcommand or an option that does not exist; None if nothing."""
    path = ["curation"]
    for arg in args:
        if NUMBER.match(arg) or arg == "-":
            continue
        if arg.startswith("-"):
            name = arg.split("=", 1)[0]
            known = {"--help"} | {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
            if name not in known:
                return f"`{' '.join(path)}` has no option {name}"
        elif is_group(command):
            if arg in command.commands:
                command = command.commands[arg]
                path.append(arg)
            elif not PLACEHOLDER.match(arg):
                return f"`{' '.join(path)}` has no command {arg!r} (it has: {', '.join(command.commands)})"
    return None


def check(text: str, root: Any) -> list[tuple[int, str, str]]:
    """(line, command, problem) for every named command that does not exist as written."""
    return [
        (line, "curation " + " ".join(args), why)
        for line, code in command_lines(text)
        for args in invocations(code)
        if (why := problem(root, args))
    ]


@pytest.fixture(scope="module")
def root() -> Any:
    return typer.main.get_command(app)


def named_commands(root) -> dict[str, list[str]]:
    """Every named command's path (e.g. 'scores ls'), with where it is named."""
    paths: dict[str, list[str]] = {}
    for path in sources():
        for line, code in command_lines(path.read_text()):
            for args in invocations(code):
                command, words = root, []
                for arg in args:
                    if not is_group(command) or arg not in command.commands:
                        break
                    command, words = command.commands[arg], [*words, arg]
                paths.setdefault(" ".join(words), []).append(f"{path.relative_to(ROOT)}:{line}")
    return paths


def test_every_command_a_message_or_doc_names_exists_with_its_options(root):
    problems = [
        f"{path.relative_to(ROOT)}:{line}: {command}: {why}"
        for path in sources()
        for line, command, why in check(path.read_text(), root)
    ]
    assert not problems, "\n".join(problems)


def test_the_collector_sees_the_commands_the_docs_and_messages_name(root):
    named = named_commands(root)
    assert sum(map(len, named.values())) >= 60
    # the lists the error messages point at, and the README's tour
    assert {
        "scores ls",
        "plans ls",
        "data ls",
        "data add",
        "select",
        "score",
        "train",
        "compare",
        "retrain",
        "stage",
        "serve",
        "init",
        "methods",
    } <= set(named), sorted(named)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("see `curation scores lss`", "has no command 'lss'"),
        ('raise CurationError("x", "list them with `curation plan ls`")', "has no command 'plan'"),
        (
            "```bash\n.venv/bin/curation train mnist1d --epoch 3   # `curation data ls` is fine\n```",
            "no option --epoch",
        ),
        ("`curation init && curation data add mnist1d --sample 5`", "no option --sample"),
        ("``curation retrain stream --t 8``", "no option --t"),
        ("`python -m curation runs ls --state FAILED`", "no option --state"),
    ],
)
def test_the_check_catches_a_wrong_name(root, text, expected):
    [(_, _, why)] = check(text, root)
    assert expected in why


@pytest.mark.parametrize(
    "text",
    [
        "`curation data ls`",
        "`curation select VERSION -m NAME --budget 0.1 -p key=value`",
        "``curation.reports``",
        "`pip install curation`",
        "`curation`",
        'f"`curation retrain {dataset} --lineage {lineage}`"',
        "```bash\ncuration train mnist1d --plan 3 --seed -1   # a stored plan (`curation select`)\n```",
    ],
)
def test_the_check_passes_what_exists(root, text):
    assert check(text, root) == []


def leaf_commands(command: Any, path: tuple[str, ...] = ()) -> dict[str, Any]:
    if is_group(command):
        return {k: v for name, sub in command.commands.items() for k, v in leaf_commands(sub, (*path, name)).items()}
    return {" ".join(path): command}


def test_every_command_that_prints_a_result_takes_json_as_the_readme_says(root):
    without = {
        name
        for name, command in leaf_commands(root).items()
        if "--json" not in {o for p in command.params for o in p.opts}
    }
    assert without == set(WITHOUT_JSON)
    readme = " ".join((ROOT / "README.md").read_text().split())
    claim = re.search(r"Every command that prints a result takes `--json`[^.]*\.", readme)
    assert claim, "the README's --json claim changed: update this test with it"
    assert set(re.findall(r"`([a-z]+)`", claim.group(0))) == set(WITHOUT_JSON)


def test_train_help_lists_every_registered_architecture():
    from models import names

    assert "resnet1d" in names()
    for command in ("train", "score", "compare", "retrain"):
        result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0
        assert all(name in result.stdout for name in names()), (command, result.stdout)


CHOICES = [  # option, a command line that reaches it, a bad value, the choices its --help shows
    ("--engine", ["select", "x"], "spark", ["local", "dask"]),
    ("--device", ["train", "x"], "tpu", ["auto", "cpu", "cuda"]),
    ("--amp", ["train", "x"], "fp8", ["bf16", "fp16", "off"]),
    ("--device", ["score", "x"], "tpu", ["auto", "cpu", "cuda"]),
    ("--device", ["retrain", "x"], "tpu", ["auto", "cpu", "cuda"]),
    ("--mode", ["retrain", "x"], "often", ["proactive", "full", "periodic"]),
    ("--strategy", ["retrain", "x"], "newest", ["uniform", "window", "time"]),
    ("--ship", ["retrain", "x"], "often", ["batch", "model"]),
    ("--status", ["runs", "ls"], "done", ["running", "finished", "failed"]),
]


@pytest.mark.parametrize("option, args, bad, choices", CHOICES)
def test_choice_options_show_their_choices_and_reject_others_in_one_line(option, args, bad, choices):
    command = [a for a in args if a != "x"]
    shown = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert f"<{'|'.join(choices)}>" in shown.stdout, shown.stdout
    result = CliRunner().invoke(app, [*args, option, bad], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "Traceback" not in result.output
    [line] = result.stderr.strip().splitlines()
    assert f"Invalid value for '{option}'" in line and f"'{bad}' is not one of" in line, line
    assert line.endswith(f" {' '.join(command)} --help`"), line  # names the help to read


@pytest.mark.parametrize(
    "args, problem",
    [
        (["nosuch"], "No such command 'nosuch'"),
        (["train"], "Missing argument 'version'"),
        (["runs", "show"], "Missing argument 'run'"),
        (["select", "v", "--bogus", "1"], "No such option: --bogus"),
    ],
)
def test_usage_errors_are_one_line_with_exit_code_2(args, problem):
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "Traceback" not in result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {problem}") and "--help`" in line, line


ID_OPTIONS = {  # an option that takes a catalog id -> the list its help points to
    ("select", "--score-set"): "scores ls",
    ("train", "--plan"): "plans ls",
    ("train", "--baseline"): "runs ls",
    ("score", "--model"): "models ls",
    ("compare", "--baseline"): "runs ls",
    ("compare", "--score-set"): "scores ls",
}


def test_every_id_an_option_takes_can_be_listed(root):
    for (command, option), ls in ID_OPTIONS.items():
        [param] = [p for p in root.commands[command].params if option in p.opts]
        assert f"`curation {ls}`" in param.help, (command, option, param.help)
        assert problem(root, ls.split()) is None
