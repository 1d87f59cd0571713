"""The Isaac Sim backend's glue, checked here without Isaac Sim (it runs in the container).

Isaac Sim cannot run on this machine, so these tests drive ``flyby.sim.isaac_backend`` against a
recording stand-in of the Isaac Sim 5.1 modules it calls (``isaacsim``, ``isaacsim.core.*``,
``omni.replicator.core``, ``carb``), with the signatures of the v5.1.0 sources the module's
docstring lists. They check what flyby does with those calls: the order (the SimulationApp
first), the frames (wxyz, body-frame wrenches with ``is_global=False``), shapes and dtypes, the
state it derives, and its errors. Whether Isaac Sim itself behaves as its sources say is checked
by the ``isaac`` tests in the container (``tests/sim/test_backend_contract.py``).
"""

from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pytest

from flyby.dynamics.multirotor import MultirotorCfg
from flyby.enums import BackendKind, ResolutionPreset
from flyby.errors import BackendUnavailable, PhysicsUnstable
from flyby.geometry import STANDARD_GRAVITY, quat_wxyz_to_rot, yaw_quat_wxyz
from flyby.perception.camera import CameraCfg
from flyby.sim import isaac_backend as ib

pytest.importorskip("pxr", reason="usd-core is not installed: pip install 'flyby[usd]'")

CAMERA = CameraCfg(preset=ResolutionPreset.TRAINING)


class Calls(list):
    def names(self) -> list[str]:
        return [c[0] for c in self]


