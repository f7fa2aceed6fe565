"""docs/api.md says what the API's fields and parameters mean; where it lists them, the
lists are the declared types' (the msgspec Structs the handlers send, the parameter types
they decode), so the page cannot drift from the contract."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest

from busstats.api.openapi import openapi_document
from busstats.api.routes.jobs import JobsQuery
from busstats.model.backfills import BackfillAccepted, BackfillProgress, BackfillRecord
from busstats.model.jobs import CityReport, InvalidRow, JobList, JobRecord
from busstats.model.payloads import ErrorBody, JobAccepted
from busstats.model.schedule import ScheduleView
from busstats.model.stats import CountryDay, CountryStats, IncompleteDate

PAGE = Path(__file__).resolve().parents[2] / "docs" / "api.md"
TEXT = PAGE.read_text()

FIELD_TABLES = [BackfillRecord, JobRecord, CityReport]
"""The `| field | meaning |` tables, in the page's order."""
PARAMETER_TABLES = [JobsQuery]
"""The `| parameter | meaning |` tables, in the page's order."""
JSON_EXAMPLES = [ErrorBody, JobAccepted, BackfillAccepted, JobList, ScheduleView, CountryStats]
"""The ```json blocks, in the page's order."""
BRACE_LISTS = [BackfillProgress, InvalidRow, IncompleteDate]
"""The inline `{a, b}` lists of a value's fields, in the page's order."""


def names(struct: type[msgspec.Struct]) -> list[str]:
    return [field.encode_name for field in msgspec.structs.fields(struct)]


def tables(first_header: str) -> list[list[str]]:
    """The names in the first column of each table whose first header is `first_header`."""
    found: list[list[str]] = []
    lines = TEXT.splitlines()
    for number, line in enumerate(lines):
        if re.fullmatch(rf"\| {first_header} \|.*\|", line):
            rows: list[str] = []
            for row in lines[number + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append(row)
            found.append(
                [name for row in rows for name in re.findall(r"`([^`]+)`", row.split("|")[1])]
            )
    return found


def section(heading: str) -> str:
    """The text under the `## heading...` up to the next heading of that level."""
    match = re.search(rf"^## {re.escape(heading)}.*?\n(.*?)(?=^## |\Z)", TEXT, re.M | re.S)
    assert match is not None, heading
    return match.group(1)


def test_every_field_table_lists_exactly_its_types_fields() -> None:
    listed = tables("field")
    assert len(listed) == len(FIELD_TABLES), "a table was added or removed: name its type here"
    for struct, fields in zip(FIELD_TABLES, listed, strict=True):
        assert sorted(fields) == sorted(names(struct)), struct.__name__


def test_every_parameter_table_lists_exactly_its_types_parameters() -> None:
    listed = tables("parameter")
    assert len(listed) == len(PARAMETER_TABLES), "a table was added or removed: name its type"
    for query, parameters in zip(PARAMETER_TABLES, listed, strict=True):
        assert parameters == names(query), query.__name__


def test_the_route_table_lists_every_operation_with_its_parameters() -> None:
    document = openapi_document()
    operations = {
        (method.upper(), path): {parameter["name"] for parameter in item["parameters"]}
        for path, methods in document["paths"].items()
        for method, item in methods.items()
    }
    listed: set[tuple[str, str]] = set()
    for cell in tables("route")[0]:
        method, target = cell.split(" ", 1)
        path, _, query = target.partition("?")
        assert (method, path) in operations, cell
        given = {pair.split("=")[0] for pair in query.split("&") if pair}
        assert given <= operations[method, path], cell
        listed.add((method, path))
    assert listed == set(operations)


@pytest.mark.parametrize("number", range(len(JSON_EXAMPLES)))
def test_every_json_example_is_its_type_with_every_field(number: int) -> None:
    examples = re.findall(r"```json\n(.*?)```", TEXT, re.S)
    assert len(examples) == len(JSON_EXAMPLES), "an example was added or removed: name its type"
    struct = JSON_EXAMPLES[number]
    msgspec.json.decode(examples[number], type=struct)  # the types and formats fit
    shows_every_field(msgspec.json.decode(examples[number]), mi.type_info(struct), struct.__name__)


def shows_every_field(value: Any, kind: mi.Type, where: str) -> None:
    """`value` has exactly the fields of its Struct, and so has every Struct in it."""
    while isinstance(kind, mi.Metadata | mi.UnionType):
        if isinstance(kind, mi.Metadata):
            kind = kind.type
        else:
            if value is None:
                return
            kind = next(t for t in kind.types if not isinstance(t, mi.NoneType))
    if isinstance(kind, mi.StructType):
        assert isinstance(value, dict), where
        assert sorted(value) == sorted(f.encode_name for f in kind.fields), where
        for field in kind.fields:
            shows_every_field(value[field.encode_name], field.type, f"{where}.{field.encode_name}")
    elif isinstance(kind, mi.ListType):
        assert isinstance(value, list), where
        for item in value:
            shows_every_field(item, kind.item_type, f"{where}[]")


def test_every_inline_field_list_is_its_types_fields() -> None:
    lists = re.findall(r"`\{([^`]*)\}`", TEXT)
    assert len(lists) == len(BRACE_LISTS), "a list was added or removed: name its type here"
    for struct, inner in zip(BRACE_LISTS, lists, strict=True):
        if '"' in inner:
            listed = re.findall(r'"(\w+)"\s*(?=[:,]|$)', inner)
        else:
            listed = [name.strip() for name in inner.split(",")]
        assert listed == names(struct), struct.__name__


def test_the_statistics_fields_and_export_columns_are_the_types() -> None:
    stats = section("Statistics")
    explained = re.findall(r"^- `(\w+)`", stats, re.M)
    assert explained, "the field bullets of the statistics are gone"
    assert set(explained) <= {*names(CountryStats), *names(CountryDay)}
    columns = re.search(r"with the columns (.*?): the same numbers", stats, re.S)
    assert columns is not None
    assert re.findall(r"`(\w+)`", columns.group(1)) == names(CountryDay)
    rest = re.search(r"carry the rest of the answer \((.*?)\)", stats, re.S)
    assert rest is not None
    assert re.findall(r"`(\w+)`", rest.group(1)) == [n for n in names(CountryStats) if n != "stats"]
