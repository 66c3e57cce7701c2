"""``hilnas report``: runs of ``hilnas search`` (DCA-NAS, the hypernetwork) on a simulated Pi, reported
alone and together (--all); an unknown run id and an unwritable folder are refused with a clear line."""
from __future__ import annotations

import json

import pytest

from hilnas.searchers.data import DatasetConfig
from hilnas.searchers.hypernet import HypernetConfig
from hilnas.searchers.result import Budget
from hilnas.server.cli import main
from hilnas.server.report import ReportError, collect, write_report
from hilnas.server.report.plots import pareto_front
from hilnas.server.search.dca import DcaRunConfig, run_dca
from hilnas.server.search.hypernet import HypernetRunConfig, run_hypernet
from loopback import FAST, SEARCH_OVERRIDES

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_torch_thread")]
DATA = DatasetConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_classes=4, synthetic_train=64,
                     synthetic_test=32, batch_size=16, val_fraction=0.5)


def test_pareto_front_keeps_the_points_nothing_beats() -> None:
    points = [(1.0, 50.0), (2.0, 60.0), (1.5, 40.0), (3.0, 55.0), (2.5, 70.0), (1.0, 45.0)]
    assert pareto_front(points) == [(1.0, 50.0), (2.0, 60.0), (2.5, 70.0)]


@pytest.mark.slow
def test_report_of_search_runs_alone_and_all(lut_store, tmp_path, capsys) -> None:
    store, client = lut_store
    common = {"space": "nb201", "space_overrides": SEARCH_OVERRIDES, "dataset": DATA, "measure": FAST,
              "out_dir": str(tmp_path / "models")}
    # a budget within the LUT's range: DCA-NAS refuses one every network fits (the constraint could not bind)
    from hilnas.searchers.cost import extremes
    from hilnas.server.search.common import cost_model_for
    from loopback import search_space

    budget_ms = float(f"{0.9 * extremes(search_space(), cost_model_for(store, 'pi', 'latency_ms')[0]).dearest_cost:.3g}")
    dca = run_dca(store, "pi", [client], DcaRunConfig(budget=Budget("latency_ms", budget_ms), search_epochs=1,
                                                      train_epochs=1, **common))
    hyper = run_hypernet(store, "pi", [client], HypernetRunConfig(search=HypernetConfig(epochs=1, grid_points=3),
                                                                  lambdas=(0.0,), **common))
    data = collect(store, [dca.run_id, hyper.run_id])
    methods = sorted(n["method"] for n in data.networks)
    assert methods == ["dca"] + ["hypernet"] * len(hyper.members)
    d = next(n for n in data.networks if n["method"] == "dca")
    assert d["measured_ms"] == pytest.approx(dca.measured) and d["budget"] == f"latency_ms={budget_ms:g}"
    assert d["met"] == (d["ci95_ms"][1] <= budget_ms) and d["params_m"] > 0 and d["genotype_text"].startswith("|")
    assert [c["device"] for c in data.curves] == ["pi"]

    paths = write_report(store, [dca.run_id, hyper.run_id], tmp_path / "report")
    assert {"html", "markdown", "csv", "json", "pareto-pi.png", "tradeoff-pi.png", "lut-vs-measured.png"} <= set(paths)
    assert json.loads(paths["json"].read_text())["networks"][0]["device"] == "pi"

    ws = store.path.parent
    assert main(["--workspace", str(ws), "report", "--all", "--json"]) == 0
    written = json.loads(capsys.readouterr().out)
    assert written["html"].endswith("reports/all/report.html")

    for args, why in ((["999"], "there is no run 999 in"), ([], "give run ids"),
                      (["--all", "--out", str(paths["html"])], "cannot write the report into")):
        assert main(["--workspace", str(ws), "report", *args]) == 2
        err = capsys.readouterr().err
        assert why in err and err.count("\n") == 1, err
    with pytest.raises(ReportError, match="`hilnas runs` lists every run"):
        collect(store, [999])


def test_report_needs_a_workspace_and_lists_nothing_it_does_not_have(tmp_path, capsys) -> None:
    assert main(["--workspace", str(tmp_path / "none"), "report", "--all"]) == 2
    assert "no hilnas store in" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