class FakeIsaac:
    """Recording stand-ins for the Isaac Sim 5.1 calls the backend makes."""

    def __init__(self, monkeypatch, open_ok: bool = True):
        self.calls = calls = Calls()
        fake = self
        self.open_ok = open_ok
        self.nan = False

        class SimulationApp:
            def __init__(self, config):
                calls.append(("SimulationApp", config))

            def update(self):
                calls.append(("update",))

            def close(self):
                calls.append(("close_app",))

        def open_stage(path):
            calls.append(("open_stage", path))
            from pxr import Usd  # the stage flyby wrote must open

            fake.stage = Usd.Stage.Open(path)
            return fake.open_ok

        loading = iter([True, False])

        class World:
            def __init__(self, **kwargs):
                calls.append(("World", kwargs))
                self.current_time = 0.0
                self.scene = types.SimpleNamespace(add=lambda obj: calls.append(("scene.add", obj.name)))

            @classmethod
            def clear_instance(cls):
                calls.append(("World.clear_instance",))

            def reset(self):
                calls.append(("World.reset",))

            def step(self, render=True):
                calls.append(("World.step", render))
                self.current_time += 0.004
                for body in fake.bodies:
                    body.integrate(0.004)

            def stop(self):
                calls.append(("World.stop",))

        class XFormPrim:
            def __init__(self, paths, name="xform_prim_view"):
                calls.append(("XFormPrim", name, list(paths)))
                self.name = name
                self.pos = np.zeros((len(paths), 3))
                self.quat = np.tile([1.0, 0, 0, 0], (len(paths), 1))

            def set_world_poses(self, positions=None, orientations=None, indices=None, usd=True):
                calls.append(("set_world_poses", self.name, np.array(indices if indices is not None else [])))
                idx = slice(None) if indices is None else np.asarray(indices)
                self.pos[idx] = positions
                self.quat[idx] = orientations

            def get_world_poses(self):
                return self.pos.astype(np.float32), self.quat.astype(np.float32)

        class RigidPrim(XFormPrim):
            """A point mass of 1.5 kg per drone: world force = R_wb f_b + m g (no rotation)."""

            def __init__(self, paths, name="rigid_prim_view", track_contact_forces=False):
                super().__init__(paths, name)
                calls.append(("RigidPrim", track_contact_forces))
                self.vel = np.zeros((len(paths), 3))
                self.force_b = np.zeros((len(paths), 3))
                fake.bodies.append(self)

            def set_velocities(self, velocities, indices=None):
                self.vel[np.asarray(indices)] = np.asarray(velocities)[:, :3]

            def apply_forces_and_torques_at_pos(
                self, forces=None, torques=None, positions=None, indices=None, is_global=True
            ):
                calls.append(("apply_forces", is_global))
                self.force_b = np.asarray(forces, dtype=float).copy()

            def integrate(self, dt):
                rot = quat_wxyz_to_rot(self.quat)
                acc = np.einsum("nij,nj->ni", rot, self.force_b) / 1.5 + [0, 0, -STANDARD_GRAVITY]
                self.vel = self.vel + acc * dt
                self.pos = self.pos + self.vel * dt

            def get_linear_velocities(self):
                return (np.full_like(self.vel, np.nan) if fake.nan else self.vel).astype(np.float32)

            def get_angular_velocities(self):
                return np.tile([0.0, 0.0, 0.5], (len(self.vel), 1)).astype(np.float32)  # world z spin

            def get_net_contact_forces(self):
                forces = np.zeros((len(self.vel), 3))
                forces[self.pos[:, 2] < 0.1, 2] = 10.0
                return forces

        class Annotator:
            def __init__(self, name, init_params=None, device=None):
                self.name, self.products = name, []
                assert name != "rgb" or device == "cpu"  # numpy frames, not GPU buffers

            def attach(self, products):
                self.products = list(products)

            def detach(self):
                calls.append(("detach", self.name))

            def get_data(self):
                (product,) = self.products
                w, h = product.size
                if self.name == "rgb":
                    frame = np.zeros((h, w, 4), np.uint8)
                    frame[..., 0] = product.index  # red channel = which camera
                    frame[..., 3] = 255
                    return frame
                data = np.array(
                    [(7, 10, 20, 29, 39, 0.25)],
                    dtype=[("semanticId", "<u4"), ("x_min", "<i4"), ("y_min", "<i4"), ("x_max", "<i4"),
                           ("y_max", "<i4"), ("occlusionRatio", "<f4")],
                )  # fmt: skip
                return {"data": data, "info": {"idToLabels": {"7": {"class": "vehicle"}}}}

        class Product:
            count = 0

            def __init__(self, path, size):
                self.path, self.size, self.index = path, size, Product.count
                Product.count += 1

            def destroy(self):
                calls.append(("destroy", self.path))

        def render_product(path, size):
            calls.append(("render_product", path, tuple(size)))
            return Product(path, size)

        rep = types.ModuleType("omni.replicator.core")
        rep.create = types.SimpleNamespace(render_product=render_product)
        rep.AnnotatorRegistry = types.SimpleNamespace(
            get_annotator=lambda name, init_params=None, device=None: Annotator(name, init_params, device)
        )
        rep.orchestrator = types.SimpleNamespace(step=lambda **kw: calls.append(("render", kw)))
        settings = {}
        carb = types.ModuleType("carb")
        carb.settings = types.SimpleNamespace(
            get_settings=lambda: types.SimpleNamespace(set=lambda k, v: settings.__setitem__(k, v))
        )
        self.settings = settings
        self.bodies = []
        modules = {
            "isaacsim": types.ModuleType("isaacsim"),
            "isaacsim.core": types.ModuleType("isaacsim.core"),
            "isaacsim.core.api": types.ModuleType("isaacsim.core.api"),
            "isaacsim.core.prims": types.ModuleType("isaacsim.core.prims"),
            "isaacsim.core.utils": types.ModuleType("isaacsim.core.utils"),
            "isaacsim.core.utils.stage": types.ModuleType("isaacsim.core.utils.stage"),
            "isaacsim.core.version": types.ModuleType("isaacsim.core.version"),
            "omni": types.ModuleType("omni"),
            "omni.replicator": types.ModuleType("omni.replicator"),
            "omni.replicator.core": rep,
            "carb": carb,
        }
        modules["isaacsim"].SimulationApp = SimulationApp
        modules["isaacsim.core.api"].World = World
        modules["isaacsim.core.prims"].XFormPrim = XFormPrim
        modules["isaacsim.core.prims"].RigidPrim = RigidPrim
        modules["isaacsim.core.utils.stage"].open_stage = open_stage
        modules["isaacsim.core.utils.stage"].is_stage_loading = lambda: next(loading, False)
        modules["isaacsim.core.version"].get_version = lambda: ("5.1.0-rc.19", "", "5", "1", "0", "", "", "")
        modules["omni"].replicator = modules["omni.replicator"]
        modules["omni.replicator"].core = rep
        for name, module in modules.items():
            monkeypatch.setitem(sys.modules, name, module)
        monkeypatch.setattr(ib, "_APP", None)
        monkeypatch.setattr(ib.atexit, "register", lambda fn: None)


