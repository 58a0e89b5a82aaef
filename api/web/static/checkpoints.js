// Checkpoints: upload (picker or drop, one progress row per file, the server's message in
// place) and delete from a checkpoint's page (the 409 explained).
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const zone = document.getElementById("dropzone");
  if (zone) {
    const list = document.getElementById("uploads");
    simudy.dropZone(zone, document.getElementById("checkpoint-file"), (files) => files.forEach(async (file) => {
      const row = document.createElement("li");
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = `${file.name} (${simudy.bytes(file.size)})`;
      const bar = document.createElement("progress");
      bar.max = 1; bar.value = 0;
      bar.setAttribute("aria-label", `upload of ${file.name}`);
      const message = document.createElement("span");
      message.className = "message";
      row.append(name, bar, message);
      list.append(row);
      const result = await simudy.upload("/v1/checkpoints", file, (f) => { bar.value = f; });
      bar.value = 1;
      if (result.ok) {
        const c = result.body;
        row.classList.add("done");
        message.textContent = (result.status === 200 ? "Already uploaded: " : "Uploaded: ") +
          `${c.num_tensors} tensors, ${c.num_parameters.toLocaleString("en")} parameters, sha256 ${c.sha256.slice(0, 12)}…`;
        const link = document.createElement("a");
        link.href = `/checkpoints/${c.id}`;
        link.textContent = "details";
        message.append(" ", link);
        document.dispatchEvent(new CustomEvent("simudy:uploaded"));
      } else {
        row.classList.add("failed");
        message.textContent = `Not uploaded (${result.status}): ${result.body && result.body.detail ? result.body.detail : "error"}`;
      }
    }));
    document.addEventListener("simudy:uploaded", () => {  // refresh the table once uploads settle
      clearTimeout(window.simudyRefresh);
      window.simudyRefresh = setTimeout(async () => {
        const html = await (await fetch("/checkpoints", {credentials: "same-origin"})).text();
        const doc = new DOMParser().parseFromString(html, "text/html");
        const fresh = doc.getElementById("checkpoints-table");
        const old = document.getElementById("checkpoints-table") || document.getElementById("no-checkpoints");
        if (fresh && old) old.replaceWith(fresh);
      }, 400);
    });
  }

  const del = document.getElementById("delete-checkpoint");
  if (del) {
    del.addEventListener("click", async () => {
      if (!window.confirm("Delete this checkpoint and its stored file?")) return;
      const result = await simudy.api("DELETE", `/v1/checkpoints/${del.dataset.checkpoint}`);
      const out = document.getElementById("delete-message");
      if (result.ok) { window.location.assign("/checkpoints"); return; }
      simudy.show(out, result.status === 409
        ? `Not deleted: ${result.body.detail}. A job keeps its inputs so its results can be checked; delete the jobs first.`
        : `Not deleted: ${result.body.detail}`);
    });
  }
});
