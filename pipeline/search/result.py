"""A study's result as params.yaml data: the best trial as the setting `<base>-searched`, and the sweep
`<entry>` comparing it with its base, written with the file's comments and layout kept.

The sweep varies the keys the searched setting differs from its base in. One key: that key, like
the homework's sweeps. Several (a search seldom changes one value only): all of them, joined with
`+` (`vary: learning_rate+batch_size`); pipeline.params.checks allows a sweep's settings to differ
in exactly those keys, and the report labels its rows with each. Picking one of them as `vary`
would misstate what was compared; splitting the change into one sweep per key would train
settings nobody chose.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.common.outputs import write_text
from pipeline.params.load import parse_params
from pipeline.params.schema import resolved, setting_values
from pipeline.params.space import SUFFIX, SearchEntry


def changed_keys(params, base: str, searched: str, order) -> list[str]:
    """The keys in which the two settings train differently, in the order of the search space."""
    before, after = (setting_values(*resolved(params, name)) for name in (base, searched))
    return [key for key in order if before[key] != after[key]]


def with_result(text: str, name: str, entry: SearchEntry, values: dict, note: str) -> str:
    """params.yaml's text with the setting and the sweep added (or replaced, on a second run)."""
    import io

    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    document = YAML()
    document.width = 4096
    data = document.load(text)
    settings, searched = data["settings"], f"{entry.base}{SUFFIX}"
    setting = CommentedMap(settings[entry.base])
    for key, value in values.items():
        if isinstance(value, (list, tuple)):
            value = CommentedSeq(value)
            value.fa.set_flow_style()
        setting[key] = value
    if searched in settings:
        settings[searched] = setting
    else:
        settings.insert(list(settings).index(entry.base) + 1, searched, setting)
    settings.yaml_add_eol_comment(note, searched)
    members = CommentedSeq([entry.base, searched])
    members.fa.set_flow_style()
    sweep = CommentedMap(vary="+".join(values) or next(iter(entry.space)), settings=members)
    data["sweeps"][name] = sweep
    data["sweeps"].yaml_add_eol_comment(f"make search NAME={name}: the search's best against its base", name)
    out = io.StringIO()
    document.dump(data, out)
    return out.getvalue()


def write_result(path: Path, name: str, entry: SearchEntry, values: dict, number: int, value: float) -> tuple[str, str]:
    """Write the best trial's values into params.yaml; (the setting's name, the sweep's vary).

    The file is checked as a stage would load it before it is replaced."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    note = f"make search NAME={name}: trial {number}, {entry.metric} {value:.4f} on {entry.epochs} epoch(s)"
    draft = parse_params(_yaml(with_result(text, name, entry, values, note)), path)
    varied = changed_keys(draft, entry.base, f"{entry.base}{SUFFIX}", list(entry.space))
    new = with_result(text, name, entry, {key: values[key] for key in varied}, note)
    parse_params(_yaml(new), path)
    write_text(path, new)
    sweep = parse_params(_yaml(new), path).sweeps[name]
    return f"{entry.base}{SUFFIX}", sweep.vary


def _yaml(text: str):
    import yaml

    from pipeline.params.file import _StrictLoader

    return yaml.load(text, Loader=_StrictLoader)