def test_the_module_imports_no_simulator():
    code = (
        "import sys, flyby.sim.isaac_backend; "
        "bad = [m for m in ('isaacsim', 'omni', 'carb', 'mujoco', 'pxr') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_launch_config_is_headless_without_anti_aliasing(monkeypatch):
    monkeypatch.delenv(ib.RENDERER_ENV, raising=False)
    cfg = ib.isaac_launch_config(320, 240)
    assert cfg["headless"] and cfg["anti_aliasing"] == 0 and cfg["disable_viewport_updates"]
    assert (cfg["width"], cfg["height"], cfg["renderer"]) == (320, 240, "RaytracedLighting")
    monkeypatch.setenv(ib.RENDERER_ENV, "PathTracing")
    assert ib.isaac_launch_config()["renderer"] == "PathTracing"


def test_without_isaac_sim_the_error_names_the_container(monkeypatch, world):
    from flyby.sim.base import make_backend

    monkeypatch.setattr(ib, "_APP", None)
    monkeypatch.setitem(sys.modules, "isaacsim", None)  # import isaacsim now fails
    with pytest.raises(BackendUnavailable, match=r"Isaac Sim not importable.*podman/README.md"):
        make_backend("isaac", world, 1, CAMERA)


def test_kinematic_glue(monkeypatch, world):
    fake = FakeIsaac(monkeypatch)
    be = ib.IsaacBackend(world, 3, CAMERA, overview_size=(160, 120))
    names = fake.calls.names()
    assert names[0] == "SimulationApp" and names.index("open_stage") < names.index("World")
    assert fake.calls[0][1]["anti_aliasing"] == 0
    world_kwargs = next(c[1] for c in fake.calls if c[0] == "World")
    assert world_kwargs["physics_dt"] == 0.004 and world_kwargs["stage_units_in_meters"] == 1.0
    assert fake.settings["/omni/replicator/captureOnPlay"] is False
    products = [c[1:] for c in fake.calls if c[0] == "render_product"]
    assert products == [(f"/World/Drones/drone_{i}/camera", (128, 128)) for i in range(3)] + [
        ("/World/Overview", (160, 120))
    ]
    assert fake.stage.GetPrimAtPath("/World/Overview").IsValid()  # the stage it opened is flyby's
    assert be.kind is BackendKind.ISAAC and be.description.startswith("Isaac Sim 5.1.0, RaytracedLighting")

    quat = yaw_quat_wxyz(np.array([0.3, 1.2]))
    be.set_drone_poses(np.array([[1.0, 2.0, 30.0], [3.0, 4.0, 20.0]]), quat, ids=np.array([2, 0]))
    np.testing.assert_allclose(be._drones.quat[[2, 0]], quat)  # wxyz, in the ids' rows
    be.set_target_poses(*world.target_poses(0.0))
    np.testing.assert_allclose(be._targets.pos, world.target_poses(0.0)[0])

    images = be.render_cameras(np.array([2, 0]))
    assert images.shape == (2, 128, 128, 3) and images.dtype == np.uint8
    assert images[0, 0, 0, 0] == 2 and images[1, 0, 0, 0] == 0  # row i is drone ids[i]
    assert fake.calls[-1][0] == "render" and fake.calls[-1][1]["delta_time"] == 0.0  # physics time stands
    assert be.render_overview().shape == (120, 160, 3)
    grid, offsets = be.render_grid()
    assert grid.ndim == 3 and offsets.shape == (3, 2)

    boxes = be.annotator_boxes(1)
    np.testing.assert_allclose(boxes["boxes"], [[10, 20, 30, 40]])  # inclusive max -> exclusive edge
    assert list(boxes["labels"]) == ["vehicle"] and boxes["occlusion"][0] == pytest.approx(0.25)

    with pytest.raises(ValueError, match=r"expected pos_w \(3, 3\).*got \(2, 2\)"):
        be.set_drone_poses(np.zeros((2, 2)), quat)
    with pytest.raises(ValueError, match="ids must lie in"):
        be.render_cameras(np.array([3]))
    with pytest.raises(RuntimeError, match="needs dynamic mode"):
        be.step_physics()
    be.close()
    assert ("World.stop",) in fake.calls and sum(c[0] == "destroy" for c in fake.calls) == 4
    with pytest.raises(RuntimeError, match="closed"):
        be.render_cameras()
    be.close()  # twice is fine


def test_dynamic_glue_hovers_and_reports_the_state(monkeypatch, world):
    fake = FakeIsaac(monkeypatch)
    airframe = MultirotorCfg()
    be = ib.IsaacBackend(world, 2, CAMERA, dynamic=airframe)
    assert ("RigidPrim", True) in fake.calls  # contact forces tracked
    quat = yaw_quat_wxyz(np.array([0.0, 1.0]))
    be.reset_drone_states(np.array([[0.0, 0.0, 30.0], [5.0, 0.0, 30.0]]), quat)
    hover = np.array([[0.0, 0.0, airframe.mass_kg * STANDARD_GRAVITY]] * 2)
    be.apply_body_wrench(hover, np.zeros((2, 3)))
    be.step_physics(5)
    assert fake.calls.names().count("apply_forces") == 5  # before every physics step
    assert all(c[1] is False for c in fake.calls if c[0] == "apply_forces")  # body frame
    assert all(c[1] is False for c in fake.calls if c[0] == "World.step")  # no rendering
    state = be.drone_state()
    np.testing.assert_allclose(state.pos_w[:, 2], 30.0, atol=1e-5)  # the hover wrench holds it
    np.testing.assert_allclose(state.specific_force_b, [[0, 0, STANDARD_GRAVITY]] * 2, atol=1e-3)
    # World z spin, seen in a level body frame: still about body z.
    np.testing.assert_allclose(state.ang_vel_b, [[0, 0, 0.5]] * 2, atol=1e-6)
    assert state.pos_w.dtype == np.float64 and not state.contact.any()
    be.apply_body_wrench(np.zeros((2, 3)), np.zeros((2, 3)))  # free fall
    be.step_physics(3)
    np.testing.assert_allclose(be.drone_state().specific_force_b, 0.0, atol=1e-3)

    with pytest.raises(ValueError, match="finite"):
        be.apply_body_wrench(np.full((2, 3), np.nan), np.zeros((2, 3)))
    with pytest.raises(RuntimeError, match="reset_drone_states"):
        be.set_drone_poses(np.zeros((2, 3)), quat)
    fake.nan = True
    with pytest.raises(PhysicsUnstable, match="non-finite"):
        be.step_physics()
    be.close()


def test_a_stage_isaac_cannot_open_is_an_error(monkeypatch, world):
    FakeIsaac(monkeypatch, open_ok=False)
    with pytest.raises(BackendUnavailable, match="could not open the stage"):
        ib.IsaacBackend(world, 1, CAMERA)
