"""EndpointPickerConfig loading: upstream's shape and defaulting rules, strict errors, presets, seeds."""

from __future__ import annotations

from pathlib import Path

import pytest

from infergate.epp.datastore import Endpoint
from infergate.epp.metrics_scraper import EndpointMetrics
from infergate.epp.scheduling import (
    PRESETS,
    Candidate,
    ConfigError,
    SchedulingRequest,
    load_config_file,
    load_config_text,
    load_preset,
)
from infergate.epp.scheduling.plugins.pickers import MaxScorePicker, RoundRobinPicker

HEAD = "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n"


def test_upstream_v1_preset_is_upstream_v1_default() -> None:
    # upstream v1.0's shipped config: infergate's default preset until issue 16
    s = load_preset("upstream-v1.0")
    (profile,) = s.profiles.values()
    assert profile.name == "default"
    assert [(w.scorer.type_name, w.weight) for w in profile.scorers] == [  # type: ignore[attr-defined]
        ("queue-scorer", 1), ("kv-cache-utilization-scorer", 1), ("prefix-cache-scorer", 1)]
    assert not profile.filters
    assert isinstance(profile.picker, MaxScorePicker) and profile.picker.max_endpoints == 1
    assert s.profile_handler.name == "single-profile-handler"
    assert [p.name for p in s.pre_request_plugins] == ["prefix-cache-scorer"]


def test_default_preset_is_predicted_latency() -> None:
    # issue 16: the benchmark's winner is the default (docs/epp.md, "Scheduling v2")
    assert PRESETS["default"] == PRESETS["predicted-latency"]
    s = load_preset("default")
    (profile,) = s.profiles.values()
    assert profile.name == "default"
    assert [f.type_name for f in profile.filters] == ["prefix-cache-affinity-filter"]  # type: ignore[attr-defined]
    assert [(w.scorer.type_name, w.weight) for w in profile.scorers] == [  # type: ignore[attr-defined]
        ("prefix-cache-scorer", 0), ("predicted-ttft-scorer", 1)]
    assert isinstance(profile.picker, MaxScorePicker) and profile.picker.max_endpoints == 1
    assert s.profile_handler.name == "single-profile-handler"
    assert [p.name for p in s.pre_request_plugins] == ["prefix-cache-scorer", "inflight-load-producer"]
    assert isinstance(load_preset("round-robin").profiles["default"].picker, RoundRobinPicker)
    assert set(PRESETS) >= {"default", "round-robin", "random", "prefix-load"}


def test_conformance_style_config_gets_defaults() -> None:
    # as the v1.0.0 conformance EPPs: one filter, one profile -> max-score-picker + single-profile-handler added
    s = load_config_text(HEAD + """
plugins:
- type: header-based-testing-filter
schedulingProfiles:
- name: conformance-profile
  plugins:
  - pluginRef: header-based-testing-filter
""")
    profile = s.profiles["conformance-profile"]
    assert [f.name for f in profile.filters] == ["header-based-testing-filter"]
    assert isinstance(profile.picker, MaxScorePicker)


def test_no_profiles_means_one_default_profile_with_everything() -> None:
    s = load_config_text(HEAD + """
plugins:
- {name: q, type: queue-scorer}
- {type: least-queue-filter}
- {type: random-picker, parameters: {maxNumOfEndpoints: 2}}
""")
    profile = s.profiles["default"]
    assert [f.name for f in profile.filters] == ["least-queue-filter"]
    assert [(w.scorer.name, w.weight) for w in profile.scorers] == [("q", 1)]
    assert profile.picker is not None and profile.picker.name == "random-picker"


def test_weights_and_picker_inherited() -> None:
    s = load_config_text(HEAD + """
plugins:
- {type: queue-scorer}
- {type: kv-cache-utilization-scorer}
- {type: weighted-random-picker}
schedulingProfiles:
- name: p
  plugins:
  - {pluginRef: queue-scorer, weight: 3}
  - {pluginRef: kv-cache-utilization-scorer}
""")
    profile = s.profiles["p"]
    assert [w.weight for w in profile.scorers] == [3, 1]
    assert profile.picker is not None and profile.picker.name == "weighted-random-picker"


