#!/usr/bin/env bash
# Re-take the MLflow UI screenshots of docs/mlflow.md ("What the MLflow UI shows").
# Run from anywhere, as root (Chromium runs with --no-sandbox). Everything runs under nice with one thread.
# Makes a throwaway tracking server and run chain in /tmp/mlreview, removed at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
N="nice -n 19"
PY="$N .venv/bin/python"
PIPELINES="$N .venv/bin/pipelines"
CHROME=${CHROME:-chromium-headless-shell}
W=/tmp/mlreview
PORT=5055
URI=http://127.0.0.1:$PORT
OUT=docs/screenshots

command -v "$CHROME" >/dev/null || DEBIAN_FRONTEND=noninteractive $N apt-get install -y chromium-headless-shell fonts-liberation
"$CHROME" --version

rm -rf "$W" && mkdir -p "$W"
$N .venv/bin/mlflow server --backend-store-uri sqlite:///$W/mlflow.db --default-artifact-root $W/artifacts \
    --host 127.0.0.1 --port $PORT --workers 1 >"$W/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$W"' EXIT
until curl -sf "$URI/health" >/dev/null; do sleep 2; done

export MLFLOW_TRACKING_URI=$URI
$PIPELINES data sunnybrook --source ../shared/data --output $W/data
$PIPELINES train lv_segmentation_unet --data $W/data --output $W/train --epochs 1 --max-cases 2 --set batch_size=8
$PIPELINES evaluate lv_segmentation_unet --data $W/data --checkpoint $W/train/models/model.pt --output $W/eval --max-cases 2
$PIPELINES predict lv_segmentation_unet --input $W/data/images/scd_000.nii.gz --output $W/pred --checkpoint $W/train/models/model.pt
$PIPELINES register lv_segmentation_unet --tracking-uri $URI

# experiment id and run ids through the REST API
read -r EXP TRAIN EVAL < <($PY - "$URI" <<'PYEOF'
import json, sys, urllib.request
uri = sys.argv[1]
def api(path, body=None):
    req = urllib.request.Request(uri + "/api/2.0/mlflow/" + path, data=body and json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))
exp = api("experiments/get-by-name?experiment_name=lv_segmentation_unet")["experiment"]["experiment_id"]
runs = {r["info"]["run_name"]: r["info"]["run_id"] for r in api("runs/search", {"experiment_ids": [exp]})["runs"]}
print(exp, runs["lv_segmentation_unet train seed"], runs["lv_segmentation_unet evaluate test"])
PYEOF
)
echo "experiment $EXP, train run $TRAIN, evaluate run $EVAL"

# Drive Chromium over the DevTools protocol on a pipe (--remote-debugging-pipe: JSON commands on fd 3,
# answers on fd 4; no extra Python package). Before the shots it sets the UI's localStorage so pages open
# in "Model training" mode with the MLflow Assistant panel closed: by default MLflow 3 shows the GenAI view
# and, on a local server, auto-opens the Assistant over a quarter of the window. A plain
# `$CHROME --headless ... --screenshot=F --window-size=1400,900 --virtual-time-budget=15000 URL` renders the
# pages too, but with both of those in the way.
$PY - "$CHROME" "$URI" \
    $OUT/experiment_runs.png "/#/experiments/$EXP/runs" 900 "train seed" \
    $OUT/train_run.png "/#/experiments/$EXP/runs/$TRAIN" 1150 "pipelines.bundle" \
    $OUT/registered_model.png "/#/models/lv_segmentation_unet" 850 "shipped" \
    $OUT/evaluate_run.png "/#/experiments/$EXP/runs/$EVAL" 1000 "pipelines.bundle" <<'PYEOF'
import base64
import json
import os
import subprocess
import sys
import tempfile
import time

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
STORAGE = {
    "mlflow.workflowType_v1": "machine_learning",
    "mlflow.assistant.panelOpen_v1": False,
    "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": True,
}


class Browser:
    def __init__(self, binary):
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()

        def child_fds():
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        profile = tempfile.mkdtemp(prefix="chromium-profile-")
        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            preexec_fn=child_fds, pass_fds=(3, 4, to_chrome_r, from_chrome_w),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.w = os.fdopen(to_chrome_w, "wb", buffering=0)
        self.r = os.fdopen(from_chrome_r, "rb", buffering=0)
        self.buf = b""
        self.next_id = 0
        self.session = None

    def _read(self):
        while b"\0" not in self.buf:
            chunk = self.r.read(65536)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, session=True, **params):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if session and self.session:
            msg["sessionId"] = self.session
        self.w.write(json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def open(self):
        target = self.call("Target.createTarget", session=False, url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", session=False, targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable")

    def js(self, expression):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def goto(self, url, text, timeout=60):
        self.call("Page.navigate", url=url)
        start = time.time()
        while time.time() - start < timeout:
            time.sleep(1)
            body = self.js("document.body ? document.body.innerText : ''") or ""
            if text in body:
                time.sleep(3)  # let the rest of the page (charts, lazy tables) settle
                return True
        print(f"warning: {text!r} not seen on {url} after {timeout}s", file=sys.stderr)
        return False

    def shot(self, path, width, height):
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        try:
            self.call("Browser.close", session=False)
        except Exception:
            pass
        self.proc.wait(timeout=30)


def main(argv):
    binary, base = argv[0], argv[1].rstrip("/")
    jobs = [argv[i:i + 4] for i in range(2, len(argv), 4)]
    b = Browser(binary)
    try:
        b.open()
        b.goto(base + "/", "Experiments")
        for key, value in STORAGE.items():
            b.js(f"localStorage.setItem({json.dumps(key)}, {json.dumps(json.dumps(value))})")
        b.call("Page.reload")  # the React app reads these once, at start
        time.sleep(5)
        for out, path, height, text in jobs:
            b.call("Emulation.setDeviceMetricsOverride", width=1400, height=int(height), deviceScaleFactor=1,
                   mobile=False)
            ok = b.goto(base + path, text)
            b.shot(out, 1400, int(height))
            print(f"{out}: {base + path} ({'ok' if ok else 'TEXT NOT FOUND: ' + text})")
    finally:
        b.close()


if __name__ == "__main__":
    main(sys.argv[1:])
PYEOF

# keep each PNG small
$PY - $OUT/*.png <<'PYEOF'
import os, sys
from PIL import Image
for path in sys.argv[1:]:
    if os.path.getsize(path) > 250_000:
        Image.open(path).convert("RGB").quantize(colors=256).save(path, optimize=True)
    print(path, os.path.getsize(path) // 1024, "kB")
PYEOF
