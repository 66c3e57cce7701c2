"""Device profiles of the simulated device: loading, validation, fingerprints."""
from __future__ import annotations

import re

import pytest

from hilnas.agent.sim.profile import PROFILE_DIR, ProfileError, list_profiles, load_profile


def test_shipped_profiles_load():
    names = list_profiles()
    assert set(names) >= {"raspi4", "pixel3", "jetson-nano", "host-x86"}
    for name in names:
        p = load_profile(name)
        assert p.name == name
        assert 0 < p.compute.efficiency_of("Conv") <= 1 and p.compute.peak_gflops > 0


def test_unknown_profile_names_the_available_ones():
    with pytest.raises(ProfileError) as err:
        load_profile("commodore64")
    message = str(err.value)
    assert "commodore64" in message
    for name in list_profiles():
        assert name in message


def test_load_by_path_and_missing_path(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text((PROFILE_DIR / "raspi4.toml").read_text())
    assert load_profile(path) == load_profile("raspi4")
    assert load_profile(str(path)).source == str(path)
    with pytest.raises(ProfileError, match="no simulated device profile file"):
        load_profile(tmp_path / "absent.toml")


def test_fingerprint_is_stable_and_follows_the_contents(tmp_path):
    text = (PROFILE_DIR / "raspi4.toml").read_text()
    a = load_profile("raspi4").fingerprint
    assert a == load_profile("raspi4").fingerprint and a.startswith("sim-")
    # comments and key order do not matter; numbers do
    recommented = tmp_path / "a.toml"
    recommented.write_text("# another comment\n" + re.sub(r"#.*", "", text))
    assert load_profile(recommented).fingerprint == a
    changed = tmp_path / "b.toml"
    changed.write_text(text.replace("peak_gflops = 48.0", "peak_gflops = 50.0"))
    assert load_profile(changed).fingerprint != a
    assert len({load_profile(n).fingerprint for n in list_profiles()}) == len(list_profiles())


@pytest.mark.parametrize("edit, match", [
    (("peak_gflops = 48.0", "peak_gflop = 48.0"), "unknown keys"),
    (("peak_gflops = 48.0", 'peak_gflops = "fast"'), "must be float"),
    (("peak_gflops = 48.0", "peak_gflops = -1.0"), "must be > 0"),
    (("Conv = 0.0921", "Conv = 1.5"), r"in \(0, 1\]"),
    (("[noise]", "[noize]"), "missing section"),
    (("cpu_cores = 4", "cpu_cores = 4.5"), "must be int"),
    (("schema = 1", "schema = 2"), "schema"),
])
def test_invalid_profiles_are_refused(tmp_path, edit, match):
    text = (PROFILE_DIR / "raspi4.toml").read_text()
    assert edit[0] in text
    path = tmp_path / "bad.toml"
    path.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(ProfileError, match=match):
        load_profile(path)


def test_not_toml(tmp_path):
    path = tmp_path / "x.toml"
    path.write_text("this is = = not toml")
    with pytest.raises(ProfileError, match="not valid TOML"):
        load_profile(path)


def test_efficiency_lookup_prefers_the_variant():
    c = load_profile("host-x86").compute
    assert c.efficiency_of("Conv", "depthwise") == 0.03
    assert c.efficiency_of("Conv", "") == 0.25
    assert c.efficiency_of("Conv", "nonexistent") == 0.25
    assert c.efficiency_of("Frobnicate") == c.default_efficiency
    assert c.memory_efficiency_of("Transpose") == 0.4 and c.memory_efficiency_of("Relu") == 1.0
