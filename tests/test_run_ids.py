"""Run ids (issue 14, point 7): a full id is a primary-key lookup; a prefix is a range on the uuid.

Only hex digits count (hyphens are dropped wherever they are typed), so `%` and `_` can never act as
`LIKE` wildcards: they are refused with a clear error. `EXPLAIN` on a table of a few thousand runs shows
both lookups use the primary key's index, where the old `id::text` comparison read the whole table.
"""

from __future__ import annotations

import time
import uuid

import pytest

from agent.api import Runtime
from agent.config import RunConfig
from agent.durable.store import runs
from agent.errors import RunNotFoundError
from agent.settings import Settings
from tests._cli import run_cli as cli
from tests._processes import worker_env

TARGET = uuid.UUID("c7ef1234-5678-4abc-8def-0123456789ab")
NEIGHBOUR = uuid.UUID("c7ef1299-0000-4000-8000-000000000000")  # shares the prefix c7ef12
TOP = uuid.UUID("c7ef12ff-ffff-4fff-bfff-ffffffffffff")  # the highest id under c7ef12ff (bar the version bits)
NEXT = uuid.UUID("c7ef1300-0000-4000-8000-000000000000")  # the first id past it
SUBSTRING = uuid.UUID("00c7ef12-3456-4000-8000-000000000000")  # holds "c7ef12" inside, not at the start


async def _insert(runtime: Runtime, *ids: uuid.UUID) -> None:
    config = RunConfig.from_settings(runtime.settings, model="test", prompt_version="test")
    for run_id in ids:
        await runs.insert(runtime.pool, run_id=run_id, question=f"run {run_id}", config=config)


async def test_prefixes_of_any_length_with_or_without_hyphens_find_the_run(runtime: Runtime) -> None:
    await _insert(runtime, TARGET, NEIGHBOUR, TOP, NEXT, SUBSTRING)
    full = str(TARGET)
    for given in (
        full,
        full.upper(),
        full.replace("-", ""),  # 32 digits, no hyphens
        "c7ef1234",
        "c7ef1234-",
        "c7ef1234-56",
        "c7ef12345678",  # across the first hyphen, not typed
        "C7EF1234-5678-4ABC",
        "c7ef1234-5678-4abc-8def-0123456789a",  # all but the last digit
        f"  {full}  ",
    ):
        assert (await runtime.store.get_run(given)).id == full, given
    # The range's ends are exact: the top of one prefix, the bottom of the next.
    assert (await runtime.store.get_run("c7ef12ff")).id == str(TOP)
    assert (await runtime.store.get_run("c7ef13")).id == str(NEXT)
    assert (await runtime.store.get_run("00c7ef")).id == str(SUBSTRING)


async def test_ambiguous_unknown_short_and_non_hex_ids_are_reported(runtime: Runtime) -> None:
    await _insert(runtime, TARGET, NEIGHBOUR, SUBSTRING)
    with pytest.raises(RunNotFoundError, match="ambiguous: give more characters"):
        await runtime.store.get_run("c7ef12")  # TARGET and NEIGHBOUR
    with pytest.raises(RunNotFoundError, match="ambiguous"):
        await runtime.store.get_run("C7-EF-12")
    with pytest.raises(RunNotFoundError, match="too short"):
        await runtime.store.get_run("c7ef")
    with pytest.raises(RunNotFoundError, match="too short"):
        await runtime.store.get_run("c7-ef-1")  # 5 digits, however many hyphens
    with pytest.raises(RunNotFoundError, match="no run with id"):
        await runtime.store.get_run("ffffff")
    with pytest.raises(RunNotFoundError, match="no run with id"):
        await runtime.store.get_run(str(uuid.UUID(int=TARGET.int + 1)))
    with pytest.raises(RunNotFoundError, match="a run id has 32"):
        await runtime.store.get_run(str(TARGET) + "0")
    # `LIKE '%c7ef12%'` would have matched SUBSTRING (and `_` any character): now no input is a pattern.
    for given in ("%c7ef12", "%c7ef", "c7ef12%", "c7ef1_", "_7ef1234", "%", "c7ef1234 OR 1=1", "c7ef12\\"):
        with pytest.raises(RunNotFoundError, match="is not a run id: run ids are hexadecimal") as caught:
            await runtime.store.get_run(given)
        assert repr(given) in str(caught.value)


async def test_runs_show_names_a_non_hex_or_ambiguous_id_in_one_line(settings: Settings, runtime: Runtime) -> None:
    await _insert(runtime, TARGET, NEIGHBOUR)
    env = worker_env(settings)
    wildcard = cli(env, "runs", "show", "%c7ef")
    assert wildcard.returncode == 2, wildcard.stdout
    assert wildcard.stdout == ""
    assert "'%c7ef' is not a run id: run ids are hexadecimal" in wildcard.stderr
    assert "'%'" in wildcard.stderr and "Traceback" not in wildcard.stderr
    ambiguous = cli(env, "runs", "show", "c7ef12")
    assert ambiguous.returncode == 2 and "'c7ef12' is ambiguous: give more characters" in ambiguous.stderr
    shown = cli(env, "runs", "show", "C7EF1234-56", "--json")
    assert shown.returncode == 0, shown.stderr
    assert str(TARGET) in shown.stdout


async def test_full_ids_and_prefixes_are_index_scans_on_the_primary_key(runtime: Runtime) -> None:
    await _insert(runtime, TARGET, NEIGHBOUR)
    await runtime.pool.execute(
        "INSERT INTO runs (id, question, status, config, model, prompt_version)"
        " SELECT gen_random_uuid(), 'filler ' || n, 'completed', '{}'::jsonb, 'test', 'test'"
        " FROM generate_series(1, 5000) AS n"
    )
    await runtime.pool.execute("ANALYZE runs")

    plans: dict[str, str] = {}
    for given in (str(TARGET), "c7ef1234", "c7ef1234-5678-4a", "0123ab"):
        low, high = runs.id_range(given)
        sql, args = (runs.BY_ID, (low,)) if low == high else (runs.BY_PREFIX, (low, high))
        rows = await runtime.pool.fetch(f"EXPLAIN {sql}", *args)
        plans[given] = "\n".join(r[0] for r in rows)
    for given, plan in plans.items():
        assert "Index Scan using runs_pkey" in plan and "Seq Scan" not in plan, (given, plan)
    print("\n" + plans["c7ef1234"])
    # The test can tell: the old full-id comparison on the text of the id reads every row.
    old = "\n".join(
        r[0] for r in await runtime.pool.fetch("EXPLAIN SELECT * FROM runs WHERE id::text = $1", str(TARGET))
    )
    assert "Seq Scan" in old, old

    started = time.perf_counter()
    for _ in range(100):
        assert (await runtime.store.get_run("c7ef1234")).id == str(TARGET)
    print(f"\n{len(plans)} plans on 5002 runs: index scans; 100 prefix lookups in {time.perf_counter() - started:.3f}s")
