"""No network, ever: YOLO inference and a tiny training run in a subprocess with networking unavailable.

The child runs with a fresh, empty ``FLYBY_YOLO_CONFIG_DIR`` (no fonts, no settings yet), so
the font copy and the settings file are made offline too. Networking is taken away twice:

- a network namespace with no interfaces (``unshare -n``; skipped where unavailable), so
  nothing could get out;
- an audit hook (``sitecustomize``) that records and refuses every DNS lookup, socket
  connect/send and urllib request, so the test also *proves* nothing was attempted
  (ultralytics swallows failed network calls, so success alone would prove little).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ultralytics") is None,
    reason='ultralytics is not installed: pip install "flyby[yolo]"',
)

REPO = Path(__file__).resolve().parents[2]

SITECUSTOMIZE = textwrap.dedent(
    """
    import os, sys

    _LOG = os.environ["FLYBY_NET_LOG"]
    _EVENTS = {
        "socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex",
        "socket.gethostbyaddr", "socket.sendto", "socket.sendmsg", "urllib.Request", "http.client.connect",
    }

    def _hook(event, args):
        if event in _EVENTS:
            if event in ("socket.connect", "socket.sendto", "socket.sendmsg") and args and getattr(
                args[0], "family", None
            ) == getattr(__import__("socket"), "AF_UNIX", -1):
                return  # local IPC (multiprocessing, X/EGL) is not the network
            with open(_LOG, "a") as fh:
                fh.write(f"{event} {args!r}\\n")
            raise OSError(f"network access attempted in an offline test: {event} {args!r}")

    sys.addaudithook(_hook)
    """
)

CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    import cv2
    import numpy as np

    root = Path(sys.argv[1])
    # A tiny synthetic dataset (no renderer needed here): coloured boxes on grey, YOLO labels.
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 2), ("test", 2)):
        (root / "ds/images" / split).mkdir(parents=True)
        (root / "ds/labels" / split).mkdir(parents=True)
        for i in range(n):
            img = np.full((64, 64, 3), 90, np.uint8)
            x, y = rng.integers(5, 40, 2)
            img[y : y + 16, x : x + 16] = (0, 0, 230)
            cv2.imwrite(str(root / f"ds/images/{split}/{i}.png"), img)
            (root / f"ds/labels/{split}/{i}.txt").write_text(f"0 {(x + 8) / 64} {(y + 8) / 64} 0.25 0.25\\n")
    (root / "ds/data.yaml").write_text(
        f"path: {root / 'ds'}\\ntrain: images/train\\nval: images/val\\ntest: images/test\\n"
        "names:\\n  0: vehicle\\n  1: person\\n"
    )

    from flyby.perception.yolo import YoloDetector, import_ultralytics
    from flyby.perception.yolo_train import YoloTrainCfg, evaluate_yolo, train_yolo

    ul = import_ultralytics()
    import ultralytics.utils as uu

    # Dataset-free inference straight from the architecture YAML.
    model = ul.YOLO("yolo11n.yaml")
    model.predict(np.zeros((64, 64, 3), np.uint8), imgsz=64, verbose=False)
    # A tiny training run, then our detector and evaluation on its weights.
    cfg = YoloTrainCfg(epochs=1, imgsz=64, batch=4)
    card = train_yolo(root / "ds", root / "w.pt", cfg, run_dir=root / "runs", evaluate=False)
    det = YoloDetector(root / "w.pt", imgsz=64, conf=0.0)
    boxes = det.detect(np.zeros((2, 48, 64, 3), np.uint8))
    print(json.dumps({
        "online": uu.ONLINE,
        "env": {
            k: __import__("os").environ.get(k)
            for k in ("YOLO_OFFLINE", "YOLO_AUTOINSTALL", "YOLO_CONFIG_DIR")
        },
        "fonts": sorted(p.name for p in Path(uu.USER_CONFIG_DIR).glob("*.ttf")),
        "sync": uu.SETTINGS["sync"],
        "card_keys": sorted(card),
        "n_results": len(boxes),
        "weights": (root / "w.pt").is_file(),
    }))
    """
)


def _unshare_prefix() -> list[str]:
    exe = shutil.which("unshare")
    if exe is None:
        return []
    for flags in ("-n", "-rn"):
        if subprocess.run([exe, flags, "true"], capture_output=True).returncode == 0:
            return [exe, flags]
    return []


def test_inference_and_training_never_touch_the_network(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (tmp_path / "child.py").write_text(CHILD)
    net_log = tmp_path / "net.log"
    net_log.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOLO_")}
    env.update(
        PYTHONPATH=os.pathsep.join([str(site), str(REPO)]),
        FLYBY_NET_LOG=str(net_log),
        FLYBY_YOLO_CONFIG_DIR=str(tmp_path / "yolo_cfg"),  # fresh: fonts and settings made here, offline
        HOME=str(tmp_path / "home"),
        MPLCONFIGDIR=str(tmp_path / "mpl"),
    )
    prefix = _unshare_prefix()
    proc = subprocess.run(
        [*prefix, sys.executable, str(tmp_path / "child.py"), str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, (
        f"child failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    )
    assert net_log.read_text() == "", f"network access attempted:\n{net_log.read_text()}"
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["online"] is False
    assert out["env"] == {
        "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "YOLO_CONFIG_DIR": str(tmp_path / "yolo_cfg"),
    }  # fmt: skip
    assert out["fonts"] == ["Arial.Unicode.ttf", "Arial.ttf"]
    assert out["sync"] is False
    assert {"dataset", "train", "reproduce", "size_bytes"} <= set(out["card_keys"])
    assert out["n_results"] == 2 and out["weights"]
    assert (tmp_path / "w.json").is_file()
    if not prefix:
        pytest.skip("ran with the audit hook only: `unshare -n` is unavailable here (no network namespace)")


def test_the_audit_hook_catches_a_lookup(tmp_path: Path) -> None:
    """The guard itself can fail: a DNS lookup in the child is recorded and refused."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    net_log = tmp_path / "net.log"
    env = {**os.environ, "PYTHONPATH": str(site), "FLYBY_NET_LOG": str(net_log)}
    code = (
        "import socket\ntry:\n    socket.getaddrinfo('dns.google', 0)\n"
        "except OSError as e:\n    print('refused', e)"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert "refused network access attempted" in proc.stdout
    assert "socket.getaddrinfo" in net_log.read_text()
