"""The report of `make bench`: medians over interleaved rounds, ratios from them."""

from __future__ import annotations

from ml_service.bench import LoadResult, _median, _ratios, render


def result(server, shape, rps, p99, requests=100, errors=0):
    return LoadResult(server=server, shape=shape, requests=requests, concurrency=8,
                      seconds=requests / rps, rps=rps, p50_ms=p99 / 2, p99_ms=p99,
                      errors=errors)


def test_a_slow_round_does_not_move_the_median():
    runs = [result("s", "1 row", 4000, 2.0), result("s", "1 row", 1500, 9.0, errors=1),
            result("s", "1 row", 4200, 2.2)]
    median = _median(runs)
    assert (median.rps, median.p99_ms, median.p50_ms) == (4000, 2.2, 1.1)
    assert (median.requests, median.errors, median.rounds) == (300, 1, 3)


def test_ratios_come_from_the_medians_of_each_server():
    servers = {"scoring service": 5000, "scoring service, scikit-learn": 1000,
               "scoring service + log": 2500, "bare ASGI (ceiling)": 8000,
               "mlflow models serve": 100}
    results = [_median([result(name, shape, rps * k, 2.0) for k in (0.5, 1, 1.1)])
               for name, rps in servers.items() for shape in ("1 row", "1000 rows")]
    ratios = _ratios(results)
    assert ratios["1 row"]["ceiling_share"] == 0.625
    assert ratios["1 row"]["throughput_x"] == 50
    assert ratios["1000 rows"]["rows_per_s"] == 5_000_000
    report = {"model": {"name": "m", "version": 1}, "cpus": 2, "rounds": 3,
              "results": [r.__dict__ for r in results], "ratios": ratios,
              "image": {"skipped": "no Docker"}}
    assert "median of 3 rounds" in render(report)
