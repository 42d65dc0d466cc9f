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
  // 1C items offered as you type (article or name): the field's datalist filled from /items/suggest;
  // an account's cards (data-suggest=cards data-account=...) from /prices/cards/suggest (under the app's
  // own prefix: a seller of several is served at /t/<id>/)
  const root = document.body.dataset.root || "";
  for (const input of document.querySelectorAll("input[data-suggest]")) {
    const list = document.getElementById(input.getAttribute("list"));
    let timer = 0;
    input.addEventListener("input", () => {
      clearTimeout(timer);
      const typed = input.value.trim();
      if (!typed || !list) return;
      timer = setTimeout(async () => {
        const url = input.dataset.suggest === "cards"
          ? root + "/prices/cards/suggest?account=" + encodeURIComponent(input.dataset.account || "") + "&q="
          : root + "/items/suggest?q=";
        const resp = await fetch(url + encodeURIComponent(typed), {credentials: "same-origin"});
        if (!resp.ok) return;
        list.replaceChildren(...(await resp.json()).map((it) => {
          const opt = document.createElement("option");
          opt.value = it.article || it.name;
          opt.textContent = it.name;
          return opt;
        }));
      }, 150);
    });
  }
  // a form sent back with an error: the first field at fault is brought into view
  const bad = document.querySelector(".field-error, .msg.error");
  if (bad) bad.scrollIntoView({block: "center"});
});
