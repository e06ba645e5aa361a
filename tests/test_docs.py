"""The pages cannot drift from the repository or the code: every relative link and
``#anchor`` in README.md, docs/*.md, bench/README.md and pretrained/README.md leads to
a file and a heading (GitHub's anchor rules), and every flag of a command in a fenced
``bash`` block is one that the command's ``--help`` lists."""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from conftest import ROOT, cli_env


def pages() -> list[Path]:
    """The pages checked: the README, every page under docs/, bench's and pretrained's."""
    return [
        ROOT / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
        ROOT / "bench" / "README.md",
        ROOT / "pretrained" / "README.md",
    ]


FENCE = re.compile(r"^\s*(```+|~~~+)\s*([^\s`]*)")


@dataclass(frozen=True)
class Block:
    """A fenced code block: its language and its lines, numbered in the page."""

    language: str
    lines: tuple[tuple[int, str], ...]


def split_page(text: str) -> tuple[list[tuple[int, str]], list[Block]]:
    """The page's prose lines (outside fenced blocks) and its fenced blocks."""
    prose: list[tuple[int, str]] = []
    blocks: list[Block] = []
    fence = ""
    language = ""
    body: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if not fence and match:
            fence, language, body = match.group(1), match.group(2).lower(), []
        elif (
            fence
            and line.strip().startswith(fence[0] * len(fence))
            and not line.strip(fence[0]).strip()
        ):
            blocks.append(Block(language, tuple(body)))
            fence = ""
        elif fence:
            body.append((number, line))
        else:
            prose.append((number, line))
    return prose, blocks


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its rendered text, lower case, without
    punctuation but for hyphens and underscores, spaces made hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link shows its text
    text = re.sub(r"<[^>]+>", "", text)  # HTML tags
    text = text.replace("`", "").replace("**", "").replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


