"""The README and docs/ as a reader follows them: no placeholder left in, no link to a file or a
heading that is gone. Headings and links come from markdown-it (as in tests/walkthrough.py), so a
`#` in a code block or a bracket in a shell line is not taken for one."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from markdown_it import MarkdownIt

from tests.helpers import REPO

# Words a draft leaves for numbers or text still to come; the README once shipped three
# *_PLACEHOLDER words in the quick start.
PLACEHOLDER = re.compile(r"\b\w*_PLACEHOLDER\b|\bTODO\b|\bXXX\b|\bTBD\b")


def documents(root: Path = REPO) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def _text(inline) -> str:
    """A heading's text as GitHub slugs it: the words, code spans' content, no markup."""
    return "".join(child.content for child in inline.children or [] if child.type in ("text", "code_inline"))


def slug(heading: str) -> str:
    """GitHub's heading anchor: lowercase; letters, marks, digits, `_`, `-` and spaces kept (the
    rest dropped: `.`, `'`, `,`, `×`, em dashes); spaces to `-`."""
    kept = "".join(c for c in heading.lower()
                   if c in " -" or unicodedata.category(c) == "Pc" or unicodedata.category(c)[0] in "LMN")
    return kept.replace(" ", "-")


# An anchor set by hand where no heading is, e.g. on a table row: `<a id="quick-zen5-bf16"></a>`.
HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")


def anchors(markdown: str) -> set[str]:
    """Every heading's anchor (a repeated heading gets `-1`, `-2`, ... as on GitHub), and every
    `<a id>` outside code."""
    tokens = MarkdownIt().parse(markdown)
    seen: dict[str, int] = {}
    found = {match for token in tokens for part in [token, *(token.children or [])]
             if part.type in ("html_inline", "html_block") for match in HTML_ANCHOR.findall(part.content)}
    for opening, inline in zip(tokens, tokens[1:]):
        if opening.type != "heading_open":
            continue
        base = slug(_text(inline))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(markdown: str) -> list[str]:
    """Targets of every link and image, in order."""
    targets = []

    def walk(tokens):
        for token in tokens:
            if token.type == "link_open":
                targets.append(token.attrGet("href"))
            elif token.type == "image":
                targets.append(token.attrGet("src"))
            walk(token.children or [])

    walk(MarkdownIt().parse(markdown))
    return targets


def problems(path: Path) -> list[str]:
    """Placeholders, dead file links and dead anchors in one Markdown file."""
    text = path.read_text(encoding="utf-8")
    name = path.relative_to(path.parent.parent if path.parent.name == "docs" else path.parent)
    found = [f"{name}:{number}: placeholder {match.group(0)!r}"
             for number, line in enumerate(text.splitlines(), 1)
             for match in PLACEHOLDER.finditer(line)]
    for target in links(text):
        parts = urlsplit(target)
        if parts.scheme or parts.netloc:  # http(s), mailto: not this test's business
            continue
        linked = (path.parent / unquote(parts.path)).resolve() if parts.path else path
        if not linked.exists():
            found.append(f"{name}: link to {target}: no file {linked}")
            continue
        if parts.fragment and linked.suffix == ".md" and \
                unquote(parts.fragment) not in anchors(linked.read_text(encoding="utf-8")):
            found.append(f"{name}: link to {target}: no heading with that anchor in {linked.name}")
    return found


@pytest.mark.parametrize("path", documents(), ids=lambda path: path.name)
def test_no_placeholder_or_dead_link(path):
    assert problems(path) == []


def test_slugs_as_github_makes_them():
    assert slug("Change one value and compare") == "change-one-value-and-compare"
    assert slug("The offline mirror's pixels") == "the-offline-mirrors-pixels"
    assert slug("Data, and using a mirror") == "data-and-using-a-mirror"
    assert slug("make quick") == "make-quick"
    assert slug("tf.data's idle waits") == "tfdatas-idle-waits"
    assert anchors("# `make quick`\n\n## A\n\n## A\n") == {"make-quick", "a", "a-1"}
    assert anchors('| <a id="row-1"></a>x | y |\n\n```\n<a id="code"></a>\n```\n') == {"row-1"}


def test_catches_what_it_is_for(tmp_path):
    """The README before issue 30 had all three faults; a checker that passes it is no check."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "speed.md").write_text("# Speed\n\n## `make quick`\n\nQUICK_TIME_PLACEHOLDER\n")
    (tmp_path / "README.md").write_text(
        "# Title\n\n## Tests\n\n"
        "[ok](#tests) [ok](docs/speed.md#make-quick) [ok](https://example.org/#x)\n\n"
        "[gone](docs/missing.md) [moved](#speed) [moved](docs/speed.md#expected-numbers)\n\n"
        "```sh\n# not a heading, [not](a-link.md)\n```\n")
    readme, speed = documents(tmp_path)
    assert [line.split(": ", 1)[1] for line in problems(readme)] == [
        f"link to docs/missing.md: no file {tmp_path / 'docs' / 'missing.md'}",
        "link to #speed: no heading with that anchor in README.md",
        "link to docs/speed.md#expected-numbers: no heading with that anchor in speed.md"]
    assert problems(speed) == ["docs/speed.md:5: placeholder 'QUICK_TIME_PLACEHOLDER'"]


