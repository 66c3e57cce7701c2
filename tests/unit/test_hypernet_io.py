"""A trained hypernetwork saved and loaded again derives the same family; bad files are refused by name."""
from __future__ import annotations

import dataclasses
import json
import pickle

import pytest
import torch

from hilnas.searchers.cost import ParamsCost
from hilnas.searchers.data import DatasetConfig, loaders_for
from hilnas.searchers.hypernet import HypernetConfig, search
from hilnas.searchers.hypernet.io import (TrainedFileError, config_from_dict, config_to_dict, load_trained,
                                          save_trained)
from hilnas.searchers.result import Budget
from testmodels import tiny_space

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NB201 = tiny_space("nb201")
DATA = DatasetConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_classes=4, synthetic_train=192,
                     synthetic_test=32, val_fraction=0.5, batch_size=16)
FAST = HypernetConfig(epochs=1, grid_points=5, curve_points=7, bisect_steps=2, bound_samples=1, bound_batches=1)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.set_num_threads(1)
    result = search(NB201, ParamsCost(), FAST, seed=0, data=loaders_for(DATA)[1])
    folder = save_trained(result, tmp_path_factory.mktemp("trained"))
    return result, folder


def test_a_loaded_hypernetwork_derives_the_same_family_and_budget_members(saved):
    result, folder = saved
    loaded = load_trained(folder, NB201, ParamsCost())
    assert loaded.Lambda == result.Lambda and loaded.ops == result.ops and loaded.config == result.config
    grid = result.grid()
    assert [a.genotype for a in loaded.curve(grid).points] == [a.genotype for a in result.curve(grid).points]
    lo, hi = result.reachable()
    budget = Budget("params_m", (lo + hi) / 2)
    assert loaded.for_budget(budget).genotype == result.for_budget(budget).genotype


def test_search_settings_survive_json_and_unknown_ones_are_refused():
    assert config_from_dict(json.loads(json.dumps(config_to_dict(FAST)))) == FAST
    with pytest.raises(TrainedFileError, match="newer hilnas"):
        config_from_dict({**config_to_dict(FAST), "warp_drive": 1})


def test_a_file_from_before_the_per_space_settings_loads_with_what_it_was_trained_with(saved, tmp_path):
    """A search records its settings resolved; a file written before a per-space setting existed lacks it, and it
    loads with the value every search ran then, never "auto" (which would leave it unloadable)."""
    from hilnas.searchers.hypernet.defaults import FALLBACK
    result, folder = saved
    assert result.config.is_resolved and result.config.knee == "family"   # NB201's auto, recorded resolved
    old = {k: v for k, v in config_to_dict(result.config).items() if k not in FALLBACK}
    config = config_from_dict(old)
    assert config.is_resolved and {k: getattr(config, k) for k in FALLBACK} == FALLBACK
    meta = json.loads((folder / "trained.json").read_text())
    meta["config"] = {k: v for k, v in meta["config"].items() if k not in ("anchor", "knee", "scale_sampling")}
    (tmp_path / "trained.json").write_text(json.dumps(meta))
    (tmp_path / "trained.pt").write_bytes((folder / "trained.pt").read_bytes())
    with pytest.raises(TrainedFileError):   # the pinned run's weights hold the anchor an unpinned network lacks
        load_trained(tmp_path, NB201, ParamsCost())


def test_missing_foreign_or_damaged_files_are_refused_with_the_reason(saved, tmp_path):
    _, folder = saved
    with pytest.raises(TrainedFileError, match="saved no trained hypernetwork"):
        load_trained(tmp_path, NB201, ParamsCost())
    (tmp_path / "trained.json").write_text('{"format": "something-else"}')
    with pytest.raises(TrainedFileError, match="not a saved hilnas hypernetwork"):
        load_trained(tmp_path, NB201, ParamsCost())
    (tmp_path / "trained.json").write_text((folder / "trained.json").read_text())
    (tmp_path / "trained.pt").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(TrainedFileError, match="cannot be loaded"):
        load_trained(tmp_path, NB201, ParamsCost())
    with pytest.raises(TrainedFileError, match="trained for the space"):
        load_trained(folder, dataclasses.replace(NB201, C=2 * NB201.C), ParamsCost())
    assert (folder / "trained.pt").stat().st_size > 0   # the good files are untouched


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch notes the foreign pickle's protocol
def test_a_weights_file_that_would_run_code_is_refused(saved, tmp_path, capsys):
    _, folder = saved
    (tmp_path / "trained.json").write_text((folder / "trained.json").read_text())
    (tmp_path / "trained.pt").write_bytes(pickle.dumps({"supernet": _Payload()}))
    with pytest.raises(TrainedFileError, match="cannot be loaded"):
        load_trained(tmp_path, NB201, ParamsCost())
    assert "this must never run" not in capsys.readouterr().out
