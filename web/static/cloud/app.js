// marketsync manager UI: small progressive enhancements only; every page works without it.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // "check all" boxes: <input type="checkbox" data-check-all="keys">
  for (const box of document.querySelectorAll("input[data-check-all]")) {
    box.addEventListener("change", () => {
      const form = box.closest("form");
      for (const cb of form.querySelectorAll(`input[type=checkbox][name="${box.dataset.checkAll}"]`)) cb.checked = box.checked;
    });
  }
  // unix timestamps shown in local time
  for (const el of document.querySelectorAll("[data-ts]")) {
    const t = Number(el.dataset.ts);
    if (t > 0) el.textContent = new Date(t * 1000).toLocaleString();
  }
  // cancelling asks first
  const bulk = document.getElementById("bulk");
  if (bulk) bulk.addEventListener("submit", (ev) => {
    const action = bulk.querySelector("select[name=action]").value;
    if (action === "cancel" && !window.confirm("Cancel the chosen orders?")) ev.preventDefault();
  });
});