def test_the_offline_plots_template_loads_what_the_readmes_npm_command_installs():
    """`dvc plots diff --html-template reports/plots-offline.html` after the README's npm line."""
    import re

    from tests.helpers import REPO

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    [install] = re.findall(r"^npm install .*--prefix (\S+) (.+)$", readme, re.MULTILINE)
    prefix, packages = install[0], {spec.rsplit("@", 1)[0] for spec in install[1].split()}
    template = (REPO / "reports" / "plots-offline.html").read_text(encoding="utf-8")
    assert "{plot_divs}" in template and "{scripts}" not in template  # DVC's CDN scripts left out
    loaded = re.findall(rf'<script src="\.\./{re.escape(prefix)}/node_modules/([^/]+)/build/[^"]+\.js">', template)
    assert set(loaded) == packages == {"vega", "vega-lite", "vega-embed"}


# `python -m <module> <args>` as the documents show it, up to a comment, a pipe or the next command.
MODULE_COMMAND = re.compile(r"python -m ((?:pipeline|bench)(?:\.\w+)+)([^`#|;&)\n]*)")
# `[VAR=value ...] make target [VAR=value ...]`
MAKE_COMMAND = re.compile(r"((?:\b[A-Z_]+=\S+\s+)*)\bmake\s+([a-z][\w-]*)((?:\s+[A-Z_]+=\S+)*)")
PROJECT_IMPORT = re.compile(r"^from ((?:pipeline|bench)(?:\.\w+)+) import", re.MULTILINE)


def shown_commands(root: Path = REPO) -> list[tuple[str, str]]:
    """(where, command text) of every code span and code block line in README.md and docs/, and
    every comment line of params.yaml; an inline span broken over lines is joined."""
    found = []
    for path in documents(root):
        tokens = MarkdownIt().parse(path.read_text(encoding="utf-8"))
        for token in tokens:
            if token.type == "fence":
                found += [(path.name, line) for line in token.content.splitlines()]
            for child in token.children or []:
                if child.type == "code_inline":
                    found.append((path.name, " ".join(child.content.split())))
    params = (root / "tests" / "shipped_params.yaml").read_text(encoding="utf-8")
    found += [("params.yaml", line.split("#", 1)[1]) for line in params.splitlines() if "#" in line]
    return found


def module_file(module: str, root: Path = REPO) -> Path | None:
    base = root.joinpath(*module.split("."))
    return next((path for path in (base.with_suffix(".py"), base / "__main__.py") if path.exists()), None)


def module_flags(module: str, root: Path = REPO) -> set[str]:
    """The --flags a module's argparse accepts, read from its source and that of the project modules
    it imports from (bench.common adds the benchmarks' data flags): no import, no TensorFlow."""
    path = module_file(module, root)
    source = path.read_text(encoding="utf-8")
    sources = [source, *(module_file(name, root).read_text(encoding="utf-8")
                         for name in PROJECT_IMPORT.findall(source) if module_file(name, root))]
    return {flag for text in sources for flag in re.findall(r"""["'](--[a-z][\w-]*)["']""", text)}


