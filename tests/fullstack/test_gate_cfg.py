"""The phase gates' config schema (gate_cfg.py) and overlay helper (gate_overlays.py): fast, no simulator.

Checks that ``phase_config.yaml`` loads through the one loader, that bad files are refused with every
problem named by dotted path, that each threshold moved out of the gate code is in the schema with its
old value, that no gate compares against a number written in its code, and that the gates' class
colours are flyby's.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest
import yaml
from gate_cfg import PHASE_CONFIG, GateCfg, load_gate_cfg
from gate_overlays import TruthBox, class_box, class_colour, class_legend, class_name

from flyby.enums import TargetClass
from flyby.errors import ConfigError

HERE = Path(__file__).parent
GATE_FILES = sorted(HERE.glob("test_phase*.py"))


def _packaged() -> dict:
    return yaml.safe_load(PHASE_CONFIG.read_text())


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "phase_config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _get(cfg, dotted: str):
    for name in dotted.split("."):
        cfg = getattr(cfg, name)
    return cfg


def test_the_packaged_config_loads_into_the_schema():
    cfg = load_gate_cfg()
    assert isinstance(cfg, GateCfg)
    assert cfg.phase1_for("cascade") is cfg.phase1 and cfg.phase1_for("px4") is cfg.phase1_px4
    with pytest.raises(ValueError, match="'isaac'"):
        cfg.phase1_for("isaac")


def test_an_unknown_key_and_a_bad_value_are_one_error_naming_both_paths(tmp_path):
    data = _packaged()
    data["phase3"]["min_batching_gian"] = 4.0  # a typo'd key
    data["phase1"]["min_speedup"] = -2.0  # out of range
    with pytest.raises(ConfigError) as err:
        load_gate_cfg(_write(tmp_path, data))
    problems = err.value.problems
    assert len(problems) == 2, problems
    assert any(p.startswith("phase3.min_batching_gian: unknown key") for p in problems), problems
    assert any(p.startswith("phase1.min_speedup: -2.0 is out of range") for p in problems), problems
    assert str(tmp_path) in str(err.value)


@pytest.mark.parametrize(
    ("section", "key"),
    [("phase3", "min_batching_gain"), ("phase2", "direct_steps"), ("phase2_transfer", "return_tol")],
)
def test_a_missing_key_is_an_error_not_a_default_in_code(tmp_path, section, key):
    data = _packaged()
    del data[section][key]
    with pytest.raises(ConfigError, match=rf"{section}\.{key}: required key is missing"):
        load_gate_cfg(_write(tmp_path, data))


def test_a_wrong_type_in_a_nested_run_config_is_named_by_its_path(tmp_path):
    data = _packaged()
    data["phase4"]["quick"]["total_steps"] = "lots"
    data["phase2_transfer"]["slow"]["eval_episodes"] = 1
    with pytest.raises(ConfigError) as err:
        load_gate_cfg(_write(tmp_path, data))
    assert any(p.startswith("phase4.quick.total_steps: expected an integer") for p in err.value.problems)
    assert any(
        p.startswith("phase2_transfer.slow.eval_episodes: 1 is out of range") for p in err.value.problems
    )


def test_a_missing_file_and_an_empty_file_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_gate_cfg(tmp_path / "nope.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError) as err:
        load_gate_cfg(empty)
    assert {p.split(":")[0] for p in err.value.problems} == {
        "phase1",
        "phase1_px4",
        "phase2",
        "phase2_transfer",
        "phase3",
        "phase4",
    }


@pytest.mark.parametrize(
    ("scaling_drones", "num_drones", "lacks"),
    [([4, 16, 32], 16, "[1]"), ([1, 4, 32], 16, "[16]"), ([1, 4, 16], 8, "[8]")],
)
def test_the_batching_check_refuses_scaling_drones_without_its_two_rows(
    tmp_path, scaling_drones, num_drones, lacks
):
    """The Phase 3 batching check used to skip itself silently when 1 or 16 left scaling_drones."""
    data = _packaged()
    data["phase3"]["scaling_drones"] = scaling_drones
    data["phase3"]["num_drones"] = num_drones
    with pytest.raises(ConfigError) as err:
        load_gate_cfg(_write(tmp_path, data))
    (problem,) = err.value.problems
    assert problem.startswith(f"phase3.scaling_drones: {scaling_drones} lacks {lacks}"), problem
    assert "min_batching_gain" in problem


def test_the_parity_gate_needs_its_judged_horizon_and_windows_that_long(tmp_path):
    data = _packaged()
    data["phase2"]["error_horizons_s"] = [1.0, 3.0]
    with pytest.raises(ConfigError, match=r"phase2\.error_horizons_s: \[1\.0, 3\.0\] lacks 5\.0"):
        load_gate_cfg(_write(tmp_path, data))
    data = _packaged()
    data["phase2"]["held_out_duration_s"] = 5
    with pytest.raises(ConfigError, match=r"phase2\.held_out_duration_s: 5\.0 s leaves no open-loop window"):
        load_gate_cfg(_write(tmp_path, data))


def test_phase1_steps_must_split_into_whole_render_intervals(tmp_path):
    data = _packaged()
    data["phase1_px4"]["steps"] = 202
    with pytest.raises(ConfigError, match=r"phase1_px4\.steps: 202 does not split into timing_segments=5"):
        load_gate_cfg(_write(tmp_path, data))


#: Every value that was written in a gate's code before, with where it was; now a schema field.
MOVED = [
    ("phase3.min_batching_gain", 4.0),  # Phase 3: assert by_n[16] >= 4 * by_n[1]
    ("phase3.scaling_warmup_steps", 50),  # Phase 3: scaling_table(warmup=gate.warmup_steps // 2)
    ("phase2.direct_steps", 500),  # parity: measure_vector_env / measure_single_env(steps=500)
    ("phase2.direct_warmup_steps", 50),  # parity: measure_*_env(warmup=50)
    ("phase2.throughput_command_seed", 7),  # parity: excitation_sequences(..., seed=7)
    ("phase2.error_horizons_s", (1.0, 5.0)),  # parity: open_loop_errors(horizons_s=(1.0, 5.0))
    ("phase2.start_pos_w", (0.0, 0.0, 40.0)),  # parity: START = np.array([0.0, 0.0, 40.0])
    ("phase1.sim_time_tol_s", 1e-9),  # Phase 1: pytest.approx(b["sim_t"][k], abs=1e-9)
    ("phase1_px4.sim_time_tol_s", 1e-9),  # the same, PX4 section
    ("phase2_transfer.return_tol", 1e-9),  # transfer: pytest.approx(result.returns[0], abs=1e-9)
]


@pytest.mark.parametrize(("path", "value"), MOVED, ids=[p for p, _ in MOVED])
def test_each_threshold_moved_from_gate_code_keeps_its_value(path, value):
    assert _get(load_gate_cfg(), path) == value


def test_the_schema_covers_every_key_of_the_packaged_yaml_and_back():
    """Every YAML key is a schema field (no key read some other way) and every field is in the YAML."""
    cfg = load_gate_cfg()

    def keys(data: dict, prefix: str = "") -> set[str]:
        out = set()
        for k, v in data.items():
            out.add(prefix + k)
            if isinstance(v, dict):
                out |= keys(v, f"{prefix}{k}.")
        return out

    def fields(obj, prefix: str = "") -> set[str]:
        out = set()
        for name in obj.__dataclass_fields__:
            out.add(prefix + name)
            value = getattr(obj, name)
            if hasattr(value, "__dataclass_fields__"):
                out |= fields(value, f"{prefix}{name}.")
        return out

    assert keys(_packaged()) == fields(cfg)


# -- no number in a gate's code judges a verdict or sets a measured run length ------------------------

#: Constants a gate may compare with: identities and invariants, not thresholds.
ALLOWED = {0, 1}  # and 0.0, 1.0, which equal them
#: Keyword arguments that set a measured quantity or a tolerance: never a literal number in a gate.
MEASURED_KEYWORDS = {"steps", "warmup", "abs", "rel", "horizons_s", "segments", "budget_s", "total_steps"}


def _numbers(node: ast.AST) -> list[ast.Constant]:
    """Numeric literals under ``node``, except subscript indices (``by_n[1]``, ``shape[0]``)."""
    skip = {id(n) for s in ast.walk(node) if isinstance(s, ast.Subscript) for n in ast.walk(s.slice)}
    return [
        n
        for n in ast.walk(node)
        if isinstance(n, ast.Constant)
        and isinstance(n.value, (int, float))
        and not isinstance(n.value, bool)
        and id(n) not in skip
    ]


def _unit_tests(tree: ast.Module) -> set[int]:
    """ids of the nodes of top-level ``test_*`` functions not marked ``phase*``: unit tests beside a gate
    (e.g. Phase 1's ``test_segment_rates_are_per_segment``), whose literals are test data, not thresholds."""
    out = set()
    for fn in tree.body:
        marks = [ast.unparse(d) for d in getattr(fn, "decorator_list", [])]
        if (
            isinstance(fn, ast.FunctionDef)
            and fn.name.startswith("test_")
            and not any(".phase" in m for m in marks)
        ):
            out |= {id(n) for n in ast.walk(fn)}
    return out


def literal_thresholds(source: str) -> list[str]:
    """``"line: code"`` of each comparison or measuring keyword argument that holds a literal number,
    one per line, in gate code (every function but the unit tests beside a gate).

    Comparisons may hold 0 and 1 (``crashes == 0``, ``0.0 <= rate <= 1.0``) and tuple shapes
    (``shape == (4,)``: an invariant, not a threshold).
    """
    tree = ast.parse(source)
    unit_tests = _unit_tests(tree)
    found = {}
    for node in ast.walk(tree):
        if id(node) in unit_tests:
            continue
        if isinstance(node, ast.Compare):
            parts = [node.left, *node.comparators]
            nums = [
                n
                for p in parts
                if not isinstance(p, ast.Tuple)
                for n in _numbers(p)
                if n.value not in ALLOWED
            ]
        elif isinstance(node, ast.keyword) and node.arg in MEASURED_KEYWORDS:
            nums = _numbers(node.value)
        else:
            continue
        if nums:
            found.setdefault(node.lineno, ast.unparse(node))
    return [f"{line}: {code}" for line, code in sorted(found.items())]


def test_the_literal_scan_finds_the_thresholds_the_gates_used_to_hold():
    old = (
        "assert by_n[16] >= 4 * by_n[1]\n"
        "r = measure_vector_env(env, steps=500, warmup=50)\n"
        "ok = t == pytest.approx(s, abs=1e-9)\n"
        "e = open_loop_errors(c, log, horizons_s=(1.0, 5.0))\n"
    )
    assert [f.split(":")[0] for f in literal_thresholds(old)] == ["1", "2", "3", "4"]
    fine = "assert t['crashes'] == 0 and 0.0 <= r <= 1.0 and by_n[16] >= g.min_gain * by_n[1]\n"
    assert literal_thresholds(fine) == []
    gate_and_unit_test = (
        "@pytest.mark.phase3\ndef test_gate():\n    assert gain >= 4\n\n"
        "def test_helper():\n    assert rates[0] == pytest.approx(100.0)\n"
    )
    assert literal_thresholds(gate_and_unit_test) == ["3: gain >= 4"]


def test_the_scans_see_all_five_gates():
    assert [p.name for p in GATE_FILES] == [
        "test_phase1_render_skipping.py",
        "test_phase2_direct_parity.py",
        "test_phase2_policy_transfer.py",
        "test_phase3_multi_drone_throughput.py",
        "test_phase4_pipeline.py",
    ]


@pytest.mark.parametrize("gate_file", GATE_FILES, ids=[p.name for p in GATE_FILES])
def test_no_gate_compares_with_or_measures_by_a_number_in_its_code(gate_file):
    assert literal_thresholds(gate_file.read_text()) == [], (
        f"{gate_file.name}: literal numbers in verdicts or measured run lengths; move them to "
        "phase_config.yaml (gate_cfg.py)"
    )


def yaml_reads(source: str) -> list[str]:
    """``"line: code"`` of each YAML read or use of the config's path other than through gate_cfg.

    Allowed: ``load_yaml(DirectDynamicsCfg, ...)``, the parity gate's dynamics fit (not a gate config).
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            dynamics = bool(node.args) and ast.unparse(node.args[0]) == "DirectDynamicsCfg"
            if func in ("read_yaml", "safe_load", "full_load", "from_dict") or (
                func == "load_yaml" and not dynamics
            ):
                found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Name) and node.id == "PHASE_CONFIG":
            found.append((node.lineno, "PHASE_CONFIG"))
    return [f"{line}: {code}" for line, code in sorted(found)]


def test_yaml_read_scan_finds_the_ways_the_gates_used_to_read_the_config():
    old = (
        'PHASE2 = read_yaml(Path(__file__).with_name("phase_config.yaml"))[0]["phase2"]\n'
        'cfg = load_yaml(Phase4GateCfg, PHASE_CONFIG, section="phase4")\n'
        "tuned = load_yaml(DirectDynamicsCfg, CASCADE_FIT)\n"
    )
    assert [f.split(":")[0] for f in yaml_reads(old)] == ["1", "2", "2"]


@pytest.mark.parametrize(
    "name", [p.name for p in [*GATE_FILES, HERE / "conftest.py", HERE / "test_functions_check.py"]]
)
def test_every_gate_reads_the_config_through_the_one_loader(name):
    """No gate or fixture parses phase_config.yaml itself: only gate_cfg.load_gate_cfg does."""
    assert yaml_reads((HERE / name).read_text()) == [], f"{name} reads a YAML config around load_gate_cfg"


# -- overlays: one class-colour table (flyby's), one legend ---------------------------------------------


def test_gate_class_colours_and_names_are_flybys():
    from flyby.perception.draw import CLASS_RGB
    from flyby.perception.yolo import CLASS_NAMES

    for target_class in TargetClass:
        assert class_colour(target_class) == CLASS_RGB[int(target_class)]
        assert class_name(target_class) == CLASS_NAMES[int(target_class)] == target_class.name.lower()
    assert class_colour(TargetClass.VEHICLE) != class_colour(TargetClass.PERSON)
    with pytest.raises(KeyError, match="no colour for target class 7"):
        class_colour(7)


def test_class_boxes_and_truth_boxes_carry_the_class_colour():
    box = class_box(1, 2, 30, 40, TargetClass.PERSON, label="person")
    assert (box.color, box.label, box.style) == (class_colour(TargetClass.PERSON), "person", "solid")
    truth = TruthBox(1.0, 2.0, 3.0, 4.0, target_class=int(TargetClass.VEHICLE), in_obs=False).box(dx=5.0)
    assert truth.color == class_colour(TargetClass.VEHICLE) and truth.style == "dashed"
    assert truth.label == "vehicle not in obs" and truth.x1 == 6.0


def test_the_legend_names_each_class_in_its_colour_left_to_right_without_overlap():
    import cv2

    texts = class_legend(10, 50, scale=0.45)
    assert texts[0].text == "boxes:" and texts[0].x == 10
    assert [(t.text, t.color) for t in texts[1:]] == [(class_name(c), class_colour(c)) for c in TargetClass]
    for prev, nxt in itertools.pairwise(
        texts
    ):  # drawn as videokit draws Text: FONT_HERSHEY_SIMPLEX, thickness 1
        width = cv2.getTextSize(prev.text, cv2.FONT_HERSHEY_SIMPLEX, prev.scale, 1)[0][0]
        assert nxt.x > prev.x + width, (prev, nxt)
    assert {t.y for t in texts} == {50}


def _rgb_tables(source: str) -> list[int]:
    """Lines of dict literals holding an (R, G, B) tuple of int literals: a class-colour table."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Dict):
            continue
        for value in node.values:
            for t in ast.walk(value):
                if (
                    isinstance(t, ast.Tuple)
                    and len(t.elts) == 3
                    and all(isinstance(e, ast.Constant) and isinstance(e.value, int) for e in t.elts)
                ):
                    lines.append(node.lineno)
    return lines


def test_no_gate_file_keeps_its_own_class_colour_table():
    old = (
        "COLOURS = {int(TargetClass.VEHICLE): (255, 140, 0), 1: (255, 60, 200)}\nS = {0: ('v', (1, 2, 3))}\n"
    )
    assert _rgb_tables(old) == [1, 1, 2]
    for path in sorted(HERE.glob("*.py")):
        if path.name == Path(__file__).name:
            continue
        assert _rgb_tables(path.read_text()) == [], f"{path.name} defines its own class colours"
