"""Screenshots of the MLflow pages of a calcinet run, as a browser shows them (docs/mlflow_*.png).

    python scripts/screenshots.py --tracking-uri sqlite:///mlflow.db [--output-dir docs]

Starts ``mlflow server`` on a free loopback port over the given store, opens each page in
headless Chromium (Debian's ``chromium`` package) and writes:

- ``mlflow_runs.png``: the ``calcinet`` experiment as it opens (the runs table);
- ``mlflow_training_run.png``: the newest finished training run;
- ``mlflow_evaluation_run.png``: the newest evaluation run (``calcinet-evaluation`` or nested);
- ``mlflow_model_version.png``: the newest version of the registered model ``calcinet``.

Pages the store does not have (no evaluation yet, nothing registered) are skipped with a note.
The server is stopped at the end, also on errors.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from mlflow.tracking import MlflowClient

from calcinet.tracking import UI_VIEW

WINDOW = "1400,1000"
#: Milliseconds of page time Chromium lets the single-page app load its data before the shot.
PAGE_BUDGET_MS = 20000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(tracking_uri: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    mlflow = Path(sys.executable).parent / "mlflow"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(mlflow), "server", "--backend-store-uri", tracking_uri, "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1"], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"mlflow server stopped at start; its output: {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return server
        except OSError:
            time.sleep(1)
    server.kill()
    raise SystemExit(f"mlflow server did not answer on port {port} within 120 s; see {log}")


def shoot(chromium: str, url: str, out: Path) -> None:
    url += "" if "?" in url else UI_VIEW
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--window-size={WINDOW}", f"--virtual-time-budget={PAGE_BUDGET_MS}",
         f"--screenshot={out}", url],
        check=True, capture_output=True, timeout=180)
    print(f"{out}  <- {url}")


def pages(client: MlflowClient) -> dict[str, str]:
    """File name -> page fragment of the newest calcinet runs and model version."""
    found: dict[str, str] = {}
    training = client.get_experiment_by_name("calcinet")
    if training is not None:
        found["mlflow_runs.png"] = f"#/experiments/{training.experiment_id}"
        runs = client.search_runs([training.experiment_id], "attributes.status = 'FINISHED'",
                                  order_by=["attributes.start_time DESC"], max_results=50)
        train = next((r for r in runs if "best/val_auroc" in r.data.metrics), None)
        if train is not None:
            found["mlflow_training_run.png"] = (
                f"#/experiments/{training.experiment_id}/runs/{train.info.run_id}")
    experiments = [e for e in (training, client.get_experiment_by_name("calcinet-evaluation"))
                   if e is not None]
    if experiments:
        evaluations = client.search_runs(
            [e.experiment_id for e in experiments], "tags.`calcinet.evaluation` = 'true'",
            order_by=["attributes.start_time DESC"], max_results=1)
        if evaluations:
            run = evaluations[0]
            found["mlflow_evaluation_run.png"] = (
                f"#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}")
    versions = client.search_model_versions("name='calcinet'", order_by=["version_number DESC"],
                                            max_results=1)
    if versions:
        found["mlflow_model_version.png"] = f"#/models/calcinet/versions/{versions[0].version}"
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--output-dir", type=Path, default=Path("docs"))
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium not found: install Debian's chromium package")
    wanted = pages(MlflowClient(args.tracking_uri))
    if not wanted:
        raise SystemExit(f"{args.tracking_uri}: no calcinet experiment in this store")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = start_server(args.tracking_uri, port, args.output_dir / ".mlflow-server.log")
    try:
        for name, fragment in wanted.items():
            shoot(chromium, f"http://127.0.0.1:{port}/{fragment}", args.output_dir / name)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        (args.output_dir / ".mlflow-server.log").unlink(missing_ok=True)
    for name in ("mlflow_runs.png", "mlflow_training_run.png", "mlflow_evaluation_run.png",
                 "mlflow_model_version.png"):
        if name not in wanted:
            print(f"skipped {name}: the store has no such page yet")


if __name__ == "__main__":
    main()
