"""The commands README.md and docs/ show stay true: every `fastnst ...` line parses with the real parser, every
`python train.py` / `python optimize.py` line composes with the real configs, and every
`python -m scripts...` line names a module that exists and flags it has. (Parsing, not running: the examples
name the reader's files.)"""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from conftest import ROOT, compose_train

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def shown_commands() -> list[tuple[str, str]]:
    """(where, command) for each command line in a ```bash block, continuation lines joined, comments cut."""
    found = []
    for doc in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = re.sub(r"\s+#.*$", "", line).strip()
                if line and not line.startswith("#"):
                    found.append((doc.name, line))
    return found


def commands(prefix: str) -> list[tuple[str, list[str]]]:
    out = []
    for where, line in shown_commands():
        for part in re.split(r"\s*(?:\|\||&&|\||;)\s*", line):
            words = shlex.split(part.split(" > ")[0])
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value python ...
                words = words[1:]
            if words and " ".join(words).startswith(prefix):
                out.append((where, words))
    return out


def ids(cases: list[tuple[str, list[str]]]) -> list[str]:
    return [f"{where}: {' '.join(words)[:60]}" for where, words in cases]


FASTNST = commands("fastnst ")
TRAIN = [c for c in commands("python ") if c[1][1:2] in (["train.py"], ["optimize.py"])]
SCRIPTS = [c for c in commands("python -m scripts.")]


def test_the_docs_show_commands_of_every_kind() -> None:
    assert len(FASTNST) > 20 and len(TRAIN) > 10 and len(SCRIPTS) > 5


@pytest.mark.parametrize(("where", "words"), FASTNST, ids=ids(FASTNST))
def test_each_fastnst_command_in_the_docs_parses(where: str, words: list[str]) -> None:
    from fastnst.cli.main import _bind_dashed_values, build_parser

    try:
        args = build_parser().parse_args(_bind_dashed_values(words[1:]))
    except SystemExit as err:
        pytest.fail(f"{where}: `{' '.join(words)}` does not parse (exit {err.code})")
    assert callable(args.func)


@pytest.mark.parametrize(("where", "words"), TRAIN, ids=ids(TRAIN))
def test_each_training_command_in_the_docs_composes(where: str, words: list[str], tmp_path: Path) -> None:
    from fastnst.training.config import check_group_choices

    overrides = [w for w in words[2:] if w not in ("-m", "--multirun")]
    if any(w.startswith("--") for w in overrides):
        return  # --help and the like: Hydra's own
    overrides = [o.split(",")[0] if "=" in o and not o.startswith("'") and "[" not in o else o for o in overrides]
    groups = ("style", "model", "loss", "optimizer", "scheduler", "data", "trainer", "callbacks", "logger",
              "experiment", "gatys")
    try:
        check_group_choices(overrides, groups)
        compose_train(overrides, tmp_path, config_name="train" if words[1] == "train.py" else "optimize")
    except (SystemExit, HydraException, OmegaConfBaseException) as err:
        pytest.fail(f"{where}: `{' '.join(words)}` does not compose: {err}")


@pytest.mark.parametrize(("where", "words"), SCRIPTS, ids=ids(SCRIPTS))
def test_each_script_in_the_docs_exists_with_its_flags(where: str, words: list[str]) -> None:
    module = words[2]
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"{where}: no module {module}"
    source = Path(spec.origin).read_text()
    for flag in (w.split("=")[0] for w in words[3:] if w.startswith("--")):
        assert f'"{flag}"' in source, f"{where}: {module} has no {flag}"
