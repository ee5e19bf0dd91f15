"""Every command line the READMEs show runs, at least as far as its ``--help`` (issue 25): no drift.

The commands are read from README.md and infra/README.md: each line of a fenced shell block, and each inline
code span that starts with a known program. Every one gets the cheapest real check of its kind:

- ``serendipity ...``: the Typer app's own command for that subcommand path shows its help, takes every option
  the line uses, and the files it names exist (``--config`` loads, with its ``--set`` keys);
  ``serendipity pipeline stages`` runs for real;
- ``python -m MODULE``, ``python SCRIPT``, ``ray``, ``serve``, ``feast``, ``hf``: the module, script or
  console script's entry point runs with ``--help`` (all in one helper process, so the imports are paid
  once) and its help names every option the line uses;
- ``make TARGET``: ``make -n TARGET``, and each ``serendipity`` line of its recipe is checked as above;
- ``infra/spark/submit.sh JOB``: ``bash -n``, its ``--help``, and JOB among the jobs it lists;
  ``spark-submit`` of a job file must ship the packages (``--py-files``);
- ``curl``: the route exists and the JSON body is a valid request; ``kubectl``, ``docker``, ``envsubst``,
  ``yq``: the files they name exist, then the test is skipped, saying why.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from serendipity.config import load_config

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DOCUMENTS = ("README.md", "infra/README.md")
SHELL_FENCES = ("bash", "sh", "shell", "console")
PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9_]*")  # NAME, C, DIR, WORK_DIR: a value the reader fills in
SEPARATORS = ("|", "||", "&&", ";")
REPO_PATH = re.compile(r"(configs|infra|serving|features|spark_jobs|ray_jobs|bench|devtools|docs)/\S+")
# Console scripts the project installs, run through their entry points (python -m and scripts likewise).
ENTRY_POINT_PROGRAMS = ("ray", "serve", "feast", "hf")
# Programs that need a cluster, a registry or a running endpoint: their files are checked, the run is skipped.
EXTERNAL = {
    "kubectl": "needs a Kubernetes cluster",
    "docker": "needs a Docker daemon and a registry",
    "envsubst": "renders a manifest for kubectl",
    "yq": "selects a manifest for kubectl",
    "curl": "needs a running endpoint (tests/integration covers the live API)",
}
RETIRED = {"huggingface-cli": "deprecated in the installed huggingface_hub: use `hf download`"}
PROGRAMS = (
    "serendipity",
    "python",
    ".venv/bin/python",
    "make",
    "infra/spark/submit.sh",
    "spark-submit",
    *ENTRY_POINT_PROGRAMS,
    *EXTERNAL,
    *RETIRED,
)
REAL_RUNS = {("pipeline", "stages")}  # cheap enough to run for real
Helps = dict[tuple[str, ...], tuple[object, str]]  # a helper run: its exit code and output


@dataclass(frozen=True)
class Shown:
    """One command as a README shows it: where, its text, its words (environment, redirections apart)."""

    where: str
    text: str
    argv: tuple[str, ...]
    inputs: tuple[str, ...] = ()  # files redirected in with <

    @property
    def program(self) -> str:
        return self.argv[0]


def _segments(text: str) -> Iterator[tuple[tuple[str, ...], tuple[str, ...]]]:
    """The simple commands of a shell line: (words, input files), leading VAR=value assignments dropped."""
    words = shlex.split(text, comments=True)
    for is_separator, group in itertools.groupby(words, key=lambda word: word in SEPARATORS):
        if is_separator:
            continue
        argv, inputs, tokens = [], [], iter(group)
        for token in tokens:
            if token == "<":
                inputs.append(next(tokens))
            elif token in (">", ">>", "2>"):
                next(tokens, None)  # an output file: nothing to check
            elif not argv and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", token):
                continue
            else:
                argv.append(token)
        if argv:
            yield tuple(argv), tuple(inputs)


def shown_commands(document: str) -> list[Shown]:
    """Every command of a fenced shell block, and every inline code span that starts with a known program."""
    found: list[Shown] = []
    fence: str | None = None
    pending = ""
    for number, line in enumerate((REPO / document).read_text().splitlines(), start=1):
        if line.lstrip().startswith("```"):
            fence = None if fence is not None else (line.strip()[3:].strip() or "text")
            continue
        if fence in SHELL_FENCES:
            pending += line.rstrip()
            if pending.endswith("\\"):
                pending = pending[:-1] + " "
                continue
            text, pending = pending.strip(), ""
            found += [Shown(f"{document}:{number}", text, argv, inputs) for argv, inputs in _segments(text)]
        elif fence is None:
            for span in re.findall(r"`([^`]+)`", line):
                try:
                    segments = list(_segments(span))
                except ValueError:  # not shell (unbalanced quotes)
                    continue
                found += [
                    Shown(f"{document}:{number}", span, argv, inputs)
                    for argv, inputs in segments
                    if argv[0] in PROGRAMS
                ]
    return found


def variants(argv: tuple[str, ...]) -> list[tuple[str, ...]]:
    """``a|b|c`` alternatives expanded, ``[optional]`` brackets dropped (the options inside are checked)."""
    words = [word.strip("[]") for word in argv if word.strip("[]")]
    choices = [word.split("|") if "|" in word and not word.startswith("-") else [word] for word in words]
    return [tuple(chosen) for chosen in itertools.product(*choices)]


def is_placeholder(word: str) -> bool:
    """A value the reader fills in: ``NAME``, ``bench.NAME``, ``DIR``, ``...``."""
    parts = [part for part in re.split(r"[./]", word) if part]
    return not parts or any(PLACEHOLDER.fullmatch(part) for part in parts)


def options_used(words: tuple[str, ...]) -> list[str]:
    return [word.split("=", 1)[0] for word in words if word.startswith("-") and word not in ("-", "--")]


COMMANDS = [shown for document in DOCUMENTS for shown in shown_commands(document)]


# --- what each kind needs from the helper process ---------------------------------------------------------


def _python_target(argv: tuple[str, ...]) -> tuple[str, str, tuple[str, ...]] | None:
    """``("module", NAME, rest)`` or ``("script", PATH, rest)`` of a python command line."""
    if len(argv) > 2 and argv[1] == "-m":
        return "module", argv[2], argv[3:]
    if len(argv) > 1 and argv[1].endswith(".py"):
        return "script", argv[1], argv[2:]
    return None


def _subcommand(words: tuple[str, ...]) -> tuple[str, ...]:
    """The leading words that name a subcommand (up to the first option, path or value)."""
    path = []
    for word in words:
        if word.startswith("-") or "/" in word or "." in word or is_placeholder(word):
            break
        path.append(word)
    return tuple(path)


def _leading_options(words: tuple[str, ...]) -> tuple[str, ...]:
    """Group options before the subcommand, with their values (``feast -c features``)."""
    taken: list[str] = []
    rest = list(words)
    while rest and rest[0].startswith("-"):
        taken.append(rest.pop(0))
        if rest and not rest[0].startswith("-"):
            taken.append(rest.pop(0))
    return tuple(taken)


def serendipity_command(argv: tuple[str, ...]) -> tuple[Any, tuple[str, ...], tuple[str, ...]]:
    """The Typer app's command a ``serendipity`` line names, its subcommand path and the remaining words."""
    from serendipity.app.cli import app

    node = typer.main.get_command(app)  # typer's own (vendored) click objects
    words = list(argv[1:])
    path: list[str] = []
    while getattr(node, "commands", None) and words:
        if words[0] in node.commands:
            path.append(words.pop(0))
            node = node.commands[path[-1]]
            continue
        group_option = next((param for param in node.params if words[0] in param.opts), None)
        if group_option is None:  # e.g. the CLI's --log-format before the command name
            break
        words.pop(0)
        if not group_option.is_flag and words:
            words.pop(0)
    return node, tuple(path), tuple(words)