@functools.cache
def anchors(page: Path) -> frozenset[str]:
    """Every heading's anchor in a Markdown page, repeats numbered as GitHub does."""
    prose, _ = split_page(page.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose:
        match = re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    out.update(re.findall(r"<a\s+(?:name|id)=\"([^\"]+)\"", page.read_text(encoding="utf-8")))
    return frozenset(out)


LINK = re.compile(r"\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"<(?:img|a|source)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", re.IGNORECASE)
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")


def links(page: Path) -> list[tuple[int, str]]:
    """(line, target) of every link and image in the page's prose, code spans left out."""
    prose, _ = split_page(page.read_text(encoding="utf-8"))
    out = []
    for number, line in prose:
        line = re.sub(r"(`+).*?\1", "", line)  # code spans show text, not links
        for pattern in (LINK, HTML_LINK, REFERENCE):
            out += [(number, target) for target in pattern.findall(line)]
    return out


def link_problem(page: Path, target: str) -> str | None:
    """Why a link from ``page`` does not resolve, or None when it does."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto:
        return None
    path, _, anchor = target.partition("#")
    goal = (page.parent / path).resolve() if path else page
    if not goal.exists():
        return f"{path} does not exist"
    if path and ROOT.resolve() not in (goal, *goal.parents):
        return f"{path} is outside the repository"
    if anchor and goal.suffix == ".md" and anchor not in anchors(goal):
        return f"{path or goal.name} has no heading with anchor #{anchor}"
    return None


def test_every_link_and_anchor_resolves() -> None:
    checked, anchored, problems = 0, 0, []
    for page in pages():
        for number, target in links(page):
            checked += 1
            anchored += "#" in target
            problem = link_problem(page, target)
            if problem:
                problems.append(f"{page.relative_to(ROOT)}:{number}: ({target}) {problem}")
    assert not problems, "\n".join(problems)
    assert checked > 50 and anchored > 10  # the pages do link; a parser bug would find none
    print(f"{checked} links, {anchored} with an anchor, in {len(pages())} pages")


def test_the_link_checker_catches_what_breaks(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# A `code` heading: with *marks*\n## Twice\n## Twice\n"
        "[ok](#a-code-heading-with-marks) [two](#twice-1) [bad](#nowhere) [gone](gone.md)\n"
        "`[not a link](nowhere.md)`\n```bash\n[not a link](nowhere.md)\n```\n"
    )
    found = [(target, link_problem(page, target)) for _, target in links(page)]
    assert [target for target, problem in found if problem] == ["#nowhere", "gone.md"]
    assert slug("Running on a Ray cluster") == "running-on-a-ray-cluster"
    assert slug("Update: NumPy (CPU) vs CuPy (GPU)") == "update-numpy-cpu-vs-cupy-gpu"


# -- commands ---------------------------------------------------------------------
OPERATORS = {"&&", "||", ";", "|", "&", "(", ")", ";;"}
REDIRECTS = {">", ">>", "<", "2>", "&>", "2>&1", ">&"}


def commands(block: Block) -> list[tuple[int, list[str]]]:
    """(line, words) of each simple command in a bash block: continuation lines
    joined, comments dropped, split at ``&&``, ``;``, ``|``; redirections left out."""
    out: list[tuple[int, list[str]]] = []
    joined: list[tuple[int, str]] = []
    pending = ""
    start = 0
    for number, line in block.lines:
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append((start, pending + line))
        pending = ""
    for number, line in joined:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()<>")
        lexer.whitespace_split = True
        words: list[str] = []
        skip_next = False
        for token in lexer:
            if skip_next:
                skip_next = False
            elif token in OPERATORS:
                out.append((number, words))
                words = []
            elif token in REDIRECTS or token.endswith(">"):
                skip_next = token not in {"2>&1"}
            else:
                words.append(token)
        out.append((number, words))
    return [(number, words) for number, words in out if words]


def help_command(words: list[str]) -> tuple[tuple[str, ...], list[str]] | None:
    """The ``--help`` command line for a shown command (pongxp's and the bench
    scripts'), and the rest of its words; None for other programs."""
    program = Path(words[0]).name
    if program == "pongxp" and len(words) > 1:
        return ("-m", "pongxp", words[1]), words[2:]
    if re.fullmatch(r"python3?(\.\d+)?", program) and len(words) > 1:
        if words[1] == "-m" and len(words) > 3 and words[2] == "pongxp":
            return ("-m", "pongxp", words[3]), words[4:]
        if words[1].endswith(".py"):
            return (words[1],), words[2:]
    return None


@functools.cache
def help_text(command: tuple[str, ...]) -> str:
    done = subprocess.run(
        [sys.executable, *command, "--help"],
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{' '.join(command)} --help failed:\n{done.stderr[-2000:]}"
    return done.stdout


def flags(words: list[str]) -> list[str]:
    """The flags among a command's words: long ones (a quoted value with spaces is a
    value, not a flag) and one-letter ones such as ``-o``."""
    long = [w.split("=")[0] for w in words if w.startswith("--") and w != "--" and " " not in w]
    return long + [w for w in words if re.fullmatch(r"-[A-Za-z]", w)]


def shown_commands() -> list[tuple[str, tuple[str, ...], list[str]]]:
    out = []
    for page in pages():
        _, blocks = split_page(page.read_text(encoding="utf-8"))
        for block in blocks:
            if block.language not in {"bash", "sh", "shell"}:
                continue
            for number, words in commands(block):
                found = help_command(words)
                if found:
                    where, rest = f"{page.relative_to(ROOT)}:{number}", found[1]
                    if "--" in rest:  # bench/run_to_win.py: what follows is train.py's
                        cut = rest.index("--")
                        out.append((where, ("train.py",), flags(rest[cut + 1 :])))
                        rest = rest[:cut]
                    out.append((where, found[0], flags(rest)))
    return out


def test_every_shown_command_names_flags_that_exist() -> None:
    shown = shown_commands()
    problems = []
    for where, command, names in shown:
        text = help_text(command)
        for name in names:
            if not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text):
                problems.append(f"{where}: {' '.join(command)} has no flag {name}")
    assert not problems, "\n".join(problems)
    assert len(shown) > 20  # the pages do show commands; a parser bug would find none
    print(f"{len(shown)} commands, {sum(len(n) for _, _, n in shown)} flags checked")


def test_the_command_parser_reads_bash() -> None:
    block = Block(
        "bash",
        (
            (1, "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/python train.py"),
            (2, ".venv/bin/python train.py --preset fast \\"),
            (3, "    --lr=1e-3   # a comment --not-a-flag"),
            (4, ".venv/bin/pongxp evaluate x.npz --json > runs/score.json"),
            (5, 'python3 bench/gpu_check.py /tmp/g --bench-args "--budget 10"; rc=$?'),
        ),
    )
    shown = [(n, help_command(w)) for n, w in commands(block)]
    found = [(n, cmd, flags(rest)) for n, h in shown if h for cmd, rest in [h]]
    assert found == [
        (1, ("train.py",), []),
        (2, ("train.py",), ["--preset", "--lr"]),
        (4, ("-m", "pongxp", "evaluate"), ["--json"]),
        (5, ("bench/gpu_check.py",), ["--bench-args"]),
    ]
