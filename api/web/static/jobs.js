// The jobs list, live: while any shown job is queued or running, poll /v1/jobs every 3 s and
// update each row's status, progress and ETA.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const table = document.getElementById("jobs-table");
  if (!table) return;
  const active = () => Array.from(table.querySelectorAll("[data-field=status]"))
    .some((s) => s.textContent === "queued" || s.textContent === "running");
  async function poll() {
    if (!active()) return;
    const status = table.dataset.status;
    const result = await simudy.api("GET", `/v1/jobs?limit=200${status ? `&status=${status}` : ""}`);
    if (result.ok) {
      result.body.data.forEach((job) => {
        const row = table.querySelector(`tr[data-job="${job.id}"]`);
        if (!row) return;
        const s = row.querySelector("[data-field=status]");
        s.textContent = job.status;
        s.className = `status status-${job.status}`;
        const bar = row.querySelector("[data-field=progress]");
        bar.max = job.progress.iterations;
        bar.value = job.progress.iteration;
        row.querySelector("[data-field=iterations]").textContent = `${job.progress.iteration} / ${job.progress.iterations}`;
        row.querySelector("[data-field=eta]").textContent =
          job.status === "running" && job.progress.eta_seconds !== null ? simudy.duration(job.progress.eta_seconds) : "–";
      });
    }
    setTimeout(poll, 3000);
  }
  setTimeout(poll, 3000);
});
