// A job's page, live: polls /v1/jobs/{id} every 2 s while the job is not final and updates the
// status, progress, ETA, lr candidates, loss chart and the preview of the images; then shows the
// final grid and downloads. Cancel, delete, and scoring with the true images (upload).
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("job");
  const id = root.dataset.job;
  const base = `/v1/jobs/${id}`;
  const el = (i) => document.getElementById(i);
  let lastIteration = -1;
  let polls = 0;

  function render(job) {
    const status = el("job-status");
    status.textContent = job.status + (job.cancel_requested && job.status === "running" ? " (cancelling)" : "");
    status.className = `status status-${job.status}`;
    root.dataset.status = job.status;
    const p = job.progress;
    el("job-progress").max = p.iterations;
    el("job-progress").value = p.iteration;
    el("job-iterations").textContent = `${p.iteration} of ${p.iterations} iterations`;
    el("job-eta").textContent = job.status === "running" && p.eta_seconds !== null ? `· about ${simudy.duration(p.eta_seconds)} left` : "";
    el("job-phase").textContent = job.phase === "lr_search" && job.status !== "succeeded" ? "· searching the training learning rate" : "";
    simudy.show(el("job-error"), job.error || "");
    el("job-worker").textContent = job.worker || "not started";
    const final = ["succeeded", "failed", "cancelled"].includes(job.status);
    el("cancel-job").hidden = final;
    if (job.lr_search) {
      el("lr-section").hidden = false;
      const body = el("lr-table").tBodies[0];
      body.replaceChildren(...job.lr_search.map((c) => {
        const tr = document.createElement("tr");
        [String(c.lr), c.score === null ? "–" : c.score.toPrecision(5),
         c.status + (job.chosen_lr === c.lr ? " (chosen)" : "")].forEach((t) => {
          const td = document.createElement("td"); td.textContent = t; tr.append(td);
        });
        return tr;
      }));
    }
    if (p.iteration !== lastIteration) {
      lastIteration = p.iteration;
      el("loss-chart").src = `${base}/loss.svg?at=${p.iteration}`;
    }
    return final;
  }

  function showImages(src, alt) {
    const img = el("job-images");
    img.onload = () => { img.hidden = false; el("no-images").hidden = true; };
    img.alt = alt;
    img.src = src;
  }

  async function poll() {
    const result = await simudy.api("GET", base);
    if (!result.ok) { setTimeout(poll, 5000); return; }
    const final = render(result.body);
    polls += 1;
    if (!final) {
      if (result.body.status === "running" && polls % 2 === 1) showImages(`${base}/preview.png?at=${Date.now()}`, "The images as the reconstruction currently has them");
      setTimeout(poll, 2000);
      return;
    }
    if (root.dataset.final !== "true") window.location.reload();  // final now: show results, finding, downloads
  }
  if (root.dataset.final !== "true") poll();

  el("cancel-job").addEventListener("click", async () => {
    const result = await simudy.api("POST", `${base}/cancel`);
    if (result.ok) render(result.body); else simudy.show(el("action-message"), `Not cancelled: ${result.body.detail}`);
  });
  el("delete-job").addEventListener("click", async () => {
    if (!window.confirm("Delete this job and all its results?")) return;
    const result = await simudy.api("DELETE", base);
    if (result.ok) window.location.assign("/jobs"); else simudy.show(el("action-message"), `Not deleted: ${result.body.detail}`);
  });

  const zone = el("truth-zone");
  simudy.dropZone(zone, el("truth-file"), async (files) => {
    const message = el("truth-message");
    message.textContent = `Scoring against ${files[0].name}…`;
    const result = await simudy.upload(`${base}/truth`, files[0], (f) => {
      message.textContent = f < 1 ? `Uploading ${files[0].name}: ${Math.round(f * 100)} %` : `Scoring against ${files[0].name}…`;
    });
    if (result.ok) { window.location.reload(); return; }
    message.textContent = `Not scored (${result.status}): ${result.body ? result.body.detail : "error"}`;
    message.classList.add("error");
  });
});
