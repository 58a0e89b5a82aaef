"""``simudy submit``: `simudy reconstruct`, run as a job on a simudy service. Takes the same
inputs, checks them here first (so a typo fails in a second, not after an upload), uploads the
checkpoints, follows the job, and writes the same files into --out as a local run (the bytes
the worker stored), plus ``job.json`` and, with --truth, the scores."""

from __future__ import annotations

import argparse
import json
import sys

from client.http import ServiceClient, progress_line, read_key
from core.cli import inputs_from_args, make_out_dir, metrics_line, read_truth, settings_from_args
from core.outputs import FILES
from core.pipeline import Pipeline


def run_submit(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    inputs = inputs_from_args(args)
    Pipeline.check(inputs, settings)
    truth = read_truth(args.truth, inputs.recipe) if args.truth else None
    out = make_out_dir(args.out) if args.out else None
    with ServiceClient.connect(args.url, read_key(args.key_file)) as client:
        ids = {name: client.upload_checkpoint(path, what=f"upload {name}")["id"]
               for name, path in (("theta0", args.theta0), ("thetaf", args.thetaf)) if path}
        job = client.submit_job(theta0=ids.get("theta0"), thetaf=ids["thetaf"],
                                recipe=json.loads(inputs.recipe.model_dump_json()),
                                settings=json.loads(settings.model_dump_json()), name=args.name)
        print(f"job {job['id']} {job['status']} at {args.url}/v1/jobs/{job['id']}", file=sys.stderr)
        if args.no_wait:
            print(job["id"])
            return 0
        tty = sys.stderr.isatty()

        def show(j: dict) -> None:
            print(("\r" if tty else "") + progress_line(j), end="" if tty else "\n", file=sys.stderr, flush=True)

        try:
            job = client.wait(job["id"], on_update=show, poll_seconds=args.poll_seconds)
        except KeyboardInterrupt:
            print(f"\njob {job['id']} keeps running on the service; cancel it with "
                  f"POST /v1/jobs/{job['id']}/cancel", file=sys.stderr)
            return 130
        if tty:
            print(file=sys.stderr)
        if out is not None:
            (out / "job.json").write_text(json.dumps(job, indent=2) + "\n")
        if job["status"] != "succeeded":
            print(f"job {job['id']} {job['status']}: {job['error'] or 'no error recorded'}", file=sys.stderr)
            return 1
        if out is not None:
            for name in FILES:
                (out / name).write_bytes(client.download(job["id"], name))
        if truth is not None:
            metrics = client.score(job["id"], truth)["metrics"]
            print(metrics_line(metrics), file=sys.stderr)
            if out is not None:
                (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
                (out / "pairs.png").write_bytes(client.download(job["id"], "pairs.png"))
    print(out if out is not None else job["id"])
    return 0