@functools.cache
def make_recipe(target: str) -> tuple[int, str, str]:
    """``make -n TARGET``: exit code, the commands it would run, stderr."""
    dry = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True, timeout=60)
    return dry.returncode, dry.stdout, dry.stderr


def recipe_commands(target: str) -> list[tuple[str, ...]]:
    """The ``serendipity`` commands of a make target's recipe."""
    prefix = ".venv/bin/serendipity "
    lines = make_recipe(target)[1].splitlines()
    return [("serendipity", *shlex.split(line)[1:]) for line in lines if line.startswith(prefix)]


def helper_calls(argv: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The runs the helper process makes for one command line (nested command lines included)."""
    program = Path(argv[0]).name
    if program == "serendipity" and len(argv) > 1:
        _, path, _ = serendipity_command(argv)
        real = [("entry_point", "serendipity", *path)] if path in REAL_RUNS else []
        return [("entry_point", "serendipity", *path, "--help"), *real]
    if program == "make":
        inner = [command for target in argv[1:] for command in recipe_commands(target)]
        return [call for command in inner for call in helper_calls(command)]
    if program == "python":
        target = _python_target(argv)
        if target is None or is_placeholder(target[1]):
            return []
        return [(target[0], target[1], "--help")]
    if program in ENTRY_POINT_PROGRAMS:
        words = argv[1:]
        outer = words[: words.index("--")] if "--" in words else words
        group = _leading_options(outer) if program == "feast" else ()
        calls = [("entry_point", program, *group, *_subcommand(outer[len(group) :]), "--help")]
        if "--" in words:
            calls += helper_calls(words[words.index("--") + 1 :])
        return calls
    return []


# The helper process: runs each call with --help, its stdout and stderr captured at the descriptor (rich,
# click and argparse all write there), and writes {call: [exit code, output]} as JSON.
HELPER = r"""
import json, os, runpy, sys, tempfile
from importlib.metadata import entry_points

def run(kind, target, *args):
    sys.argv = [target, *args]
    if kind == "module":
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    elif kind == "script":
        sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
        runpy.run_path(target, run_name="__main__")
    else:
        (entry,) = entry_points(group="console_scripts", name=target)
        entry.load()()
    return 0

calls, out_path = json.loads(sys.argv[1]), sys.argv[2]
results = {}
for call in calls:
    with tempfile.TemporaryFile() as sink:
        sys.stdout.flush(); sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(sink.fileno(), 1); os.dup2(sink.fileno(), 2)
        try:
            code = run(*call)
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        except BaseException as error:
            print(f"{type(error).__name__}: {error}")
            code = "raised"
        finally:
            sys.stdout.flush(); sys.stderr.flush()
            os.dup2(saved[0], 1); os.dup2(saved[1], 2)
        sink.seek(0)
        results[json.dumps(call)] = [code, sink.read().decode(errors="replace")]
with open(out_path, "w") as out:
    json.dump(results, out)
"""


@pytest.fixture(scope="module")
def helps(tmp_path_factory: pytest.TempPathFactory) -> Helps:
    """Every ``--help`` the commands need, run once in one helper process from the repository root."""
    calls = sorted(
        {call for shown in COMMANDS for argv in variants(shown.argv) for call in helper_calls(argv)}
    )
    out = tmp_path_factory.mktemp("helps") / "helps.json"
    env = {"COLUMNS": "200", "TERM": "dumb", "NO_COLOR": "1", "PATH": f"{BIN}:/usr/bin:/bin"}
    subprocess.run(
        [sys.executable, "-c", HELPER, json.dumps(calls), str(out)],
        cwd=REPO,
        env={**os.environ, **env},
        check=True,
        timeout=300,
        stdout=subprocess.DEVNULL,
    )
    return {
        tuple(json.loads(call)): (code, text) for call, (code, text) in json.loads(out.read_text()).items()
    }


# --- the checks ---------------------------------------------------------------------------------------------


def check_files(words: tuple[str, ...], inputs: tuple[str, ...] = ()) -> None:
    """Files of the repository a command names exist; ``--config`` loads (with its ``--set`` keys)."""
    for word in (*words, *inputs):
        for candidate in word.split("="):
            if REPO_PATH.fullmatch(candidate) and not is_placeholder(candidate):
                assert (REPO / candidate).exists(), f"{candidate} does not exist"
    for option, value in zip(words, words[1:], strict=False):
        if option == "--config" and not is_placeholder(value):
            overrides = {
                key: yaml.safe_load(setting)
                for flag, pair in zip(words, words[1:], strict=False)
                if flag == "--set"
                for key, setting in [pair.split("=", 1)]
            }
            load_config(REPO / value, overrides)


def help_of(helps: Helps, call: tuple[str, ...]) -> str:
    code, text = helps[call]
    assert code == 0, f"{' '.join(call)} exited {code}:\n{text[-2000:]}"
    return text


def assert_options_in_help(options: list[str], text: str, what: str) -> None:
    missing = [
        option for option in options if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text)
    ]
    assert missing == [], f"{what} does not take {missing}"


def check_serendipity(argv: tuple[str, ...], helps: Helps) -> None:
    assert (BIN / "serendipity").is_file()
    if len(argv) == 1:  # the program named in prose
        return
    node, path, words = serendipity_command(argv)
    assert path, f"{' '.join(argv)}: no such serendipity command"
    help_of(helps, ("entry_point", "serendipity", *path, "--help"))
    accepted = {name for param in node.params for name in (*param.opts, *param.secondary_opts)}
    unknown = [option for option in options_used(words) if option not in accepted]
    assert unknown == [], f"serendipity {' '.join(path)} does not take {unknown}"
    check_files(words)
    if path in REAL_RUNS:
        help_of(helps, ("entry_point", "serendipity", *path))


def check_python(argv: tuple[str, ...], helps: Helps) -> None:
    target = _python_target(argv)
    assert target is not None, f"{' '.join(argv)}: neither python -m MODULE nor python SCRIPT.py"
    kind, name, rest = target
    if kind == "script":
        assert (REPO / name).is_file(), f"{name} does not exist"
    if is_placeholder(name):  # python -m bench.NAME: the package is there
        package = name.split(".")[0]
        assert (REPO / package / "__init__.py").is_file(), f"no package {package}"
        return
    text = help_of(helps, (kind, name, "--help"))
    assert "usage" in text.lower(), f"{name} --help printed no usage:\n{text[-2000:]}"
    assert_options_in_help(options_used(rest), text, name)
    check_files(rest)


def check_entry_point(argv: tuple[str, ...], helps: Helps) -> None:
    program = argv[0]
    assert (BIN / program).is_file(), f"{program} is not installed in {BIN}"
    for call in helper_calls(argv):
        if call[0] != "entry_point":
            continue
        text = help_of(helps, call)
        words = argv[1:]
        outer = words[: words.index("--")] if "--" in words else words
        group = _leading_options(outer) if program == "feast" else ()
        assert_options_in_help(options_used(outer[len(group) :]), text, " ".join(call[1:-1]))
    words = argv[1:]
    if "--" in words:
        inner = words[words.index("--") + 1 :]
        check_command(inner, helps)
        check_files(words[: words.index("--")])
    else:
        check_files(words)
    if program == "feast":
        for flag, value in zip(words, words[1:], strict=False):
            if flag in ("-c", "--chdir") and not is_placeholder(value):
                assert (REPO / value / "feature_store.yaml").is_file(), f"{value} is no Feast repository"
            if flag in ("-f", "--feature-store-yaml"):
                assert (REPO / value).is_file(), f"{value} does not exist"
    if program == "serve" and len(words) > 1 and words[0] == "run" and words[1].endswith(".yaml"):
        assert "applications" in yaml.safe_load((REPO / words[1]).read_text()), (
            f"{words[1]} has no applications"
        )


def check_make(argv: tuple[str, ...], helps: Helps) -> None:
    for target in argv[1:]:
        code, _, stderr = make_recipe(target)
        assert code == 0, f"make -n {target}: {stderr}"
        for inner in recipe_commands(target):
            check_serendipity(inner, helps)


def check_submit(argv: tuple[str, ...]) -> None:
    script = REPO / "infra" / "spark" / "submit.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    listed = subprocess.run(
        ["bash", str(script), "--help"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    jobs = re.search(r"JOB is one of: (.*)", listed)
    assert jobs is not None, listed
    if len(argv) > 1 and not is_placeholder(argv[1]):
        assert argv[1] in jobs.group(1).split(), f"no Spark job {argv[1]!r} (submit.sh lists {jobs.group(1)})"
    check_files(argv[2:])


def check_spark_submit(argv: tuple[str, ...]) -> None:
    assert (BIN / "spark-submit").is_file()
    if any(word.endswith(".py") for word in argv[1:]):
        assert "--py-files" in argv, (
            "a bare spark-submit of a job file cannot import serendipity on the executors: "
            "use infra/spark/submit.sh, which ships the packages with --py-files"
        )
    check_files(argv[1:])


def check_curl(argv: tuple[str, ...]) -> None:
    from serving.models import RecommendRequest

    routes = {
        (method.upper(), path)
        for source in sorted((REPO / "serving").glob("*.py"))
        for method, path in re.findall(r"\.(post|get)\(\s*\"(/[^\"]*)\"", source.read_text())
    }
    url = next(word for word in argv if word.startswith("http"))
    method = argv[argv.index("-X") + 1] if "-X" in argv else "GET"
    path = "/" + url.split("://", 1)[1].split("/", 1)[1]
    assert (method, path) in routes, f"{method} {path} is no route of serving/ (routes: {sorted(routes)})"
    if "-d" in argv:
        RecommendRequest.model_validate_json(argv[argv.index("-d") + 1])


def check_command(argv: tuple[str, ...], helps: Helps) -> None:
    program = argv[0]
    if program == "serendipity":
        check_serendipity(argv, helps)
    elif Path(program).name == "python":
        check_python(argv, helps)
    elif program in ENTRY_POINT_PROGRAMS:
        check_entry_point(argv, helps)
    elif program == "make":
        check_make(argv, helps)
    elif program == "infra/spark/submit.sh":
        check_submit(argv)
    elif program == "spark-submit":
        check_spark_submit(argv)
    elif program in RETIRED:
        pytest.fail(f"{program}: {RETIRED[program]}")
    else:
        pytest.fail(f"no check for {program!r}: classify it in tests/unit/test_readme_commands.py")


# --- the tests -----------------------------------------------------------------------------------------


def test_the_readmes_show_commands_of_every_kind() -> None:
    programs = {Path(shown.program).name for shown in COMMANDS}
    assert {"serendipity", "make", "python", "ray", "serve", "feast", "hf", "submit.sh", "curl"} <= programs
    assert {"kubectl", "docker"} <= programs


def test_every_fenced_command_is_classified() -> None:
    unknown = [f"{shown.where}: {shown.text}" for shown in COMMANDS if shown.program not in PROGRAMS]
    assert unknown == []


@pytest.mark.parametrize("shown", COMMANDS, ids=[f"{shown.where} {shown.program}" for shown in COMMANDS])
def test_shown_command_runs(shown: Shown, helps: Helps) -> None:
    if shown.program in EXTERNAL:
        check_files(shown.argv[1:], shown.inputs)
        if shown.program == "curl":
            check_curl(shown.argv)
        pytest.skip(f"{shown.program} {EXTERNAL[shown.program]}; checked the files it names")
    for argv in variants(shown.argv):
        check_command(argv, helps)
