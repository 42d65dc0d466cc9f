// marketsync manager UI: small progressive enhancements only; every page works without it.
// Dates and times come written by the server (Babel, in the [ui] time zone, the reader's language).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // "check all" boxes: <input type="checkbox" data-check-all="keys">
  for (const box of document.querySelectorAll("input[data-check-all]")) {
    box.addEventListener("change", () => {
      const form = box.closest("form");
      for (const cb of form.querySelectorAll(`input[type=checkbox][name="${box.dataset.checkAll}"]`)) cb.checked = box.checked;
    });
  }
  // the language switch sends itself
  const lang = document.getElementById("language");
  if (lang) lang.addEventListener("change", () => lang.form.submit());
  // cancelling asks first, in the page's language
  const bulk = document.getElementById("bulk");
  if (bulk) bulk.addEventListener("submit", (ev) => {
    const action = bulk.querySelector("select[name=action]").value;
    if (action === "cancel" && !window.confirm(document.body.dataset.confirmCancel)) ev.preventDefault();
  });
  // a form sent back with an error: the first field at fault is brought into view
  const bad = document.querySelector(".field-error, .msg.error");
  if (bad) bad.scrollIntoView({block: "center"});
});
