"""The calibration report: k-fold splits and the Markdown section writer."""
from __future__ import annotations

import numpy as np
import pytest

from hilnas.agent.sim import calibrate


@pytest.mark.parametrize("n, folds", [(3125, 5), (11, 5), (10, 2)])
def test_kfold_every_row_is_tested_once_and_never_trained_on_in_its_fold(n, folds):
    splits = calibrate.kfold_indices(n, folds, seed=3)
    assert len(splits) == folds
    tested = np.concatenate([test for _, test in splits])
    assert sorted(tested.tolist()) == list(range(n))          # each row in exactly one test fold
    for train, test in splits:
        assert not set(train.tolist()) & set(test.tolist())   # no row both trained on and tested
        assert len(train) + len(test) == n
        assert abs(len(test) - n / folds) <= 1                # balanced


def test_kfold_is_seeded_and_shuffled():
    a = calibrate.kfold_indices(100, 5, seed=1)
    b = calibrate.kfold_indices(100, 5, seed=1)
    c = calibrate.kfold_indices(100, 5, seed=2)
    assert all((x[1] == y[1]).all() for x, y in zip(a, b))
    assert any(set(x[1].tolist()) != set(y[1].tolist()) for x, y in zip(a, c))
    assert a[0][1].tolist() != list(range(20))                 # not contiguous blocks


def test_kfold_groups_stay_in_one_fold():
    groups = [f"cnn{i % 17}" for i in range(200)]
    for train, test in calibrate.kfold_indices(200, 5, seed=0, groups=groups):
        assert not {groups[i] for i in train} & {groups[i] for i in test}


def test_kfold_rejects_one_fold():
    with pytest.raises(ValueError):
        calibrate.kfold_indices(10, 1)


HEAD = calibrate.REPORT_HEADING


def test_section_is_appended_when_missing(tmp_path):
    doc = tmp_path / "performance.md"
    doc.write_text("# Performance\n\n## Agent overhead\n\nkeep me\n")
    calibrate.write_markdown_section(doc, HEAD, "table v1\n")
    assert doc.read_text() == f"# Performance\n\n## Agent overhead\n\nkeep me\n\n{HEAD}\n\ntable v1\n"


def test_section_replaces_only_its_own_text(tmp_path):
    doc = tmp_path / "performance.md"
    before = "# Performance\n\n## Agent overhead\n\nA\n\n"
    after = "## LUT fidelity\n\nB\n### not a section end\n"
    doc.write_text(before + f"{HEAD}\n\nold table\n### sub-heading of mine\nold\n\n" + after)
    calibrate.write_markdown_section(doc, HEAD, "new table\n")
    assert doc.read_text() == before + f"{HEAD}\n\nnew table\n\n" + after
    calibrate.write_markdown_section(doc, HEAD, "new table\n")   # idempotent
    assert doc.read_text() == before + f"{HEAD}\n\nnew table\n\n" + after


def test_section_written_into_a_new_file(tmp_path):
    doc = tmp_path / "docs" / "performance.md"
    calibrate.write_markdown_section(doc, HEAD, "t")
    assert doc.read_text() == f"{HEAD}\n\nt\n"


def test_noise_ceiling_of_exact_replicates_is_one():
    # two networks with the same op multiset (no none edge) measured alike: perfect agreement
    archs = ["|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|avg_pool_3x3~0|skip_connect~1|skip_connect~2|",
             "|nor_conv_1x1~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|avg_pool_3x3~1|skip_connect~2|",
             "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|avg_pool_3x3~0|skip_connect~1|skip_connect~2|",
             "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|avg_pool_3x3~1|skip_connect~2|",
             "|avg_pool_3x3~0|+|avg_pool_3x3~0|skip_connect~1|+|avg_pool_3x3~0|skip_connect~1|skip_connect~2|",
             "|avg_pool_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|avg_pool_3x3~0|skip_connect~1|skip_connect~2|"]
    rows = [(a, y) for a, y in zip(archs, [5.0, 5.0, 9.0, 9.0, 2.0, 2.0])]
    c = calibrate.noise_ceiling(rows, repeats=3)
    assert c.groups == 3 and c.networks == 6
    assert c.replicate_tau == pytest.approx(1.0) and c.ceiling_tau == pytest.approx(1.0)
    noisy = calibrate.noise_ceiling([(a, y) for a, y in zip(archs, [5.0, 9.5, 9.0, 4.0, 2.0, 2.0])], repeats=20)
    assert noisy.ceiling_tau < 1.0