def command_problems(root: Path = REPO) -> list[str]:
    """Each shown `python -m` module that does not exist or refuses a flag shown with it, and each
    `make` target or variable the Makefile (or, for a variable, the code it runs) does not know."""
    makefile = (root / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.MULTILINE))
    code = "".join(path.read_text(encoding="utf-8") for path in (root / "pipeline").rglob("*.py"))
    found = []
    for where, text in shown_commands(root):
        for module, args in MODULE_COMMAND.findall(text):
            if not module_file(module, root):
                found.append(f"{where}: python -m {module}: no such module")
                continue
            flags = {arg.split("=", 1)[0] for arg in args.split() if arg.startswith("--")}
            found += [f"{where}: python -m {module} {flag}: not a flag of it"
                      for flag in sorted(flags - module_flags(module, root))]
        for before, target, after in MAKE_COMMAND.findall(text):
            if target not in targets:
                found.append(f"{where}: make {target}: no such target in the Makefile")
            for variable in re.findall(r"\b([A-Z_]+)=", before + after):
                if f"$({variable})" not in makefile and f'"{variable}"' not in code:
                    found.append(f"{where}: {variable}= (make {target}): neither the Makefile nor the code reads it")
    return found


def test_every_shown_command_exists_with_the_flags_shown():
    assert command_problems() == []


def test_the_command_check_catches_what_it_is_for(tmp_path):
    """A gone module, a flag its parser lacks, a make target or variable the Makefile lacks."""
    for name in ("pipeline", "bench"):
        (tmp_path / name).mkdir()
    (tmp_path / "pipeline" / "report.py").write_text('parser.add_argument("--out")\n')
    (tmp_path / "pipeline" / "download.py").write_text('MIRROR = "PIPELINE_DATA_MIRROR"\n')
    (tmp_path / "bench" / "feed.py").write_text('from bench.common import add_data_arguments\n')
    (tmp_path / "bench" / "common.py").write_text('parser.add_argument("--data")\n')
    (tmp_path / "Makefile").write_text("quick: setup\n\tpython -m pipeline.tracking.ui $(if $(PORT),--port $(PORT))\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "shipped_params.yaml").write_text("a: 1  # python -m pipeline.report --html x\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(
        "# T\n\n`python -m pipeline.report --out x` `python -m bench.feed --data d`\n\n"
        "```sh\nPIPELINE_DATA_MIRROR=DIR make quick PORT=1   # fine\n"
        "python -m pipeline.gone\nYES=1 make repro JOBS=2\n```\n\n`python -m\nbench.feed --rounds 2`\n")
    assert command_problems(tmp_path) == [
        "README.md: python -m pipeline.gone: no such module",
        "README.md: make repro: no such target in the Makefile",
        "README.md: YES= (make repro): neither the Makefile nor the code reads it",
        "README.md: JOBS= (make repro): neither the Makefile nor the code reads it",
        "README.md: python -m bench.feed --rounds: not a flag of it",
        "params.yaml: python -m pipeline.report --html: not a flag of it"]


def test_the_claims_table_of_the_results_is_the_commands_output(capsys, monkeypatch):
    """docs/results.md's table of the homework's claims, as `python -m pipeline.claims` prints it on the
    kept runs: a doc and the report cannot disagree."""
    from pipeline import claims

    monkeypatch.chdir(REPO)
    claims.main([])
    printed = capsys.readouterr().out
    text = (REPO / "docs" / "results.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- claims: python -m pipeline.claims -->\n(.*?)<!-- /claims -->", text, re.DOTALL)
    assert block and block.group(1) == printed


BY_HAND = re.compile(r"<!--\s*by hand:\s*(\S.*?)\s*-->")


def test_every_readme_shell_block_runs_in_the_walkthrough_or_says_why_not():
    """A README command the walkthrough does not run carries the reason (`<!-- by hand: ... -->`):
    a server until Ctrl-C, a network the tests do not have, a file of the reader's own."""
    from tests.walkthrough import MARKER

    tokens = MarkdownIt().parse((REPO / "README.md").read_text(encoding="utf-8"))
    unexplained = [token.content.splitlines()[0] for previous, token in zip(tokens, tokens[1:])
                   if token.type == "fence" and token.info.strip() == "sh"
                   and not (previous.type == "html_block" and (MARKER.search(previous.content)
                                                                or BY_HAND.search(previous.content)))]
    assert unexplained == []