@pytest.mark.parametrize(("body", "message"), [
    ("plugins: []\nextra: 1\n", '(root): unknown field "extra"'),
    ("plugins:\n- {type: queue-scorer, params: {}}\n", 'plugins[0]: unknown field "params"'),
    ("plugins:\n- {name: x}\n", "plugins[0].type: required"),
    ("plugins:\n- {type: nope-scorer}\n", "plugins[0].type: unknown plugin type 'nope-scorer'"),
    ("plugins:\n- {type: queue-scorer}\n- {type: queue-scorer}\n", "plugins[1].name: duplicate plugin name"),
    ("plugins:\n- {type: queue-scorer}\nschedulingProfiles:\n- {name: a, plugins: [{pluginRef: missing}]}\n",
     "schedulingProfiles[0].plugins[0].pluginRef: plugin 'missing' is not defined"),
    ("plugins:\n- {type: queue-scorer}\nschedulingProfiles:\n- {name: a, plugins: [{pluginRef: queue-scorer, weight: -1}]}\n",
     "schedulingProfiles[0].plugins[0].weight: must be a non-negative integer"),
    ("plugins:\n- {type: random-picker}\n- {type: max-score-picker}\nschedulingProfiles:\n"
     "- {name: a, plugins: [{pluginRef: random-picker}, {pluginRef: max-score-picker}]}\n",
     "a profile may hold only one picker"),
    ("plugins:\n- {type: queue-scorer}\nschedulingProfiles:\n- {name: a, plugins: []}\n- {name: b, plugins: []}\n",
     "no profile handler was specified"),
    ("plugins:\n- {type: single-profile-handler}\n- {name: h2, type: single-profile-handler}\n",
     "only one profile handler is allowed"),
    ("plugins:\n- {type: single-profile-handler}\nschedulingProfiles:\n- {name: a, plugins: [{pluginRef: single-profile-handler}]}\n",
     "is not a filter, scorer or picker"),
    ("plugins:\n- {type: max-score-picker, parameters: {maxNumOfEndpoints: x}}\n",
     "plugins[0].parameters.maxNumOfEndpoints: must be an integer"),
    ("schedulingProfiles:\n- {name: a}\n- {name: a}\n", "profile names must be unique"),
])
def test_errors_name_the_field(body: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config_text(HEAD + body)
    assert message in str(err.value)


def test_api_version_kind_and_yaml_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"apiVersion: must be inference\.networking\.x-k8s\.io/v1alpha1"):
        load_config_text("apiVersion: v1\nkind: EndpointPickerConfig\n")
    with pytest.raises(ConfigError, match="kind: must be EndpointPickerConfig"):
        load_config_text("apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: Other\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config_text("a: [")
    path = tmp_path / "c.yaml"
    path.write_text(HEAD + "plugins:\n- {type: bogus}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: plugins\[0\]\.type"):
        load_config_file(path)
    with pytest.raises(ConfigError, match="unknown scheduling preset"):
        load_preset("fastest")


def test_deterministic_under_a_seed() -> None:
    cands = [Candidate(Endpoint(f"p{i}", f"10.0.0.{i}", 8000), EndpointMetrics()) for i in range(16)]

    def run(seed: int) -> list[str]:
        s = load_preset("default", seed=seed)
        picks = []
        for i in range(50):
            req = SchedulingRequest(f"r{i}", "m", f"prompt number {i} " * 3)
            result, state = s.schedule(req, cands)
            s.pre_request(state, req, result)
            picks.append(result.primary.targets[0].hostport)
        return picks

    assert run(42) == run(42)
    assert run(42) != run(43)
    assert len(set(run(42))) > 5  # ties spread over the pool
