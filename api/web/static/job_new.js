// New audit: the method's settings form (drawn on the server from the catalog's schema) is
// shown for the chosen method; the recipe and settings are collected into the /v1/jobs body;
// the server validates, and each part of its 422 answer is placed next to the field it names.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("job-form");
  const method = document.getElementById("method");
  const summary = document.getElementById("form-errors");

  function activeSettings() { return form.querySelector(`.method-settings[data-method="${method.value}"]`); }

  function showMethod() {
    form.querySelectorAll(".method-settings").forEach((el) => { el.hidden = el.dataset.method !== method.value; });
    const needs = method.selectedOptions[0].dataset.needsTheta0 === "true";
    form.querySelector('[data-role-note="theta0"]').textContent = needs ? "(required by this method)" : "(optional for this method)";
    method.setAttribute("aria-describedby", `method-help-${method.value} method-err`);
  }
  method.addEventListener("change", showMethod);
  showMethod();

  function setPath(obj, path, value) {
    const keys = path.split(".");
    let o = obj;
    keys.slice(0, -1).forEach((k) => { if (typeof o[k] !== "object" || o[k] === null) o[k] = {}; o = o[k]; });
    o[keys[keys.length - 1]] = value;
  }

  function merge(base, extra) {
    Object.entries(extra).forEach(([k, v]) => {
      if (v && typeof v === "object" && !Array.isArray(v) && base[k] && typeof base[k] === "object") merge(base[k], v);
      else base[k] = v;
    });
    return base;
  }

  // the fields of one scope as an object; problems (bad JSON) as [field, message]
  function collect(container, problems, scope) {
    const out = {};
    const box = container.querySelector(`[data-json-for="${scope}"]`);
    if (box && box.value.trim()) {
      try {
        const extra = JSON.parse(box.value);
        if (extra === null || typeof extra !== "object" || Array.isArray(extra)) throw new Error("not a JSON object");
        Object.entries(extra).forEach(([k, v]) => { if (v !== null) out[k] = v; });
      } catch (err) {
        problems.push([scope, `the JSON box is not a JSON object: ${err.message}`]);
      }
    }
    const fields = {};
    container.querySelectorAll("[data-path]").forEach((input) => {
      const kind = input.dataset.kind;
      if (kind === "checkbox") setPath(fields, input.dataset.path, input.checked);
      else if (input.value.trim() === "") return;
      else if (kind === "number") setPath(fields, input.dataset.path, Number(input.value));
      else setPath(fields, input.dataset.path, input.value.trim());
    });
    return merge(out, fields);
  }

  function clearErrors() {
    form.querySelectorAll("[data-error-slot]").forEach((slot) => { slot.hidden = true; slot.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
    summary.hidden = true;
    summary.textContent = "";
  }

  // the element (field wrapper) whose data-error-for is the longest prefix of the path
  function slotFor(path) {
    const scopes = [document.getElementById("job-form")];
    let best = null;
    let bestLen = -1;
    scopes[0].querySelectorAll("[data-error-for]").forEach((el) => {
      if (el.closest("[hidden]")) return;
      const p = el.dataset.errorFor;
      if ((path === p || path.startsWith(p + ".")) && p.length > bestLen) { best = el; bestLen = p.length; }
    });
    return best;
  }

  // "recipe.optimizer.lr: msg; settings: image_lr: msg; settings.num_images 100 is over ..."
  function parseDetail(detail) {
    const out = [];
    let scope = null;
    detail.split("; ").forEach((part) => {
      let m = part.match(/^([A-Za-z_][\w.]*):\s*([A-Za-z_][\w.]*):\s(.*)$/);
      if (m && m[1] === "settings") { scope = "settings"; out.push([`settings.${m[2]}`, m[3]]); return; }
      m = part.match(/^([A-Za-z_][\w.]*)(?::\s|\s)(.*)$/);
      if (m && /^(recipe|settings|theta0|thetaf|name)(\.|$)/.test(m[1])) {
        scope = m[1].split(".")[0];
        out.push([m[1], part.startsWith(m[1] + ":") ? m[2] : part]);
      } else if (m && scope === "settings") {
        out.push([`settings.${m[1]}`, m[2]]);  // the rest of a settings message
      } else {
        out.push(["", part]);
      }
    });
    return out;
  }

  function placeErrors(problems) {
    const lines = [];
    let first = null;
    problems.forEach(([path, message]) => {
      const wrapper = path ? slotFor(path) : null;
      if (wrapper) {
        const slot = wrapper.querySelector("[data-error-slot]");
        slot.textContent = (slot.textContent ? slot.textContent + " " : "") +
          (wrapper.dataset.errorFor === path ? message : `${path}: ${message}`);
        slot.hidden = false;
        const input = wrapper.querySelector("input, select, textarea");
        input.setAttribute("aria-invalid", "true");
        first = first || input;
      }
      lines.push(path ? `${path}: ${message}` : message);
    });
    summary.textContent = "Please fix: " + lines.join(" · ");
    summary.hidden = false;
    (first || summary).focus();
  }

  document.getElementById("recipe-file").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    e.target.value = "";  // so choosing the same file again (after an edit) reloads it
    if (!file) return;
    clearErrors();
    let recipe;
    try { recipe = JSON.parse(await file.text()); } catch (err) { placeErrors([["recipe", `${file.name} is not JSON: ${err.message}`]]); return; }
    const container = document.getElementById("recipe-fields");
    const rest = {...recipe};
    container.querySelectorAll("[data-path]").forEach((input) => {
      const keys = input.dataset.path.split(".");
      let v = recipe;
      keys.forEach((k) => { v = v && typeof v === "object" ? v[k] : undefined; });
      if (v === undefined) return;
      if (input.dataset.kind === "checkbox") input.checked = Boolean(v); else input.value = v === null ? "" : v;
      if (keys.length === 1) delete rest[keys[0]];
      else if (rest[keys[0]] && typeof rest[keys[0]] === "object") {  // a nested field: the rest of its object stays
        rest[keys[0]] = {...rest[keys[0]]};
        delete rest[keys[0]][keys[1]];
        if (!Object.keys(rest[keys[0]]).length) delete rest[keys[0]];
      }
    });
    document.getElementById("recipe-json").value = JSON.stringify(rest, null, 1);
  });

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors();
    const problems = [];
    const recipe = collect(document.getElementById("recipe-fields"), problems, "recipe");
    const settings = collect(activeSettings(), problems, "settings");
    settings.method = method.value;
    const body = {recipe, settings};
    ["theta0", "thetaf"].forEach((role) => { const v = document.getElementById(role).value; if (v) body[role] = v; });
    const name = document.getElementById("job-name").value.trim();
    if (name) body.name = name;
    if (!body.thetaf) problems.push(["thetaf", "choose the checkpoint after training"]);
    if (problems.length) { placeErrors(problems); return; }
    const status = document.getElementById("submit-status");
    status.textContent = "Submitting…";
    const result = await simudy.api("POST", "/v1/jobs", body);
    if (result.ok) { status.textContent = "Submitted."; window.location.assign(`/jobs/${result.body.id}`); return; }
    status.textContent = "";
    placeErrors(result.status === 422 ? parseDetail(result.body.detail) : [["", result.body.detail]]);
  });
});
