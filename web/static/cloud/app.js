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
  // deadlines (stored in UTC) shown in the manager's own time zone (named in the tooltip)
  for (const el of document.querySelectorAll("time.deadline[datetime]")) {
    const iso = el.getAttribute("datetime");
    const when = new Date(/([zZ]|[+-]\d\d:?\d\d)$/.test(iso) ? iso : iso + "Z");
    if (!Number.isNaN(when.getTime())) {
      el.textContent = when.toLocaleString([], {year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit"});
      el.title = iso + " (" + Intl.DateTimeFormat().resolvedOptions().timeZone + ")";
    }
  }
  // cancelling asks first
  const bulk = document.getElementById("bulk");
  if (bulk) bulk.addEventListener("submit", (ev) => {
    const action = bulk.querySelector("select[name=action]").value;
    if (action === "cancel" && !window.confirm("Cancel the chosen orders?")) ev.preventDefault();
  });
});
