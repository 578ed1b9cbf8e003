"""Every benchmark runs to its rows in smoke mode (tiny sizes), so a broken bench fails the suite
instead of `make bench`; and one benchmark that raises costs its own row, never the table."""

from __future__ import annotations

import pytest

import bench.__main__ as bench_main

K8S = {"scale", "pipeline", "failover", "storm"}


@pytest.mark.integration
@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.k8s] if n in K8S else [])
                                  for n in bench_main.BENCHES])
def test_each_bench_runs_in_smoke_mode(name: str) -> None:
    rows = bench_main.BENCHES[name](smoke=True)
    assert rows
    for row in rows:
        assert len(row) == 4 and all(isinstance(c, str) for c in row), row
        assert "nan" not in row[1] and not row[1].startswith("failed"), row


def test_a_failing_bench_gives_its_row_and_the_table_goes_on(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    def broken(*, smoke: bool = False) -> list:
        raise ValueError("not a valid duration string: '5.0s'\nsecond line")

    def fine(*, smoke: bool = False) -> list:
        return [("fine row", "1.0x", "<= 2x", "yes")]

    monkeypatch.setattr(bench_main, "BENCHES", {"broken": broken, "fine": fine})
    assert bench_main.main(["--smoke"]) == 1
    out = capsys.readouterr().out
    assert "broken: FAILED  ValueError: not a valid duration string: '5.0s'" in out
    assert "second line" not in out
    assert "fine row" in out


def test_an_unknown_bench_name_is_exit_2() -> None:
    with pytest.raises(SystemExit) as exc:
        bench_main.main(["nope"])
    assert exc.value.code == 2
