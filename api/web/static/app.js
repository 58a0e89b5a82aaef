// Shared by every dashboard page: calls to /v1 signed in by the session cookie (the CSRF token
// goes in a header), uploads with progress, drop zones, readable error lines. Written for this
// project; no library.
"use strict";

const simudy = (() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  function errorText(status, body) {
    if (body && typeof body.detail === "string") return body.detail;
    if (status === 413) return "The file is larger than the upload limit.";
    return `The server answered ${status}.`;
  }

  function signedOut(status) {
    if (status === 401) window.location.assign("/signin?reason=missing&next=" + encodeURIComponent(location.pathname));
  }

  // fetch /v1 with the session; resolves {ok, status, body}
  async function api(method, url, json) {
    const opts = {method, headers: {"X-CSRF-Token": csrf(), "Accept": "application/json"},
                  credentials: "same-origin"};
    if (json !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(json);
    }
    let response;
    try {
      response = await fetch(url, opts);
    } catch (err) {
      return {ok: false, status: 0, body: {detail: "The service cannot be reached: check your connection."}};
    }
    signedOut(response.status);
    let body = null;
    const text = await response.text();
    try { body = text ? JSON.parse(text) : null; } catch (err) { body = {detail: text.slice(0, 300)}; }
    return {ok: response.ok, status: response.status, body};
  }

  // multipart upload of one file with progress (fetch cannot report upload progress)
  function upload(url, file, onProgress) {
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      xhr.setRequestHeader("X-CSRF-Token", csrf());
      xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
      xhr.onload = () => {
        signedOut(xhr.status);
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch (err) { body = null; }
        resolve({ok: xhr.status >= 200 && xhr.status < 300, status: xhr.status, body});
      };
      xhr.onerror = () => resolve({ok: false, status: 0, body: {detail: "The upload was interrupted: check your connection."}});
      const form = new FormData();
      form.append("file", file, file.name);
      xhr.send(form);
    });
  }

  // a drop zone around a file input: dropping files calls onFiles like choosing them does
  function dropZone(zone, input, onFiles) {
    input.addEventListener("change", () => { if (input.files.length) onFiles(Array.from(input.files)); input.value = ""; });
    ["dragenter", "dragover"].forEach((t) => zone.addEventListener(t, (e) => { e.preventDefault(); zone.classList.add("over"); }));
    ["dragleave", "drop"].forEach((t) => zone.addEventListener(t, () => zone.classList.remove("over")));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      if (e.dataTransfer && e.dataTransfer.files.length) onFiles(Array.from(e.dataTransfer.files));
    });
  }

  function bytes(n) {
    if (n < 1024) return `${n} B`;
    if (n < 1048576) return `${(n / 1024).toFixed(1)} KiB`;
    return `${(n / 1048576).toFixed(1)} MiB`;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "";
    const s = Math.round(seconds);
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
    return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
  }

  function show(el, text) { el.textContent = text; el.hidden = !text; }

  // small image grids (8x8 or 32x32 tiles) shown at a whole multiple of their size: crisp pixels
  function crisp(img) {
    const fit = () => {
      if (!img.naturalWidth) return;
      const room = img.parentElement.clientWidth || 600;
      img.style.width = `${img.naturalWidth * Math.max(1, Math.min(4, Math.floor(room / img.naturalWidth)))}px`;
    };
    img.addEventListener("load", fit);
    if (img.complete) fit();
  }
  document.addEventListener("DOMContentLoaded", () => document.querySelectorAll("img.pixelated").forEach(crisp));

  return {api, upload, dropZone, bytes, duration, show};
})();
